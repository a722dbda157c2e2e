"""Settings of the audit app, read when used (never at import)."""

from __future__ import annotations

from django.conf import settings

DEFAULT_RETENTION_DAYS = 365


def retention_days() -> int:
    return int(getattr(settings, "AUDIT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS))
