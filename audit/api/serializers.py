"""Shapes of audit events: the API's JSON and the export's CSV and JSON-lines rows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.chain import ChainLink
from audit.models import AuditEvent, AuditVerification


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


class AuditVerificationCreateSerializer(serializers.Serializer[None]):
    full = serializers.BooleanField(
        default=False,
        help_text="Walk the whole chain instead of the events since the last verification (slower).",
    )
    anchor = serializers.RegexField(
        r"^[0-9]{1,19}:[0-9a-f]{64}$",
        required=False,
        help_text='The last anchor logged by the anchor job, "SEQ:MAC"; implies a full walk.',
        error_messages={"invalid": 'Give an anchor as "SEQ:MAC" (64 lowercase hex digits).'},
    )

    def validate_anchor(self, value: str) -> ChainLink:
        return ChainLink.parse(value)


class AuditChainHeadSerializer(serializers.Serializer[AuditVerification]):
    seq = serializers.IntegerField(source="head_seq", help_text="The newest event's chain position.")
    mac = serializers.CharField(source="head_hash", help_text="Its MAC, as anchors record it.")
    key_id = serializers.CharField(source="head_key_id", help_text="The chain key that MACed it.")


class AuditVerificationSerializer(serializers.ModelSerializer[AuditVerification]):
    # Chain positions are the events' primary keys, as anchors and `audit_verify` name them.
    checked_from = serializers.IntegerField(allow_null=True, help_text="The first event checked.")
    checked_to = serializers.IntegerField(allow_null=True, help_text="The last event found intact.")
    broken_seq = serializers.IntegerField(allow_null=True, help_text="Where the chain broke.")
    broken_event_id = serializers.UUIDField(
        allow_null=True, help_text="The event that breaks the chain; null when it is missing."
    )
    anchor = serializers.SerializerMethodField()
    head = serializers.SerializerMethodField()

    class Meta:
        model = AuditVerification
        fields = (
            "intact",
            "full",
            "checked",
            "checked_from",
            "checked_to",
            "broken_seq",
            "broken_event_id",
            "reason",
            "anchor",
            "head",
            "verified_at",
        )
        read_only_fields = fields

    def get_anchor(self, verification: AuditVerification) -> str | None:
        return verification.anchor or None

    @extend_schema_field(AuditChainHeadSerializer(allow_null=True))
    def get_head(self, verification: AuditVerification) -> dict[str, Any] | None:
        if verification.head_seq is None:
            return None
        return dict(AuditChainHeadSerializer(verification).data)


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
