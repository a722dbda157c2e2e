"""Shapes of audit events: the API's JSON and the export's CSV and JSON-lines rows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from audit.models import AuditEvent


class AuditActorSerializer(serializers.Serializer[AuditEvent]):
    type = serializers.CharField(source="actor_type", read_only=True)
    id = serializers.CharField(source="actor_id", read_only=True)
    label = serializers.CharField(source="actor_label", read_only=True)  # type: ignore[assignment]


class AuditTargetSerializer(serializers.Serializer[AuditEvent]):
    type = serializers.CharField(source="target_type", read_only=True)
    id = serializers.CharField(source="target_id", read_only=True)
    label = serializers.CharField(source="target_label", read_only=True)  # type: ignore[assignment]


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    # The public ID; the integer primary key only orders the chain.
    id = serializers.UUIDField(source="event_id", read_only=True)
    actor = AuditActorSerializer(source="*", read_only=True)
    target = AuditTargetSerializer(source="*", read_only=True)

    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "occurred_at",
            "action",
            "outcome",
            "actor",
            "target",
            "ip_address",
            "user_agent",
            "request_id",
            "changes",
            "metadata",
            "previous_hash",
            "hash",
        )
        read_only_fields = fields


# The export reads plain tuples (no model instances, no DRF fields): it streams millions of rows.
EXPORT_COLUMNS = (
    "event_id",
    "occurred_at",
    "action",
    "outcome",
    "actor_type",
    "actor_id",
    "actor_label",
    "target_type",
    "target_id",
    "target_label",
    "ip_address",
    "user_agent",
    "request_id",
    "changes",
    "metadata",
    "previous_hash",
    "hash",
)
CSV_HEADER = ("id", *EXPORT_COLUMNS[1:])
# Spreadsheets run cells starting with these as formulas; labels and user agents come from users.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _timestamp(value: datetime) -> str:
    """The API's datetime format (DRF's): ISO 8601 in the current time zone, UTC as "Z"."""
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _spreadsheet_safe(text: str) -> str:
    return f"'{text}" if text.startswith(_FORMULA_PREFIXES) else text


def audit_event_csv_row(row: tuple[Any, ...]) -> list[str]:
    """One CSV row for a tuple of `EXPORT_COLUMNS`; JSON columns hold compact JSON."""
    (
        event_id,
        occurred_at,
        action,
        outcome,
        actor_type,
        actor_id,
        actor_label,
        target_type,
        target_id,
        target_label,
        ip_address,
        user_agent,
        request_id,
        changes,
        metadata,
        previous_hash,
        event_hash,
    ) = row
    safe = _spreadsheet_safe  # on every column a person or a client could have written
    return [
        str(event_id),
        _timestamp(occurred_at),
        safe(action),
        outcome,
        actor_type,
        safe(actor_id),
        safe(actor_label),
        safe(target_type),
        safe(target_id),
        safe(target_label),
        ip_address or "",
        safe(user_agent),
        safe(request_id),
        _json(changes),
        _json(metadata),
        previous_hash,
        event_hash,
    ]


def audit_event_json_line(row: tuple[Any, ...]) -> str:
    """One JSON line for a tuple of `EXPORT_COLUMNS`, shaped like `AuditEventSerializer`."""
    (
        event_id,
        occurred_at,
        action,
        outcome,
        actor_type,
        actor_id,
        actor_label,
        target_type,
        target_id,
        target_label,
        ip_address,
        user_agent,
        request_id,
        changes,
        metadata,
        previous_hash,
        event_hash,
    ) = row
    event = {
        "id": str(event_id),
        "occurred_at": _timestamp(occurred_at),
        "action": action,
        "outcome": outcome,
        "actor": {"type": actor_type, "id": actor_id, "label": actor_label},
        "target": {"type": target_type, "id": target_id, "label": target_label},
        "ip_address": ip_address,
        "user_agent": user_agent,
        "request_id": request_id,
        "changes": changes,
        "metadata": metadata,
        "previous_hash": previous_hash,
        "hash": event_hash,
    }
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
