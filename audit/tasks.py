"""Celery tasks of the audit app."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone


@shared_task(name="audit.events_prune")
def audit_events_prune() -> int:
    """Delete events past the retention period (idempotent: a second run finds nothing to do)."""
    from audit import app_settings
    from audit.services import audit_events_prune as prune

    return prune(older_than=timezone.now() - timedelta(days=app_settings.retention_days()))


@shared_task(name="audit.chain_anchor")
def audit_chain_anchor() -> int | None:
    """Log the chain's head (and append it to AUDIT_ANCHOR_FILE); returns its position."""
    from audit.services import audit_chain_anchor as anchor

    head = anchor()
    return head.pk if head is not None else None


# A full walk reads every event: it gets longer than the default limits, and stays under the
# broker's visibility timeout (1 hour), after which an unacknowledged task would run twice.
@shared_task(name="audit.verification_create", soft_time_limit=3000, time_limit=3300)
def audit_verification_create(full: bool = False) -> bool:
    """Verify the chain (the new events, or all of it) and record the result; True when intact."""
    from audit.models import AuditVerification
    from audit.services import audit_verification_create as verify

    return verify(source=AuditVerification.Source.SCHEDULE, full=full).intact
