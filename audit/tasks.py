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
