"""Celery tasks of the accounts app: small adapters around services."""

from __future__ import annotations

import logging
import smtplib
from typing import Any

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.core.cache import cache
from django.core.mail import EmailMultiAlternatives, get_connection
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

EMAIL_SEND_MAX_RETRIES = 6
# Back-off before retry n (0-based): a random wait in [0, min(30 s * 2**n, 10 min)] ("full jitter").
EMAIL_RETRY_BACKOFF_FACTOR = 30
EMAIL_RETRY_BACKOFF_MAX = 600
# How long a delivered message's ID is remembered: far longer than any redelivery or retry chain.
EMAIL_SENT_MARK_SECONDS = 24 * 60 * 60
_SENDING = "sending"
_SENT = "sent"


def email_send_options(payload: dict[str, Any]) -> dict[str, Any]:
    """Options to publish `email_send` with: Celery's logs and events show the message ID and
    template instead of the payload, never its body, subject or recipients."""
    # A dict because celery-types does not know the `argsrepr` option.
    return {"argsrepr": f"(<e-mail {payload['id']} {payload['template_prefix']}>,)"}


def email_send_error_is_transient(error: OSError) -> bool:
    """Tell a delivery failure worth retrying (4xx replies, lost connections, timeouts) from a final one."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(400 <= code < 500 for code in codes)
    if isinstance(error, smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError):
        return True
    if isinstance(error, smtplib.SMTPResponseException):
        # RFC 5321 §4.2.1: 4yz is a transient negative completion reply, 5yz a permanent one.
        return 400 <= error.smtp_code < 500
    # Other SMTP errors (e.g. SMTPNotSupportedError) get the same answer next time; the rest are
    # socket-level failures: refused or reset connections, timeouts, DNS lookups.
    return not isinstance(error, smtplib.SMTPException)


def _email_claim(message_id: str, *, seconds: int) -> bool:
    """Mark a message as being sent; False when it is already sent or being sent.

    The mark lives in the cache. Without a reachable cache the message is sent anyway: delivery
    becomes at-least-once (a redelivered task may send a duplicate) rather than at-most-once.
    """
    try:
        return cache.add(f"email-sent:{message_id}", _SENDING, timeout=seconds)
    except RedisError:
        logger.warning("Cache unreachable; sending e-mail %s without a duplicate guard", message_id)
        return True


def _email_mark(message_id: str, *, sent: bool) -> None:
    key = f"email-sent:{message_id}"
    try:
        if sent:
            cache.set(key, _SENT, timeout=EMAIL_SENT_MARK_SECONDS)
        else:
            cache.delete(key)
    except RedisError:
        logger.warning(
            "Cache unreachable; e-mail %s could not be marked %s", message_id, _SENT if sent else "unsent"
        )


def _email_deliver(payload: dict[str, Any]) -> None:
    connection = get_connection(timeout=settings.EMAIL_TIMEOUT)
    message = EmailMultiAlternatives(
        subject=payload["subject"],
        body=payload["body"],
        from_email=payload["from_email"],
        to=payload["to"],
        headers=payload.get("headers") or {},
        connection=connection,
    )
    for content, mimetype in payload.get("alternatives", []):
        message.attach_alternative(content, mimetype)
    message.send()


@shared_task(bind=True, name="accounts.email_send", max_retries=EMAIL_SEND_MAX_RETRIES)
def email_send(self: Task[Any, Any], payload: dict[str, Any]) -> None:
    """Deliver one rendered message (see accounts.emails.email_render) at most once per ID.

    Tasks are acknowledged late, so a worker lost mid-send has its task redelivered: the message ID
    is claimed in the cache for as long as a send may take (the hard time limit), then marked sent
    for a day. A redelivery after a lost worker finds the claim expired and sends; a duplicate
    delivery of a sent or in-flight message is skipped. Bodies hold links and codes: they are never
    logged, only the message ID and template.
    """
    message_id, template_prefix = payload["id"], payload["template_prefix"]
    claim_seconds = int(self.app.conf.task_time_limit or 300)
    if not _email_claim(message_id, seconds=claim_seconds):
        logger.info("E-mail %s (%s) already sent or being sent; skipped", message_id, template_prefix)
        return
    try:
        _email_deliver(payload)
    except OSError as error:  # smtplib.SMTPException is an OSError too
        _email_mark(message_id, sent=False)
        reason = f"{type(error).__name__} {getattr(error, 'smtp_code', '')}".strip()
        if not email_send_error_is_transient(error):
            logger.error("E-mail %s (%s) refused, not retried: %s", message_id, template_prefix, reason)
            return
        if self.request.retries >= EMAIL_SEND_MAX_RETRIES:
            logger.error(
                "E-mail %s (%s) not delivered after %s retries: %s",
                message_id,
                template_prefix,
                self.request.retries,
                reason,
            )
            return
        countdown = get_exponential_backoff_interval(
            factor=EMAIL_RETRY_BACKOFF_FACTOR,
            retries=self.request.retries,
            maximum=EMAIL_RETRY_BACKOFF_MAX,
            full_jitter=True,
        )
        logger.warning(
            "E-mail %s (%s) failed (%s); retry %s in %s s",
            message_id,
            template_prefix,
            reason,
            self.request.retries + 1,
            countdown,
        )
        raise self.retry(exc=error, countdown=countdown, **email_send_options(payload)) from error
    _email_mark(message_id, sent=True)


# --- account deletion and data export (accounts.services.deletion, accounts.services.exports) ----


@shared_task(name="accounts.users_purge_due")
def users_purge_due() -> int:
    """Anonymise every account whose deletion grace period has ended (daily beat job)."""
    from accounts.services.deletion import users_purge_due as purge

    return purge()


@shared_task(name="accounts.data_export_build")
def data_export_build(export_id: str) -> str | None:
    """Build one requested data export; a no-op when it is no longer pending."""
    from accounts.services.exports import data_export_build as build

    export = build(export_id=export_id)
    return None if export is None else export.status


@shared_task(name="accounts.data_exports_expire")
def data_exports_expire() -> dict[str, int]:
    """Delete export files whose download link has expired, and fail lost pending exports (beat job)."""
    from accounts.services.exports import data_exports_expire as expire

    return expire()


@shared_task(name="accounts.email_codes_prune")
def email_codes_prune() -> int:
    """Delete e-mailed second-factor codes expired for a day (beat job)."""
    from accounts.services.mfa import email_codes_prune as prune

    return prune()


@shared_task(name="accounts.device_sessions_prune")
def device_sessions_prune() -> int:
    """Delete device sessions ended more than ACCOUNTS_DEVICE_SESSION_RETENTION_DAYS ago (beat job)."""
    from accounts.services.users import device_sessions_prune as prune

    return prune()
