"""Account deletion with a grace period: request, undo and purge.

See docs/decisions/0009-account-deletion-and-export.md. Deleting deactivates the account at once
and e-mails an undo link; a daily job anonymises accounts whose grace period has ended.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_device_grant_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

from accounts.emails import email_queue
from accounts.models import (
    AccountLockout,
    DataExport,
    DeviceSession,
    Invitation,
    Membership,
    Organization,
    OrganizationRole,
    User,
    UserBlock,
)
from accounts.services.moderation import delete_rows, revoked_for_audit, user_revoke_everything
from accounts.services.users import browser_session_end
from accounts.tokens import user_forget
from audit.models import AuditEvent
from audit.services import audit_record

logger = logging.getLogger(__name__)

UNDO_LINK_SALT = "accounts.deletion.undo"
DELETION_REQUESTED_TEMPLATE_PREFIX = "account/email/account_deletion_requested"
DELETION_PENDING_TEMPLATE_PREFIX = "account/email/account_deletion_pending"
# Signing in to an account pending deletion e-mails an undo link at most this often.
DELETION_REMINDER_INTERVAL = timedelta(minutes=10)
DELETION_REMINDER_CACHE_PREFIX = "accounts:deletion-reminder:"
PURGE_BATCH_SIZE = 100
# The e-mail domain of anonymised accounts: `.invalid` never resolves (RFC 2606 §2).
PURGED_EMAIL_DOMAIN = "deleted.invalid"
# The order in which a purged owner's organization finds its next owner.
_SUCCESSION = (OrganizationRole.ADMIN, OrganizationRole.MEMBER)
# Staff actions that deactivate an account: one taken during the grace period outranks the owner's
# undo link (a locked-down account must not come back by the link, which the mailbox holds).
STAFF_DEACTIVATION_ACTIONS = ("accounts.user.locked_down", "accounts.user.deactivated")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DeletionRequest:
    user: User
    purge_after: datetime


def deletion_grace_period() -> timedelta:
    return timedelta(days=settings.ACCOUNT_DELETION_GRACE_DAYS)


def deletion_purge_after(user: User) -> datetime | None:
    """When the account's pending deletion becomes final; None when no deletion is pending."""
    if user.deleted_at is None or user.purged_at is not None:
        return None
    return user.deleted_at + deletion_grace_period()


def _deletion_stamp(deleted_at: datetime) -> int:
    """The deletion request an undo token is bound to: its time, in whole microseconds (exact)."""
    return (deleted_at - _EPOCH) // timedelta(microseconds=1)


def deletion_undo_token_make(*, user: User) -> str:
    """A signed token that undoes this user's current deletion request, and no other."""
    if user.deleted_at is None:
        raise ValueError("The user has no pending deletion.")
    payload = {"user": str(user.pk), "deletion": _deletion_stamp(user.deleted_at)}
    return signing.dumps(payload, salt=UNDO_LINK_SALT, compress=True)


def deletion_undo_url(*, token: str) -> str:
    return f"{settings.SITE_URL}{reverse('account_deletion_undo')}?token={token}"


def _token_error(message: str, code: str) -> ValidationError:
    return ValidationError({"token": ValidationError(message, code=code)})


def deletion_undo_token_user(*, token: str, for_update: bool = False) -> User:
    """The account a valid undo token restores; `ValidationError` on the `token` field otherwise.

    Codes: `undo_link_invalid` (tampered, unknown, or replaced by a newer deletion request),
    `undo_link_expired` (the grace period is over), `undo_link_used` (no deletion is pending),
    `account_deactivated` (staff deactivated or locked the account down during the grace period).
    """
    try:
        payload = signing.loads(token, salt=UNDO_LINK_SALT, max_age=deletion_grace_period())
    except signing.SignatureExpired:
        raise _token_error("This undo link has expired.", "undo_link_expired") from None
    except signing.BadSignature:
        raise _token_error("This undo link is not valid.", "undo_link_invalid") from None
    invalid = _token_error("This undo link is not valid.", "undo_link_invalid")
    if not isinstance(payload, dict):
        raise invalid
    users = User.objects.select_for_update() if for_update else User.objects.all()
    try:
        user = users.get(pk=str(payload.get("user")))
    except (User.DoesNotExist, ValidationError, ValueError):
        raise invalid from None
    if user.purged_at is not None:
        raise _token_error("This undo link has expired.", "undo_link_expired")
    if user.deleted_at is None:
        raise _token_error("This undo link was already used.", "undo_link_used")
    if _deletion_stamp(user.deleted_at) != payload.get("deletion"):
        raise invalid  # a newer deletion request replaced this link
    purge_after = deletion_purge_after(user)
    if purge_after is None or purge_after <= timezone.now():
        raise _token_error("This undo link has expired.", "undo_link_expired")
    if _deactivated_by_staff_since(user=user, since=user.deleted_at):
        raise _token_error(
            "An administrator deactivated this account; contact support to restore it.",
            "account_deactivated",
        )
    return user


def _deactivated_by_staff_since(*, user: User, since: datetime) -> bool:
    return AuditEvent.objects.filter(
        target_type=AuditEvent.USER_TARGET_TYPE,
        target_id=str(user.pk),
        action__in=STAFF_DEACTIVATION_ACTIONS,
        occurred_at__gte=since,
    ).exists()


def _deletion_email(*, user: User, template_prefix: str) -> None:
    to = EmailAddress.objects.get_primary_email(user) or user.email
    if not to:
        return
    email_queue(
        template_prefix=template_prefix,
        to=to,
        context={
            "user": user,
            "undo_url": deletion_undo_url(token=deletion_undo_token_make(user=user)),
            "purge_after": deletion_purge_after(user),
        },
    )


@transaction.atomic
def user_request_deletion(*, user: User) -> DeletionRequest:
    """Deactivate the account now, revoke every session and token, and e-mail an undo link."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.purged_at is not None:
        raise ValidationError("This account is already deleted.", code="account_purged")
    was_active = user.is_active
    user.is_active = False
    user.deleted_at = timezone.now()
    user.save(update_fields=["is_active", "deleted_at", "updated_at"])
    revoked = user_revoke_everything(user=user, reason=DeviceSession.RevokeReason.DEACTIVATED)
    purge_after = user.deleted_at + deletion_grace_period()
    audit_record(
        action="accounts.user.deletion_requested",
        actor=user,
        target=user,
        changes={"is_active": [was_active, False]},
        metadata={"purge_after": purge_after.isoformat(), "revoked": revoked_for_audit(revoked)},
    )
    _deletion_email(user=user, template_prefix=DELETION_REQUESTED_TEMPLATE_PREFIX)
    return DeletionRequest(user=user, purge_after=purge_after)


@transaction.atomic
def user_cancel_deletion(*, token: str) -> User:
    """Restore the account an undo token names: active again, no deletion pending."""
    user = deletion_undo_token_user(token=token, for_update=True)
    deleted_at = user.deleted_at
    user.is_active = True
    user.deleted_at = None
    user.save(update_fields=["is_active", "deleted_at", "updated_at"])
    transaction.on_commit(lambda: user_forget(user_id=user.pk))
    audit_record(
        action="accounts.user.deletion_cancelled",
        actor=user,
        target=user,
        changes={
            "is_active": [False, True],
            "deleted_at": [deleted_at.isoformat() if deleted_at else None, None],
        },
    )
    return user


def user_deletion_remind(*, user: User) -> datetime | None:
    """E-mail a fresh undo link to an account pending deletion; returns when it will be purged.

    Called when someone signs in to it with the right password; None (and no e-mail) when the
    account is not pending deletion, its grace period is over, or staff deactivated it since.
    """
    purge_after = deletion_purge_after(user)
    if user.is_active or purge_after is None or purge_after <= timezone.now():
        return None
    if user.deleted_at is not None and _deactivated_by_staff_since(user=user, since=user.deleted_at):
        return None  # the link would not work: staff outrank it
    if _deletion_reminder_due(user=user):
        _deletion_email(user=user, template_prefix=DELETION_PENDING_TEMPLATE_PREFIX)
    return purge_after


def _deletion_reminder_due(*, user: User) -> bool:
    """At most one reminder per account per DELETION_REMINDER_INTERVAL: whoever knows the password
    must not flood the owner's mailbox by signing in again and again. Every link of the same
    deletion request works, so the last one sent still does. While the cache is down (None from
    `add`, DJANGO_REDIS_IGNORE_EXCEPTIONS) the reminder goes out: the per-IP sign-in limits still hold.
    """
    added = cache.add(
        f"{DELETION_REMINDER_CACHE_PREFIX}{user.pk}",
        1,
        timeout=int(DELETION_REMINDER_INTERVAL.total_seconds()),
    )
    return added is not False


# --- purge --------------------------------------------------------------------------------------


def users_due_for_purge(*, now: datetime | None = None) -> QuerySet[User]:
    """Accounts whose deletion is pending and whose grace period has ended."""
    cutoff = (now or timezone.now()) - deletion_grace_period()
    return User.objects.filter(is_active=False, deleted_at__lte=cutoff, purged_at__isnull=True)


def users_purge_due(*, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Purge every account due for it, `batch_size` IDs at a time, each in its own transaction.

    One account that cannot be purged (a database error, a row that fails validation) is logged
    and skipped, so it never holds back the others; the next run tries it again.
    """
    purged = 0
    skipped: set[Any] = set()
    while True:
        batch = list(
            users_due_for_purge()
            .exclude(pk__in=skipped)
            .order_by("deleted_at", "pk")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not batch:
            return purged
        for user_id in batch:
            try:
                done = user_purge(user_id=user_id)
            except (DatabaseError, ValidationError):
                logger.exception("Purge of user %s failed; retried on the next run", user_id)
                done = False
            if done:
                purged += 1
            else:
                skipped.add(user_id)  # restored, purged meanwhile, or failed


def _purged_username(user: User) -> str:
    return f"deleted_{user.pk.hex[:24]}"


def _memberships_release(*, user: User) -> int:
    """Remove the user from their organizations; an organization never ends without an owner.

    The longest-standing admin (else member) of an organization the user owned alone becomes its
    owner; an organization with no other member is deleted.
    """
    memberships = list(Membership.objects.filter(user=user).select_related("organization"))
    for membership in memberships:
        organization = membership.organization
        membership.delete()
        if membership.role != OrganizationRole.OWNER:
            continue
        others = Membership.objects.select_for_update().filter(organization=organization)
        if others.filter(role=OrganizationRole.OWNER).exists():
            continue
        successor = next(
            (
                candidate
                for role in _SUCCESSION
                for candidate in others.filter(role=role).order_by("created_at", "pk")[:1]
            ),
            None,
        )
        if successor is None:
            audit_record(
                action="accounts.organization.deleted",
                target=organization,
                metadata={"reason": "last_member_purged"},
            )
            Organization.objects.filter(pk=organization.pk).delete()
            continue
        previous_role = successor.role
        successor.role = OrganizationRole.OWNER
        successor.save(update_fields=["role"])
        audit_record(
            action="accounts.membership.owner_succeeded",
            target=organization,
            changes={"role": [previous_role, OrganizationRole.OWNER.value]},
            metadata={"user": str(successor.user_id), "reason": "owner_purged"},
        )
    return len(memberships)


def _invitations_of(*, user: User, addresses: set[str]) -> QuerySet[Invitation]:
    """Invitations sent to any of the user's addresses (in any letter case) or accepted by them."""
    to_user = Q(accepted_by=user)
    for address in addresses:
        to_user |= Q(email__iexact=address)
    return Invitation.objects.filter(to_user)


def user_files_purge(*, user: User) -> int:
    """Delete the user's stored files.

    Hook: the `files` app has no models yet. When it has, call its delete service from here; the
    export's `files` list (accounts.services.exports) reads the same app.
    """
    return 0


def _exports_delete(*, user: User) -> int:
    """Delete the user's data exports; their files go once the purge commits."""
    from accounts.services.exports import data_export_file_delete

    exports = list(DataExport.objects.filter(user=user))
    for export in exports:
        data_export_file_delete(export=export)
    DataExport.objects.filter(user=user).delete()
    return len(exports)


@transaction.atomic
def user_purge(*, user_id: Any) -> bool:
    """Anonymise one account whose grace period is over and delete its personal data.

    Idempotent: an account restored, already purged or not yet due is left alone (False).
    Records `accounts.user.purged` with counts only: no personal data.
    """
    user = users_due_for_purge().select_for_update().filter(pk=user_id).first()
    if user is None:
        return False
    addresses = {user.email, *EmailAddress.objects.filter(user=user).values_list("email", flat=True)}
    browser_sessions = 0
    for user_session in UserSession.objects.filter(user=user):
        browser_session_end(user_session=user_session)  # its Django session goes with it
        browser_sessions += 1
    # Counts of the rows named, not of cascaded ones (a social account's tokens, say); the keys
    # avoid the word "token", which the audit trail redacts.
    removed = {
        "email_addresses": delete_rows(EmailAddress.objects.filter(user=user)),
        "social_accounts": delete_rows(SocialAccount.objects.filter(user=user)),
        "mfa_authenticators": delete_rows(Authenticator.objects.filter(user=user)),
        "device_sessions": delete_rows(DeviceSession.objects.filter(user=user)),
        "browser_sessions": browser_sessions,
        "blocks": delete_rows(UserBlock.objects.filter(Q(blocker=user) | Q(blocked=user))),
        "memberships": _memberships_release(user=user),
        "invitations": delete_rows(_invitations_of(user=user, addresses=addresses)),
        "data_exports": _exports_delete(user=user),
        "oauth_access": delete_rows(get_access_token_model().objects.filter(user=user)),
        "oauth_refresh": delete_rows(get_refresh_token_model().objects.filter(user=user)),
        "oauth_id": delete_rows(get_id_token_model().objects.filter(user=user)),
        "oauth_grants": delete_rows(get_grant_model().objects.filter(user=user)),
        "oauth_device_grants": delete_rows(get_device_grant_model().objects.filter(user=user)),
        "oauth_consents": delete_rows(user.oauth_consents.all()),
        "files": user_files_purge(user=user),
    }
    AccountLockout.objects.filter(user=user).delete()
    user.groups.clear()
    user.user_permissions.clear()
    user.username = user.display_name = _purged_username(user)
    user.email = f"{user.username}@{PURGED_EMAIL_DOMAIN}"
    user.description = ""
    user.deactivation_reason = ""
    user.is_staff = user.is_superuser = False
    user.last_login = None
    user.set_unusable_password()
    user.purged_at = timezone.now()
    user.full_clean(exclude=["password"])
    user.save()
    transaction.on_commit(lambda: user_forget(user_id=user.pk))
    audit_record(action="accounts.user.purged", target=user, metadata={"removed": removed})
    return True
