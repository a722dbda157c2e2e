"""Outgoing account e-mail: rendered now, sent by a Celery task once the transaction commits.

Every message (allauth's verification, reset and change notices, and our own notices) is rendered
from `<prefix>_subject.txt`, `<prefix>_message.txt` and `<prefix>_message.html` into a JSON payload
and recorded as an outbox job (accounts.services.outbox) in the transaction that caused it: a
rolled-back change sends nothing, a committed one sends its message once the broker can take it,
whatever Redis does meanwhile (docs/decisions/0019-outbox.md).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from allauth.account.adapter import get_adapter
from allauth.account.models import EmailAddress
from allauth.core import context as allauth_context
from django.conf import settings
from django.contrib.sites.shortcuts import get_current_site
from django.urls import reverse

from accounts.models import User

NEW_DEVICE_TEMPLATE_PREFIX = "account/email/new_device"


def email_render(*, template_prefix: str, to: str, context: dict[str, Any]) -> dict[str, Any]:
    """Render a message into the JSON-serializable payload of `accounts.tasks.email_send`."""
    request = allauth_context.request
    # What allauth's own send_mail puts in every message's context (our adapter replaces it), plus
    # the site's address for links; the caller's values win.
    full_context = {
        "request": request,
        "email": to,
        "current_site": get_current_site(request),
        "site_url": settings.SITE_URL,
        **context,
    }
    message = get_adapter().render_mail(template_prefix, to, full_context)
    return {
        "id": uuid.uuid4().hex,
        "template_prefix": template_prefix,
        "subject": message.subject,
        "body": message.body,
        "from_email": message.from_email,
        "to": list(message.to),
        # RFC 3834 §5: tells auto-responders not to answer.
        "headers": {"Auto-Submitted": "auto-generated"},
        "alternatives": [
            [str(content), mimetype] for content, mimetype in getattr(message, "alternatives", [])
        ],
    }


def email_queue(*, template_prefix: str, to: str, context: dict[str, Any]) -> None:
    """Render an allauth-style message and queue its delivery with the current transaction (at
    once outside a transaction)."""
    from accounts.services.outbox import job_enqueue
    from accounts.tasks import EMAIL_SEND_MAX_ATTEMPTS, EMAIL_TASK

    payload = email_render(template_prefix=template_prefix, to=to, context=context)
    job_enqueue(
        task=EMAIL_TASK,
        arguments=payload,
        label=template_prefix,
        job_id=uuid.UUID(payload["id"]),
        max_attempts=EMAIL_SEND_MAX_ATTEMPTS,
    )


def email_new_device_notice(
    *,
    user: User,
    device_label: str,
    ip_address: str | None,
    signed_in_at: datetime,
    password_change_url: str | None = None,
) -> None:
    """Tell the user about a sign-in from a device not seen before, once the sign-in commits."""
    to = EmailAddress.objects.get_primary_email(user)
    if not to:
        return
    email_queue(
        template_prefix=NEW_DEVICE_TEMPLATE_PREFIX,
        to=to,
        context={
            "user": user,
            "device_label": device_label,
            "ip_address": ip_address,
            "signed_in_at": signed_in_at,
            "password_change_url": password_change_url
            or settings.SITE_URL + reverse("account_change_password"),
        },
    )
