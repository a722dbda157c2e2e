"""Recording, verifying and pruning the audit trail. Any app records an event with one call:

    audit_record(action="accounts.user.signed_in", actor=user, target=user, request=request)

The event is written in the caller's transaction: it commits or rolls back with the change.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, models, transaction
from django.http import HttpRequest

from audit.context import current_request
from audit.models import AuditEvent

# Any transaction-scoped advisory lock number unique to the audit chain.
CHAIN_LOCK_ID = 0x41554454  # "AUDT"
REDACTED = "[REDACTED]"
# "passwordless" names a way of signing in, not a secret.
_SECRET_NAME = re.compile(
    r"(?i)password(?!less)|secret|token|otp|code_verifier|session_key|private_key|api_key"
)
LABEL_MAX_LENGTH = 150


def event_hash(*, previous_hash: str, fields: dict[str, Any]) -> str:
    """SHA-256 over the previous event's hash and this event's content."""
    payload = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{previous_hash}\n{payload}".encode()).hexdigest()


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


def lock_chain() -> None:
    """Serialize writers to the chain until their transaction ends (PostgreSQL).

    SQLite runs one writing transaction at a time (IMMEDIATE transactions) and needs nothing more.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_ID])


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
    lock_chain()
    event.previous_hash = (
        AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first() or AuditEvent.GENESIS_HASH
    )
    event.hash = event_hash(previous_hash=event.previous_hash, fields=event.chained_fields())
    event.save()
    return event


@dataclass(frozen=True)
class ChainReport:
    checked: int
    broken_event: AuditEvent | None = None
    reason: str = ""

    @property
    def is_intact(self) -> bool:
        return self.broken_event is None


def audit_chain_verify(*, batch_size: int = 2000) -> ChainReport:
    """Walk the chain from the oldest remaining event and report the first broken link.

    The oldest remaining event anchors the chain (older ones may have been pruned by retention).
    """
    previous: AuditEvent | None = None
    checked = 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=batch_size):
        if previous is not None and event.previous_hash != previous.hash:
            return ChainReport(checked, event, "does not follow the event before it")
        if event.hash != event_hash(previous_hash=event.previous_hash, fields=event.chained_fields()):
            return ChainReport(checked, event, "content does not match its hash")
        previous = event
        checked += 1
    return ChainReport(checked)


def _batches_older_than(cutoff: datetime, batch_size: int) -> Iterator[list[int]]:
    while ids := list(
        AuditEvent.objects.filter(occurred_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:batch_size]
    ):
        yield ids


def audit_events_prune(*, older_than: datetime, batch_size: int = 1000) -> int:
    """Delete events older than `older_than` in short batches, oldest first; record that it did.

    Deleting a prefix keeps the rest of the chain verifiable from its new oldest event.
    """
    deleted = 0
    for ids in _batches_older_than(older_than, batch_size):
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL audit.allow_delete = 'on'")
            deleted += models.QuerySet.delete(AuditEvent.objects.filter(id__in=ids))[0]
    if deleted:
        audit_record(
            action="audit.events.pruned",
            metadata={"deleted": deleted, "older_than": older_than.isoformat()},
        )
    return deleted
