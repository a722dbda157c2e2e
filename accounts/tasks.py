"""Celery tasks of the accounts app: small adapters around services."""

from __future__ import annotations

import logging
import smtplib
import uuid
from typing import Any
from urllib.parse import urlsplit

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

logger = logging.getLogger(__name__)

# Attempts at one message: the first and six retries, spread over about half an hour.
EMAIL_SEND_MAX_ATTEMPTS = 7
# Back-off before retry n (0-based): a random wait in [0, min(30 s * 2**n, 10 min)] ("full jitter").
EMAIL_RETRY_BACKOFF_FACTOR = 30
EMAIL_RETRY_BACKOFF_MAX = 600
EMAIL_TASK = "accounts.email_send"


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


def email_message_id(message_id: str) -> str:
    """The Message-ID of every attempt at one message (RFC 5322 §3.6.4): a copy sent again after a
    worker died mid-send carries the same one, which mail providers and clients show once."""
    return f"<{message_id}@{urlsplit(settings.SITE_URL).hostname or 'localhost'}>"


def _email_deliver(payload: dict[str, Any], *, message_id: str) -> None:
    connection = get_connection(timeout=settings.EMAIL_TIMEOUT)
    message = EmailMultiAlternatives(
        subject=payload["subject"],
        body=payload["body"],
        from_email=payload["from_email"],
        to=payload["to"],
        headers={**(payload.get("headers") or {}), "Message-ID": email_message_id(message_id)},
        connection=connection,
    )
    for content, mimetype in payload.get("alternatives", []):
        message.attach_alternative(content, mimetype)
    message.send()


@shared_task(name=EMAIL_TASK, ignore_result=True)
def email_send(job_id: str | dict[str, Any]) -> None:
    """Deliver one rendered message (accounts.emails.email_render), queued as an outbox job.

    The job is claimed in PostgreSQL first (accounts.services.outbox.job_claim): a message delivered
    twice, by the relay and by the broker's own redelivery, sends once, whatever the cache does. A
    failure worth retrying makes the job due again after a back-off, and the relay publishes it
    then. Bodies hold links and codes: they are never logged, only the message ID and template.
    """
    from accounts.models import OutboxJob
    from accounts.services.outbox import job_adopt, job_claim, job_finish, job_retry_later

    if isinstance(job_id, dict):
        # Queued before the outbox, with the rendered message in the task's arguments.
        payload = job_id
        job_id = str(
            job_adopt(
                job_id=uuid.UUID(payload["id"]),
                task=EMAIL_TASK,
                arguments=payload,
                label=payload["template_prefix"],
            ).pk
        )
    job = job_claim(job_id=job_id)
    if job is None:
        found = OutboxJob.objects.filter(pk=job_id).values_list("label", "state").first()
        label, state = found or ("?", "unknown")
        logger.info("E-mail %s (%s) not claimed, its job is %s; skipped", job_id, label, state)
        return
    message_id, template_prefix = job_id, job.label
    try:
        _email_deliver(job.arguments, message_id=message_id)
    except OSError as error:  # smtplib.SMTPException is an OSError too
        reason = f"{type(error).__name__} {getattr(error, 'smtp_code', '')}".strip()
        if not email_send_error_is_transient(error):
            job_finish(job=job, error=f"refused: {reason}")
            logger.error("E-mail %s (%s) refused, not retried: %s", message_id, template_prefix, reason)
            return
        countdown = get_exponential_backoff_interval(
            factor=EMAIL_RETRY_BACKOFF_FACTOR,
            retries=job.attempts - 1,
            maximum=EMAIL_RETRY_BACKOFF_MAX,
            full_jitter=True,
        )
        if not job_retry_later(job=job, countdown=countdown, error=reason):
            logger.error(
                "E-mail %s (%s) not delivered after %s attempts: %s",
                message_id,
                template_prefix,
                job.attempts,
                reason,
            )
            return
        logger.warning(
            "E-mail %s (%s) failed (%s); retry %s in %s s",
            message_id,
            template_prefix,
            reason,
            job.attempts,
            countdown,
        )
        return
    job_finish(job=job)


@shared_task(name="accounts.jobs_relay", ignore_result=True)
def jobs_relay() -> None:
    """Publish the outbox jobs the broker does not have (beat job, every few seconds)."""
    from accounts.services.outbox import jobs_relay as relay

    relay()


@shared_task(name="accounts.jobs_prune", ignore_result=True)
def jobs_prune() -> int:
    """Delete outbox jobs finished a week ago (beat job)."""
    from accounts.services.outbox import jobs_prune as prune

    return prune()


# --- account deletion and data export (accounts.services.deletion, accounts.services.exports) ----


@shared_task(name="accounts.users_purge_due")
def users_purge_due() -> int:
    """Anonymise every account whose deletion grace period has ended (daily beat job)."""
    from accounts.services.deletion import users_purge_due as purge

    return purge()


@shared_task(name="accounts.data_export_build", ignore_result=True)
def data_export_build(job_id: str) -> None:
    """Build one requested data export (an outbox job); a no-op when it is no longer pending."""
    from accounts.models import OutboxJob
    from accounts.services.exports import data_export_build as build
    from accounts.services.outbox import job_claim, job_finish

    job = job_claim(job_id=job_id)
    if job is None:
        if not OutboxJob.objects.filter(pk=job_id).exists():
            build(export_id=job_id)  # queued before the outbox: the ID is the export's
        return
    build(export_id=job.arguments["export_id"])
    job_finish(job=job)


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
