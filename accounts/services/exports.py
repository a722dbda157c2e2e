"""Exports of a user's personal data: requested over the API, built by a Celery job, fetched
through an expiring signed link (docs/decisions/0009-account-deletion-and-export.md)."""

from __future__ import annotations

import json
import logging
import math
import secrets
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from accounts.emails import email_queue
from accounts.exceptions import (
    DataExportInProgress,
    DataExportLinkExpired,
    DataExportLinkInvalid,
    DataExportNotFound,
    RateLimited,
)
from accounts.models import DataExport, DeviceSession, Membership, User, UserBlock
from accounts.services.outbox import job_enqueue
from audit.models import AuditEvent
from audit.services import audit_record, scrub

logger = logging.getLogger(__name__)

BUNDLE_FORMAT_VERSION = 1
DOWNLOAD_LINK_SALT = "accounts.exports.download"
READY_TEMPLATE_PREFIX = "account/email/data_export_ready"
# At most this many exports per user in any 24 hours, and one being built at a time.
EXPORTS_PER_DAY = 5
EXPORT_RATE_WINDOW = timedelta(hours=24)
# A pending export older than this was lost (a worker died): it no longer blocks a new one, and
# the expiry job marks it failed.
PENDING_EXPORT_STALE_AFTER = timedelta(hours=1)
# A build that crashes its worker (out of memory, say) is tried this often in all.
DATA_EXPORT_BUILD_MAX_ATTEMPTS = 3


def data_export_link_lifetime() -> timedelta:
    return timedelta(hours=settings.DATA_EXPORT_LINK_HOURS)


# --- request ----------------------------------------------------------------------------------


@transaction.atomic
def data_export_request(*, user: User) -> DataExport:
    """Start building an export of the user's data, unless one is in progress or they asked too often."""
    User.objects.select_for_update().filter(pk=user.pk).first()  # one request per user at a time
    now = timezone.now()
    exports = DataExport.objects.filter(user=user)
    if exports.filter(
        status=DataExport.Status.PENDING, created_at__gt=now - PENDING_EXPORT_STALE_AFTER
    ).exists():
        raise DataExportInProgress()
    recent = list(
        exports.filter(created_at__gt=now - EXPORT_RATE_WINDOW)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:EXPORTS_PER_DAY]
    )
    if len(recent) >= EXPORTS_PER_DAY:
        wait = (recent[-1] + EXPORT_RATE_WINDOW - now).total_seconds()
        raise RateLimited(
            f"You can request {EXPORTS_PER_DAY} exports a day.",
            retry_after=max(math.ceil(wait), 1),
            code="export_limit_reached",
        )
    export = DataExport(user=user)
    export.full_clean()
    export.save()
    audit_record(action="accounts.user.data_export_requested", actor=user, target=export)
    # In the same transaction: the build is queued exactly when the request is, and built once the
    # broker can take it, however long it is down (docs/decisions/0019-outbox.md).
    job_enqueue(
        task="accounts.data_export_build",
        arguments={"export_id": str(export.pk)},
        label=f"export {export.pk}",
        max_attempts=DATA_EXPORT_BUILD_MAX_ATTEMPTS,
    )
    return export


def data_export_get(*, user: User, export_id: Any) -> DataExport:
    """One of the user's own exports; `DataExportNotFound` for any other."""
    export = DataExport.objects.filter(user=user, pk=export_id).first()
    if export is None:
        raise DataExportNotFound()
    return export


# --- the bundle --------------------------------------------------------------------------------


def _consents(user: User) -> list[dict[str, Any]]:
    """What the user let each OAuth application do: its grants and tokens, never their values."""
    by_application: dict[Any, dict[str, Any]] = {}

    def entry(application: Any) -> dict[str, Any]:
        if application.pk not in by_application:
            by_application[application.pk] = {
                "application": {"client_id": application.client_id, "name": application.name},
                "scopes": set(),
                "remembered_consents": [],
                "grants": [],
                "access_tokens": [],
                "refresh_tokens": [],
            }
        return by_application[application.pk]

    # The consent pages the user answered (oauth_provider.models.Consent), live and revoked.
    for consent in user.oauth_consents.select_related("application").order_by("created_at"):
        item = entry(consent.application)
        if consent.revoked_at is None:
            item["scopes"].update(consent.scopes.split())
        item["remembered_consents"].append(
            {
                "scopes": consent.scopes.split(),
                "first_authorized_at": consent.created_at,
                "last_authorized_at": consent.last_authorized_at,
                "revoked_at": consent.revoked_at,
            }
        )
    for grant in get_grant_model().objects.filter(user=user).select_related("application"):
        item = entry(grant.application)
        item["scopes"].update(grant.scope.split())
        item["grants"].append(
            {"scope": grant.scope, "created_at": grant.created, "expires_at": grant.expires}
        )
    for access in (
        get_access_token_model()
        .objects.filter(user=user, application__isnull=False)
        .select_related("application")
    ):
        item = entry(access.application)
        item["scopes"].update(access.scope.split())
        item["access_tokens"].append(
            {"scope": access.scope, "created_at": access.created, "expires_at": access.expires}
        )
    for refresh in get_refresh_token_model().objects.filter(user=user).select_related("application"):
        entry(refresh.application)["refresh_tokens"].append(
            {"created_at": refresh.created, "revoked_at": refresh.revoked}
        )
    consents = []
    for item in by_application.values():
        item["scopes"] = sorted(item["scopes"])
        consents.append(item)
    return sorted(consents, key=lambda item: item["application"]["client_id"])


def user_files_list(*, user: User) -> list[dict[str, Any]]:
    """The user's stored files. Hook: the `files` app has no models yet, so there are none."""
    return []


def data_export_bundle(*, user: User) -> dict[str, Any]:
    """Everything the service holds about the user, as JSON-serializable data."""
    device_sessions = DeviceSession.objects.filter(user=user).order_by("created_at")
    browser_sessions = UserSession.objects.filter(user=user).order_by("created_at")
    return {
        "format_version": BUNDLE_FORMAT_VERSION,
        "generated_at": timezone.now(),
        "profile": {
            "id": user.pk,
            "username": user.username,
            "display_name": user.display_name,
            "email": user.email,
            "description": user.description,
            "roles": user.roles,
            "is_active": user.is_active,
            "created_at": user.created_at,
            "last_login": user.last_login,
            "deleted_at": user.deleted_at,
        },
        "email_addresses": [
            {"email": address.email, "verified": address.verified, "primary": address.primary}
            for address in EmailAddress.objects.filter(user=user).order_by("-primary", "email")
        ],
        "devices": {
            "api_clients": [
                {
                    "id": session.pk,
                    "label": session.label,
                    "user_agent": session.user_agent,
                    "ip_address": session.ip_address,
                    "created_at": session.created_at,
                    "last_used_at": session.last_used_at,
                    "revoked_at": session.revoked_at,
                    "revoke_reason": session.revoke_reason,
                }
                for session in device_sessions
            ],
            "browsers": [
                {
                    "user_agent": session.user_agent,
                    "ip_address": session.ip,
                    "created_at": session.created_at,
                    "last_seen_at": session.last_seen_at,
                }
                for session in browser_sessions
            ],
        },
        "social_accounts": [
            {
                "provider": account.provider,
                "uid": account.uid,
                "date_joined": account.date_joined,
                "last_login": account.last_login,
                # What the provider said about the user; any token it slipped in is redacted.
                "extra_data": scrub(account.extra_data),
            }
            for account in SocialAccount.objects.filter(user=user).order_by("provider", "uid")
        ],
        "consents": _consents(user),
        "organizations": [
            {
                "name": membership.organization.name,
                "slug": membership.organization.slug,
                "role": membership.role,
            }
            for membership in Membership.objects.filter(user=user).select_related("organization")
        ],
        "blocked_users": list(
            UserBlock.objects.filter(blocker=user)
            .order_by("created_at")
            .values_list("blocked__username", flat=True)
        ),
        "files": user_files_list(user=user),
        "audit_events": [
            {
                "event_id": event.event_id,
                "occurred_at": event.occurred_at,
                "action": event.action,
                "outcome": event.outcome,
                "actor_type": event.actor_type,
                "actor": event.actor_label,
                "target_type": event.target_type,
                "target": event.target_label,
                "ip_address": event.ip_address,
                "user_agent": event.user_agent,
                "changes": event.changes,
                "metadata": event.metadata,
            }
            for event in AuditEvent.objects.about_user(user.pk).order_by("id").iterator(chunk_size=1000)
        ],
    }


# --- building and fetching -----------------------------------------------------------------------


def data_export_download_token(*, export: DataExport) -> str:
    return signing.dumps({"export": str(export.pk)}, salt=DOWNLOAD_LINK_SALT)


def data_export_download_url(*, export: DataExport) -> str | None:
    """The signed link to the export's file while it is ready and not expired, else None."""
    if not data_export_is_downloadable(export=export):
        return None
    path = reverse("user-me-export-download", kwargs={"export_id": export.pk})
    return f"{settings.SITE_URL}{path}?token={data_export_download_token(export=export)}"


def data_export_is_downloadable(*, export: DataExport, now: datetime | None = None) -> bool:
    return (
        export.status == DataExport.Status.READY
        and bool(export.file)
        and export.expires_at is not None
        and export.expires_at > (now or timezone.now())
    )


def data_export_file_delete(*, export: DataExport) -> None:
    """Delete the export's file from storage once the current transaction commits."""
    if export.file:
        transaction.on_commit(partial(export.file.storage.delete, export.file.name))


def data_export_build(*, export_id: Any) -> DataExport | None:
    """Build a pending export's bundle, store it, and e-mail the user its link.

    Idempotent: an export that is no longer pending (built, failed, or deleted by a purge) is
    left alone. The file gets a random name on the default storage; only the signed link serves it.
    """
    export = (
        DataExport.objects.filter(pk=export_id, status=DataExport.Status.PENDING)
        .select_related("user")
        .first()
    )
    if export is None:
        return None
    content = json.dumps(data_export_bundle(user=export.user), cls=DjangoJSONEncoder, indent=2).encode()
    name = f"{secrets.token_urlsafe(32)}.json"
    try:
        stored_name = export.file.storage.save(
            export.file.field.generate_filename(export, name), ContentFile(content)
        )
    except OSError:
        logger.exception("Data export %s could not be stored", export.pk)
        DataExport.objects.filter(pk=export.pk, status=DataExport.Status.PENDING).update(
            status=DataExport.Status.FAILED, finished_at=timezone.now()
        )
        return None
    with transaction.atomic():
        export = DataExport.objects.select_for_update().select_related("user").filter(pk=export.pk).first()
        if export is None or export.status != DataExport.Status.PENDING:
            # Purged or finished meanwhile: the file just written belongs to nobody.
            transaction.on_commit(partial(DataExport.file.field.storage.delete, stored_name))
            return None
        now = timezone.now()
        export.file.name = stored_name
        export.size = len(content)
        export.status = DataExport.Status.READY
        export.finished_at = now
        export.expires_at = now + data_export_link_lifetime()
        export.save(update_fields=["file", "size", "status", "finished_at", "expires_at"])
        audit_record(
            action="accounts.user.data_exported",
            actor=export.user,
            target=export,
            metadata={"size": export.size, "expires_at": export.expires_at.isoformat()},
        )
        to = EmailAddress.objects.get_primary_email(export.user) or export.user.email
        if to:
            email_queue(
                template_prefix=READY_TEMPLATE_PREFIX,
                to=to,
                context={
                    "user": export.user,
                    "download_url": data_export_download_url(export=export),
                    "expires_at": export.expires_at,
                },
            )
    return export


def data_export_for_download(*, export_id: Any, token: str) -> DataExport:
    """The export a signed download link names, while the link is valid."""
    try:
        payload = signing.loads(token, salt=DOWNLOAD_LINK_SALT, max_age=data_export_link_lifetime())
    except signing.SignatureExpired:
        raise DataExportLinkExpired() from None
    except signing.BadSignature:
        raise DataExportLinkInvalid() from None
    if not isinstance(payload, dict) or payload.get("export") != str(export_id):
        raise DataExportLinkInvalid()
    export = DataExport.objects.filter(pk=export_id).first()
    if export is None or not data_export_is_downloadable(export=export):
        raise DataExportLinkExpired()
    return export


def data_exports_expire() -> dict[str, int]:
    """Delete the files of exports whose link has expired, and fail exports lost while pending."""
    now = timezone.now()
    expired = 0
    for export in DataExport.objects.filter(status=DataExport.Status.READY, expires_at__lte=now):
        with transaction.atomic():
            locked = (
                DataExport.objects.select_for_update()
                .filter(pk=export.pk, status=DataExport.Status.READY)
                .first()
            )
            if locked is None:
                continue
            data_export_file_delete(export=locked)
            locked.file.name = ""
            locked.status = DataExport.Status.EXPIRED
            locked.save(update_fields=["file", "status"])
            expired += 1
    failed = DataExport.objects.filter(
        status=DataExport.Status.PENDING, created_at__lte=now - PENDING_EXPORT_STALE_AFTER
    ).update(status=DataExport.Status.FAILED, finished_at=now)
    return {"expired": expired, "failed": failed}
