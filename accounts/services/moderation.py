"""Staff actions on users: roles, deactivation, reactivation, lock-down, sign-out everywhere,
password reset, e-mail verification and e-mail change; and users blocking users.

Each function changes the user, revokes what must be revoked and records the audit event in one
transaction. Callers check the policy first (`accounts.policies`); these functions enforce only
the invariants that hold whoever calls them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from allauth.account.adapter import get_adapter
from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress
from allauth.account.utils import user_pk_to_url_str
from allauth.usersessions.models import UserSession
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from accounts.emails import email_queue
from accounts.models import STAFF_ROLES, DeviceSession, Role, User, UserBlock
from accounts.models.users import EMAIL_TAKEN_MESSAGE
from accounts.services.users import browser_session_end, device_sessions_revoke
from accounts.tokens import user_forget
from audit.services import audit_record


def _role_groups(names: Iterable[str]) -> list[Group]:
    names = set(names)
    groups = list(Group.objects.filter(name__in=names))
    missing = names - {group.name for group in groups}
    groups += [
        Group.objects.create(name=name) for name in sorted(missing)
    ]  # a database without the data migration
    return groups


def _refuse_self(*, user: User, actor: User | None, what: str) -> None:
    if actor is not None and actor.pk == user.pk:
        raise ValidationError(f"You cannot {what} your own account.", code="cannot_target_self")


def _apply_role_flags(user: User, roles: set[str]) -> list[str]:
    """Staff and superuser flags follow the roles: admins are superusers, moderators are staff."""
    user.is_staff = bool(roles & STAFF_ROLES)
    user.is_superuser = Role.ADMIN in roles
    user._roles = sorted(roles)
    return ["is_staff", "is_superuser"]


@transaction.atomic
def user_roles_initialise(*, user: User) -> None:
    """Give a new user the `user` role (and `admin` to a superuser created from the command line)."""
    roles = {Role.USER.value}
    if user.is_superuser:
        roles.add(Role.ADMIN.value)
    elif user.is_staff:
        roles.add(Role.MODERATOR.value)
    user.groups.add(*_role_groups(roles))
    user._roles = sorted(roles)


@transaction.atomic
def user_set_roles(*, user: User, roles: Iterable[str], actor: User | None = None) -> User:
    """Replace the user's roles; `user` is always kept. Records `accounts.user.roles_changed`."""
    wanted = set(roles) | {Role.USER.value}
    unknown = wanted - set(Role.values)
    if unknown:
        raise ValidationError(
            {"roles": ValidationError(f"Unknown role: {', '.join(sorted(unknown))}.", code="invalid_choice")}
        )
    if actor is not None and actor.pk == user.pk and Role.ADMIN in user.roles and Role.ADMIN not in wanted:
        raise ValidationError(
            {"roles": ValidationError("You cannot remove your own admin role.", code="cannot_demote_self")}
        )
    before = set(user.roles)
    kept = [group for group in user.groups.all() if group.name not in Role.values]
    user.groups.set([*kept, *_role_groups(wanted)])
    fields = _apply_role_flags(user, wanted)
    user.save(update_fields=[*fields, "updated_at"])
    if before != wanted:
        audit_record(
            action="accounts.user.roles_changed",
            actor=actor,
            target=user,
            changes={"roles": [sorted(before), sorted(wanted)]},
        )
    return user


@transaction.atomic
def user_revoke_everything(*, user: User, reason: str) -> dict[str, int]:
    """End every device session, browser session and OAuth token and authorization code of the user.

    Unused authorization codes go too: the toolkit checks neither a code's nor a token's user for
    `is_active`, so a code issued moments ago would still buy a client a fresh access token.
    """
    devices = device_sessions_revoke(user=user, reason=reason)
    browsers = 0
    for user_session in UserSession.objects.filter(user=user):
        browser_session_end(user_session=user_session)
        browsers += 1
    now = timezone.now()
    refresh_tokens = (
        get_refresh_token_model().objects.filter(user=user, revoked__isnull=True).update(revoked=now)
    )
    access_tokens = delete_rows(get_access_token_model().objects.filter(user=user))
    codes = delete_rows(get_grant_model().objects.filter(user=user))
    transaction.on_commit(lambda: user_forget(user_id=user.pk))
    return {
        "device_sessions": devices,
        "browser_sessions": browsers,
        "oauth_access_tokens": access_tokens,
        "oauth_refresh_tokens": refresh_tokens,
        "oauth_authorization_codes": codes,
    }


def delete_rows(queryset: QuerySet[Any]) -> int:
    """Delete the rows of `queryset`; how many of its own model went (cascades not counted)."""
    _, by_model = queryset.delete()
    return by_model.get(queryset.model._meta.label, 0)


def revoked_for_audit(revoked: dict[str, int]) -> dict[str, int]:
    """Revocation counts under names the audit trail keeps: it redacts any key naming a token."""
    return {key.removesuffix("_tokens"): count for key, count in revoked.items()}


@transaction.atomic
def user_sign_out_everywhere(*, user: User, actor: User | None = None) -> dict[str, int]:
    """Revoke every session and token of the user, who stays active.

    Records `accounts.user.signed_out_everywhere`.
    """
    revoked = user_revoke_everything(user=user, reason=DeviceSession.RevokeReason.STAFF)
    audit_record(
        action="accounts.user.signed_out_everywhere",
        actor=actor,
        target=user,
        metadata={"revoked": revoked_for_audit(revoked)},
    )
    return revoked


@transaction.atomic
def user_deactivate(*, user: User, reason: str = "", actor: User | None = None) -> User:
    """Deactivate the user: they can't sign in, and every session and token of theirs ends now.

    An account already inactive is left alone, unless its owner asked for deletion: then staff
    deactivating it is recorded, and the owner's undo link stops working
    (docs/decisions/0009-account-deletion-and-export.md).
    """
    _refuse_self(user=user, actor=actor, what="deactivate")
    user = User.objects.select_for_update().get(pk=user.pk)
    if not user.is_active and user.deleted_at is None:
        return user
    was_active = user.is_active
    user.is_active = False
    user.deactivation_reason = reason
    user.save(update_fields=["is_active", "deactivation_reason", "updated_at"])
    revoked = user_revoke_everything(user=user, reason=DeviceSession.RevokeReason.DEACTIVATED)
    audit_record(
        action="accounts.user.deactivated",
        actor=actor,
        target=user,
        changes={"is_active": [was_active, False]} if was_active else {},
        metadata={"reason": reason, "revoked": revoked_for_audit(revoked)},
    )
    return user


@transaction.atomic
def user_reactivate(*, user: User, actor: User | None = None) -> User:
    """Let the user sign in again; a deletion the owner asked for is cancelled with it."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_active:
        return user
    if user.purged_at is not None:
        raise ValidationError("A purged account cannot be reactivated.", code="account_purged")
    changes: dict[str, Any] = {"is_active": [False, True]}
    if user.deleted_at is not None:
        changes["deleted_at"] = [user.deleted_at.isoformat(), None]
    user.is_active = True
    user.deactivation_reason = ""
    user.deleted_at = None
    user.save(update_fields=["is_active", "deactivation_reason", "deleted_at", "updated_at"])
    audit_record(action="accounts.user.reactivated", actor=actor, target=user, changes=changes)
    return user


@transaction.atomic
def user_lock_down(*, user: User, reason: str = "", actor: User | None = None) -> dict[str, Any]:
    """Deactivate and revoke every session, JWT and OAuth token, with one audit event, all or nothing."""
    _refuse_self(user=user, actor=actor, what="lock down")
    locked = User.objects.select_for_update().get(pk=user.pk)
    was_active = locked.is_active
    locked.is_active = False
    locked.deactivation_reason = reason
    locked.save(update_fields=["is_active", "deactivation_reason", "updated_at"])
    revoked = user_revoke_everything(user=locked, reason=DeviceSession.RevokeReason.STAFF)
    audit_record(
        action="accounts.user.locked_down",
        actor=actor,
        target=locked,
        changes={"is_active": [was_active, False]},
        metadata={"reason": reason, "revoked": revoked_for_audit(revoked)},
    )
    return {"user": locked, "revoked": revoked}


@transaction.atomic
def user_block(*, blocker: User, blocked: User) -> UserBlock:
    """`blocker` blocks `blocked` (idempotent)."""
    if blocker.pk == blocked.pk:
        raise ValidationError("You cannot block yourself.", code="block_self")
    try:
        # A savepoint inside this function's transaction, not a commit: a concurrent identical
        # block that wins the race undoes only this insert.
        with transaction.atomic():
            block, created = UserBlock.objects.get_or_create(blocker=blocker, blocked=blocked)
    except IntegrityError:  # a concurrent identical block won the race
        return UserBlock.objects.get(blocker=blocker, blocked=blocked)
    if created:
        # In the same transaction as the insert: the block and its event commit, or not, together.
        audit_record(action="accounts.user.blocked", actor=blocker, target=blocked)
    return block


@transaction.atomic
def user_unblock(*, blocker: User, blocked: User) -> None:
    deleted, _ = UserBlock.objects.filter(blocker=blocker, blocked=blocked).delete()
    if deleted:
        audit_record(action="accounts.user.unblocked", actor=blocker, target=blocked)


def _primary_address(user: User) -> EmailAddress:
    address = EmailAddress.objects.get_primary(user) or EmailAddress.objects.filter(user=user).first()
    if address is None:
        raise ValidationError("This user has no e-mail address.", code="no_email_address")
    return address


@transaction.atomic
def user_send_password_reset(*, user: User, actor: User | None = None) -> None:
    """E-mail the user a password reset link (always a link: a code would live in the staff session).

    Records `accounts.user.password_reset_sent`; the link works until the password changes or
    PASSWORD_RESET_TIMEOUT passes, like one the user asked for.
    """
    if not user.is_active:
        raise ValidationError("This account is deactivated.", code="user_inactive")
    address = _primary_address(user)
    key = f"{user_pk_to_url_str(user)}-{default_token_generator.make_token(user)}"
    adapter = get_adapter()
    context = {
        "user": user,
        "password_reset_url": adapter.get_reset_password_from_key_url(key),
        "username": user.username,
    }
    adapter.send_password_reset_mail(user, address.email, context)
    audit_record(
        action="accounts.user.password_reset_sent",
        actor=actor,
        target=user,
        metadata={"email": address.email},
    )


@transaction.atomic
def user_resend_verification(*, user: User, actor: User | None = None) -> EmailAddress:
    """Send a new verification e-mail to the user's unverified primary address."""
    address = _primary_address(user)
    if address.verified:
        raise ValidationError("This e-mail address is already verified.", code="email_already_verified")
    address.send_confirmation(get_adapter().request)
    audit_record(
        action="accounts.user.verification_resent",
        actor=actor,
        target=user,
        metadata={"email": address.email},
    )
    return address


@transaction.atomic
def user_mark_email_verified(*, user: User, actor: User | None = None) -> EmailAddress:
    """Mark the user's primary address verified, as if they had followed the link."""
    address = _primary_address(user)
    if address.verified:
        return address
    if not address.set_verified():
        raise ValidationError(
            "Another account has verified this e-mail address.", code="email_verified_elsewhere"
        )
    audit_record(
        action="accounts.user.email_marked_verified",
        actor=actor,
        target=user,
        changes={"email_verified": [False, True]},
        metadata={"email": address.email},
    )
    return address


EMAIL_CHANGED_BY_STAFF_TEMPLATE_PREFIX = "account/email/email_changed_by_staff"


def _email_taken() -> ValidationError:
    """The refusal of the model's unique e-mail constraint, on the `email` field."""
    return ValidationError({"email": ValidationError(EMAIL_TAKEN_MESSAGE, code="email_taken")})


@transaction.atomic
def user_change_email(
    *, user: User, email: str, verified: bool = False, reason: str = "", actor: User | None = None
) -> User:
    """Give the user a new e-mail address in place of every address they had (support's tool for
    a user who lost their mailbox; docs/decisions/0017-staff-email-change.md).

    The new address becomes the only one, primary, and verified only when `verified` (staff
    checked the user owns it); otherwise it is sent a verification link. The old address is told
    of the change. Password reset and verification links sent before stop working. Records
    `accounts.user.email_changed`. Staff cannot change their own address this way
    (`cannot_target_self`): they use the account pages, which confirm the new address.
    """
    _refuse_self(user=user, actor=actor, what="change the e-mail address of")
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.purged_at is not None:
        raise ValidationError("A purged account has no e-mail address to change.", code="account_purged")
    before = user.email
    user.email = email.strip()
    user.full_clean(exclude=["password"])  # the address's format, and no other user has it
    if user.email.lower() == before.lower():
        raise ValidationError(
            {"email": ValidationError("This is already the user's e-mail address.", code="email_unchanged")}
        )
    if EmailAddress.objects.filter(email__iexact=user.email).exclude(user=user).exists():
        # Another account's second address, or the one it is changing to: allauth's ACCOUNT_UNIQUE_EMAIL.
        raise _email_taken()
    EmailAddress.objects.filter(user=user).delete()  # a pending change's link stops working with it
    try:
        with transaction.atomic():
            user.save(update_fields=["email", "updated_at"])
            address = EmailAddress.objects.create(
                user=user, email=user.email.lower(), primary=True, verified=verified
            )
    except IntegrityError as error:  # a concurrent sign-up or change took the address first
        raise _email_taken() from error
    if not verified:
        address.send_confirmation(get_adapter().request)
    email_queue(
        template_prefix=EMAIL_CHANGED_BY_STAFF_TEMPLATE_PREFIX,
        to=before,
        context={"user": user, "from_email": before, "to_email": user.email},
    )
    audit_record(
        action="accounts.user.email_changed",
        actor=actor,
        target=user,
        changes={"email": [before, user.email]},
        metadata={"verified": verified, **({"reason": reason} if reason else {})},
    )
    return user
