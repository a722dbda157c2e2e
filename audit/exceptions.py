"""Exceptions of the audit app."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied


class AuditTrailIsAppendOnly(PermissionDenied):
    """Audit events are never changed, and removed only by the retention job."""
