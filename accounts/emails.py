"""Outgoing account e-mail: rendered now, sent by a Celery task once the transaction commits.

Every message (allauth's verification, reset and change notices, and our own notices) is rendered
from `<prefix>_subject.txt`, `<prefix>_message.txt` and `<prefix>_message.html` into a JSON payload,
and handed to `accounts.tasks.email_send` only after the transaction that caused it commits: a
rolled-back change sends nothing.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from functools import partial
from typing import Any

from allauth.account.adapter import get_adapter
from allauth.account.models import EmailAddress
from allauth.core import context as allauth_context
from celery.exceptions import Retry
from django.conf import settings
from django.contrib.sites.shortcuts import get_current_site
from django.db import transaction
from django.urls import reverse
from kombu.exceptions import OperationalError

from accounts.models import User

logger = logging.getLogger(__name__)

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


def _email_publish(payload: dict[str, Any]) -> None:
    from accounts.tasks import email_send, email_send_options

    # The change is committed: failing the request now would not undo it, and the user can ask again.
    try:
        email_send.apply_async(args=(payload,), **email_send_options(payload))
    except OperationalError:
        logger.exception(
            "Broker unreachable; e-mail %s (%s) not queued", payload["id"], payload["template_prefix"]
        )
    except Retry:
        # Only without a broker (eager tasks, the embedded default): a retry cannot be scheduled.
        logger.error(
            "E-mail %s (%s) not delivered; eager tasks cannot retry later",
            payload["id"],
            payload["template_prefix"],
        )


def email_queue(*, template_prefix: str, to: str, context: dict[str, Any]) -> None:
    """Render an allauth-style message and queue its delivery after the current transaction commits
    (at once outside a transaction)."""
    payload = email_render(template_prefix=template_prefix, to=to, context=context)
    transaction.on_commit(partial(_email_publish, payload))


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
