"""Log filters: every record carries the request ID, and no secret survives into a log line."""

from __future__ import annotations

import logging
import re
from typing import Any

from django.http import HttpRequest

from config.context import request_id_var
from config.outages import outage_dependency, outage_report

REDACTED = "[REDACTED]"

# Names whose values are secrets wherever they appear: key=value, "key": "value", key: value.
_SENSITIVE_NAME = (
    r"[\w-]*(?:password|passwd|secret|token|authorization|cookie|session_?(?:id|key)|api[_-]?key"
    r"|code_verifier|csrf|otp|private_key)[\w-]*"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization header values: "Bearer <token>", "Basic <credentials>".
    (re.compile(r"(?i)\b(bearer|basic|dpop)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {REDACTED}"),
    # JWTs anywhere (header.payload.signature, base64url, header starts with '{"').
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Credentials inside URLs: scheme://user:password@host.
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), rf"\1{REDACTED}@"),
    # OAuth authorization codes in query strings.
    (re.compile(r"([?&](?:code|state_secret)=)[^&\s\"']+"), rf"\1{REDACTED}"),
    # Sensitive keys followed by a value, quoted or not.
    (
        re.compile(rf"(?i)([\"']?\b{_SENSITIVE_NAME}[\"']?\s*[:=]\s*)(?:\"[^\"]*\"|'[^']*'|[^\s&,;)}}\]]+)"),
        rf"\1{REDACTED}",
    ),
    # PEM private keys.
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL),
        REDACTED,
    ),
)
_SENSITIVE_ATTRIBUTE = re.compile(rf"(?i)^{_SENSITIVE_NAME}$")
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


def redact(text: str) -> str:
    """Return `text` with passwords, tokens, keys and session identifiers replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, HttpRequest):
        # Django passes the request as `extra`; its repr holds the query string.
        return f"{value.method} {value.path}"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(repr(value))


class RequestIDFilter(logging.Filter):
    """Stamp each record with the ID of the request (or task) it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class RedactSecretsFilter(logging.Filter):
    """Rewrite a record so its message, extras and traceback carry no secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name in _STANDARD_ATTRIBUTES or name == "request_id":
                continue
            setattr(record, name, REDACTED if _SENSITIVE_ATTRIBUTE.match(name) else _redact_value(value))
        return True


# Django's per-request error log: "Internal Server Error: /path" with the traceback.
REQUEST_LOGGERS = frozenset({"django.request", "django.server"})


class OutageFilter(logging.Filter):
    """While a dependency is down, no traceback per failure.

    The record Django logs for each request an outage failed becomes the outage log: one line per
    dependency and interval, with a count (config.outages). Any other record about an outage error
    keeps its message (it says what was not done, e.g. which e-mail was not queued) and loses only
    its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        dependency = outage_dependency(error)
        if dependency is None or error is None:
            return True
        if record.name in REQUEST_LOGGERS:
            outage_report(dependency, error)
            return False
        record.msg = f"{record.getMessage()} ({type(error).__name__}: {str(error).strip()[:300]})"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True
