"""What an attacker with database access does to the audit trail, for the tests to catch."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import connection

from audit.models import AuditEvent


def tamper(sql: str, params: list[Any] | None = None) -> None:
    """Run `sql` with the append-only trigger lifted, as the table's owner could."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute(sql, params or [])
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


def plain_sha256(previous_hash: str, event: AuditEvent) -> str:
    """The chain's unkeyed hash, which anyone who can read an event can recompute."""
    payload = json.dumps(event.chained_fields(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{previous_hash}\n{payload}".encode()).hexdigest()


def rehash_after(event_id: int) -> None:
    """Recompute every event after `event_id` with the unkeyed hash, relinking each to the one before."""
    previous = (
        AuditEvent.objects.filter(id__lte=event_id).order_by("-id").values_list("hash", flat=True).first()
    )
    for event in AuditEvent.objects.filter(id__gt=event_id).order_by("id"):
        new_hash = plain_sha256(previous or AuditEvent.GENESIS_HASH, event)
        tamper(
            "UPDATE audit_auditevent SET previous_hash = %s, hash = %s WHERE id = %s",
            [previous or AuditEvent.GENESIS_HASH, new_hash, event.pk],
        )
        previous = new_hash
