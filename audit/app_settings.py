"""Settings of the audit app, read when used (never at import)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULT_RETENTION_DAYS = 365


def retention_days() -> int:
    return int(getattr(settings, "AUDIT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS))


def chain_keys() -> tuple[str, ...]:
    """The HMAC keys of the chain, the one that MACs new events first (docs/decisions/0007)."""
    keys = tuple(key.strip() for key in getattr(settings, "AUDIT_CHAIN_KEYS", ()) if key.strip())
    if not keys:
        raise ImproperlyConfigured(
            "AUDIT_CHAIN_KEYS is empty: the audit trail cannot be recorded or verified without a key."
        )
    return keys


def anchor_file() -> str:
    """A file the anchor job appends the chain's head to, besides the log ("": the log only)."""
    return str(getattr(settings, "AUDIT_ANCHOR_FILE", "") or "")
