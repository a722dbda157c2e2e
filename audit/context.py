"""The request being served, so that `audit_record()` needs no `request` argument in services."""

from __future__ import annotations

from contextvars import ContextVar

from django.http import HttpRequest

current_request: ContextVar[HttpRequest | None] = ContextVar("audit_current_request", default=None)
