"""Recording, pruning, anchoring and verifying the audit trail. Any app records an event with one call:

    audit_record(action="accounts.user.signed_in", actor=user, target=user, request=request)

The event is written in the caller's transaction: it commits or rolls back with the change.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import takewhile
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.http import HttpRequest
from django.utils import timezone

from audit import app_settings
from audit.chain import (
    ChainLink,
    ChainReport,
    audit_chain_verify,
    chain_head,
    chain_keys,
    checkpoint_mac,
    event_mac,
    latest_checkpoint,
)
from audit.context import current_request
from audit.models import AuditChainCheckpoint, AuditEvent, AuditVerification

anchor_logger = logging.getLogger("audit.anchor")
chain_logger = logging.getLogger("audit.chain")

# Transaction-scoped advisory lock numbers: one for writers of the chain, one for the retention job.
CHAIN_LOCK_ID = 0x41554454  # "AUDT"
PRUNE_LOCK_ID = 0x41554450  # "AUDP"
# Younger events are never pruned; the database trigger refuses it too (migration 0004).
MINIMUM_AGE = timedelta(days=1)
REDACTED = "[REDACTED]"
# "passwordless" names a way of signing in, not a secret.
_SECRET_NAME = re.compile(
    r"(?i)password(?!less)|secret|token|otp|code_verifier|session_key|private_key|api_key"
)
LABEL_MAX_LENGTH = 150


def scrub(value: Any) -> Any:
    """Replace the values of secret-looking keys, at any depth."""
    if isinstance(value, dict):
        return {
            key: REDACTED if _SECRET_NAME.search(str(key)) else scrub(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    return value


def describe_actor(actor: Any, request: HttpRequest | None) -> tuple[str, str, str]:
    """(type, id, label) of whoever acted: a user, an OAuth client, the system or an anonymous caller."""
    if actor is None and request is not None:
        user = getattr(request, "user", None)
        actor = user if user is not None and user.is_authenticated else None
        if actor is None:
            return AuditEvent.ActorType.ANONYMOUS, "", ""
    if actor is None:
        return AuditEvent.ActorType.SYSTEM, "", "system"
    if isinstance(actor, get_user_model()):
        return AuditEvent.ActorType.USER, str(actor.pk), str(actor)[:LABEL_MAX_LENGTH]
    if hasattr(actor, "client_id"):
        return AuditEvent.ActorType.CLIENT, str(actor.client_id), str(actor)[:LABEL_MAX_LENGTH]
    raise TypeError(f"Cannot audit {type(actor).__name__} as an actor.")


def describe_target(target: Any) -> tuple[str, str, str]:
    """(type, id, label) of what was acted on: a model instance or an explicit triple."""
    if target is None:
        return "", "", ""
    if isinstance(target, models.Model):
        meta = target._meta
        return f"{meta.app_label}.{meta.model_name}", str(target.pk), str(target)[:LABEL_MAX_LENGTH]
    target_type, target_id, label = target
    return str(target_type), str(target_id), str(label)[:LABEL_MAX_LENGTH]


def _lock(lock_id: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])


def lock_chain() -> None:
    """Serialize writers to the chain until their transaction ends (PostgreSQL).

    SQLite runs one writing transaction at a time (IMMEDIATE transactions) and needs nothing more.
    """
    _lock(CHAIN_LOCK_ID)


@transaction.atomic
def audit_record(
    *,
    action: str,
    outcome: str = AuditEvent.Outcome.SUCCESS,
    actor: Any = None,
    target: Any = None,
    request: HttpRequest | None = None,
    changes: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event to the audit trail, inside the caller's transaction.

    Without `request`, the request being served (if any) gives the IP, user agent and request ID.
    """
    if request is None:
        request = current_request.get()
    actor_type, actor_id, actor_label = describe_actor(actor, request)
    target_type, target_id, target_label = describe_target(target)
    event = AuditEvent(
        action=action,
        outcome=outcome,
        actor_type=actor_type,
        actor_id=actor_id,
        actor_label=actor_label,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label,
        ip_address=request.META.get("REMOTE_ADDR") or None if request is not None else None,
        user_agent=request.headers.get("User-Agent", "")[:512] if request is not None else "",
        request_id=str(getattr(request, "request_id", ""))[:128],
        changes=scrub(changes or {}),
        metadata=scrub(metadata or {}),
    )
    key = chain_keys().signing
    lock_chain()
    previous_hash = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    if previous_hash is None:
        # Only when retention has pruned every event: continue from its checkpoint.
        pruned = latest_checkpoint(AuditChainCheckpoint.Kind.PRUNED)
        previous_hash = pruned.through_hash if pruned is not None else AuditEvent.GENESIS_HASH
    event.previous_hash = previous_hash
    event.key_id = key.key_id
    event.hash = event_mac(key=key, previous_hash=previous_hash, fields=event.chained_fields())
    event.save()
    return event


def _checkpoint_create(
    *, kind: str, through_id: int, through_hash: str, deleted: int = 0
) -> AuditChainCheckpoint:
    key = chain_keys().signing
    checkpoint = AuditChainCheckpoint(
        kind=kind, through_id=through_id, through_hash=through_hash, deleted=deleted, key_id=key.key_id
    )
    checkpoint.mac = checkpoint_mac(
        key=key,
        kind=kind,
        created_at=checkpoint.created_at,
        through_id=through_id,
        through_hash=through_hash,
        deleted=deleted,
    )
    checkpoint.full_clean()
    checkpoint.save()
    return checkpoint


def audit_events_prune(*, older_than: datetime, batch_size: int = 1000) -> int:
    """Delete the chain's oldest events, up to the first not older than `older_than`; record that it did.

    Only ever a prefix of the chain, in short batches. Each batch first writes a keyed checkpoint
    naming the last event it deletes and that event's MAC, in the same transaction: the database
    allows no other delete (migration 0004), and the remaining chain verifies from the checkpoint.
    """
    if older_than > timezone.now() - MINIMUM_AGE:
        raise ValueError("Audit events younger than a day are never pruned.")
    deleted = 0
    last: AuditChainCheckpoint | None = None
    while True:
        with transaction.atomic():
            _lock(PRUNE_LOCK_ID)
            # The oldest events by chain order; the first young one stops the prefix, even when
            # older ones follow it (an event's time is taken before it joins the chain).
            rows = AuditEvent.objects.order_by("id").values_list("id", "occurred_at", "hash")[:batch_size]
            prefix = list(takewhile(lambda row: row[1] < older_than, rows))
            if not prefix:
                break
            through_id, _, through_hash = prefix[-1]
            last = _checkpoint_create(
                kind=AuditChainCheckpoint.Kind.PRUNED,
                through_id=through_id,
                through_hash=through_hash,
                deleted=len(prefix),
            )
            deleted += models.QuerySet.delete(AuditEvent.objects.filter(id__lte=through_id))[0]
        if len(prefix) < batch_size:
            break
    # Verification results are kept as long as the events they were about.
    AuditVerification.objects.filter(verified_at__lt=older_than).delete()
    if last is not None:
        audit_record(
            action="audit.events.pruned",
            metadata={
                "deleted": deleted,
                "older_than": older_than.isoformat(),
                "through_id": last.through_id,
                "through_hash": last.through_hash,
            },
        )
    return deleted


def audit_chain_anchor() -> AuditEvent | None:
    """Publish the chain's head outside the database: an INFO line on the `audit.anchor` logger.

    Also appended, as one JSON line, to AUDIT_ANCHOR_FILE when set. Given the last anchor,
    `audit_verify --anchor SEQ:MAC` proves that no event up to it was removed or rewritten.
    """
    head = chain_head()
    if head is None:
        anchor_logger.info("Audit chain is empty: nothing to anchor.")
        return None
    anchor = {
        "seq": head.pk,
        "mac": head.hash,
        "key_id": head.key_id,
        "occurred_at": head.occurred_at.isoformat(),
        "anchored_at": timezone.now().isoformat(),
    }
    anchor_logger.info(
        "Audit chain head %s:%s (key %s, event of %s)",
        head.pk,
        head.hash,
        head.key_id or "none",
        anchor["occurred_at"],
        extra={f"audit_{name}": value for name, value in anchor.items()},
    )
    path = app_settings.anchor_file()
    if path:
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(anchor, separators=(",", ":")) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            anchor_logger.exception("Could not append the audit chain head to %s", path)
    return head


@dataclass(frozen=True)
class UnkeyedEvents:
    count: int
    first_id: int
    checkpoint: AuditChainCheckpoint


def audit_unkeyed_events_checkpoint() -> UnkeyedEvents | None:
    """Accept the unkeyed events past the legacy checkpoint with a new, keyed one; record that it did.

    The previous release's processes write them while an upgrade rolls out (decision 0007); anyone
    with database access could add such events too, so an operator runs this after looking at
    them, and only when everything else about the chain verifies.
    """
    report = audit_chain_verify(accept_unkeyed=True)
    if not report.is_intact:
        raise ValidationError(
            f"The audit chain does not verify at #{report.broken_seq}: {report.reason}. "
            "Nothing was checkpointed.",
            code="chain_broken",
        )
    legacy = latest_checkpoint(AuditChainCheckpoint.Kind.LEGACY)
    with transaction.atomic():
        lock_chain()
        unkeyed = AuditEvent.objects.filter(key_id="", id__gt=legacy.through_id if legacy is not None else 0)
        summary = unkeyed.aggregate(
            count=models.Count("id"), first_id=models.Min("id"), last_id=models.Max("id")
        )
        if not summary["count"]:
            return None
        last = AuditEvent.objects.get(pk=summary["last_id"])
        checkpoint = _checkpoint_create(
            kind=AuditChainCheckpoint.Kind.LEGACY, through_id=last.pk, through_hash=last.hash
        )
        audit_record(
            action="audit.chain.unkeyed_checkpointed",
            metadata={"count": summary["count"], "from_id": summary["first_id"], "through_id": last.pk},
        )
    return UnkeyedEvents(count=summary["count"], first_id=summary["first_id"], checkpoint=checkpoint)


def verification_summary(verification: AuditVerification) -> str:
    """One sentence for a log line or the command's output."""
    count = verification.checked
    events = f"{count} {'' if verification.full else 'new '}event{'' if count == 1 else 's'}"
    if verification.intact:
        return f"Audit chain intact: {events} verified."
    event = (
        AuditEvent.objects.filter(event_id=verification.broken_event_id).first()
        if verification.broken_event_id
        else None
    )
    where = (
        f"event {event.event_id} (#{event.pk}, {event.action}, {event.occurred_at:%Y-%m-%d %H:%M:%S})"
        if event is not None
        else f"#{verification.broken_seq}"
    )
    verb = "is" if count == 1 else "are"
    return f"Audit chain broken at {where}: {verification.reason}. {events} before it {verb} intact."


def audit_verification_create(
    *,
    source: str,
    full: bool = False,
    anchor: ChainLink | None = None,
    requested_by: str = "",
) -> AuditVerification:
    """Verify the chain and record the result; a broken chain is logged at ERROR (`audit.chain`).

    Without `full` or `anchor`, only the events after the last verification are walked, from where
    it ended; when that verification found the chain broken (or there is none), all of it is.
    """
    since: ChainLink | None = None
    if not full and anchor is None:
        previous = AuditVerification.objects.order_by("-id").first()
        if previous is not None and previous.intact and previous.checked_to is not None:
            since = ChainLink(seq=previous.checked_to, mac=previous.checked_to_hash)
    report: ChainReport = audit_chain_verify(since=since, anchor=anchor)
    head = chain_head()
    verification = AuditVerification(
        full=report.full,
        source=source,
        requested_by=requested_by,
        intact=report.is_intact,
        checked=report.checked,
        checked_from=report.first_seq,
        checked_to=report.last.seq if report.last is not None else None,
        checked_to_hash=report.last.mac if report.last is not None else "",
        broken_seq=report.broken_seq,
        broken_event_id=report.broken_event.event_id if report.broken_event is not None else None,
        reason=report.reason,
        anchor=str(anchor) if anchor is not None else "",
        head_seq=head.pk if head is not None else None,
        head_hash=head.hash if head is not None else "",
        head_key_id=head.key_id if head is not None else "",
    )
    verification.full_clean()
    verification.save()
    if verification.intact:
        chain_logger.info(
            "%s Checked through #%s.", verification_summary(verification), verification.checked_to
        )
    else:
        chain_logger.error(
            "%s Investigate before anything else: see docs/operations.md, audit trail.",
            verification_summary(verification),
        )
    return verification
