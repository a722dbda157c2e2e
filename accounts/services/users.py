"""Writes on users. Every state change of a user goes through a function here."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from importlib import import_module
from typing import Any

from allauth.account.models import EmailAddress
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken
from ua_parser import parse as ua_parse

from accounts.emails import email_new_device_notice
from accounts.exceptions import DeviceNotFound, RefreshTokenRejected
from accounts.lockout import user_get_by_identifier
from accounts.models import DeviceSession, User
from accounts.selectors.mfa import amr_of, auth_time_of, authentication_records
from accounts.tokens import SESSION_CLAIM, TokenPair, device_session_mark_revoked, token_pair_issue
from audit.models import AuditEvent
from audit.services import audit_record
from config.batches import delete_in_batches

# Two requests refreshing with the same token within this window are a client race, not theft.
REFRESH_RACE_WINDOW = timedelta(seconds=10)
# The fields `user_update_profile` changes.
PROFILE_FIELDS = ("username", "display_name", "description")


def session_store(session_key: str) -> SessionBase:
    store: SessionBase = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return store


@transaction.atomic
def user_create(
    *,
    username: str,
    email: str,
    password: str | None = None,
    display_name: str = "",
    email_verified: bool | None = None,
    **fields: Any,
) -> User:
    """Create a user, enforcing every rule of the model; without a password it is external-only.

    With `email_verified` set, the primary e-mail address record is created too; allauth's sign-up
    creates that record itself, so it passes None.
    """
    user = User(username=username, email=email, display_name=display_name, **fields)
    if password is None:
        user.set_unusable_password()
        user.is_external_only = True
    else:
        validate_password(password, user=user)
        user.set_password(password)
    user.full_clean()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as error:
        # A concurrent writer won the race between full_clean() and save().
        user.validate_constraints()
        user.validate_unique()
        raise ValidationError("This user could not be saved.", code="conflict") from error
    if email_verified is not None:
        EmailAddress.objects.create(
            user=user, email=user.email.lower(), primary=True, verified=email_verified
        )
    from accounts.services.moderation import user_roles_initialise

    user_roles_initialise(user=user)
    return user


@transaction.atomic
def user_sign_up_with_taken_address(*, email: str, password: str, request: HttpRequest | None) -> None:
    """Do a new account's expensive work for a sign-up whose address already has an account.

    The caller answers it like any sign-up (enumeration prevention); one password hash with the
    configured hasher, as `user_create` computes, and one audit row keep the two answers' timings
    together. The event names the account only when it verified the address: its owner reads
    that someone tried to sign up with it.
    """
    make_password(password or None)
    audit_record(
        action="accounts.user.sign_up_with_taken_address",
        outcome=AuditEvent.Outcome.FAILURE,
        target=user_get_by_identifier(email.strip().lower()),
        request=request,
        metadata={"email": email},
    )


@transaction.atomic
def user_set_password(*, user: User, password: str) -> User:
    """Give the user a new local password, checked against the password validators."""
    validate_password(password, user=user)
    user.set_password(password)
    user.is_external_only = False
    user.save(update_fields=["password", "is_external_only", "updated_at"])
    return user


@transaction.atomic
def user_update_profile(
    *,
    user: User,
    actor: User | None = None,
    username: str | None = None,
    display_name: str | None = None,
    description: str | None = None,
) -> User:
    """Change the username and public profile; records `accounts.user.updated` with the changes.

    A new username without a display name resets the display name to it (the model's rule ties
    them); with both, they must agree.
    """
    user = User.objects.select_for_update().get(pk=user.pk)
    before = {field: getattr(user, field) for field in PROFILE_FIELDS}
    if username is not None:
        user.username = username.strip().lower()
        if display_name is None and user.username != before["username"]:
            user.display_name = user.username
    if display_name is not None:
        user.display_name = display_name
    if description is not None:
        user.description = description
    user.full_clean(exclude=["password"])
    changes = {
        field: [before[field], getattr(user, field)]
        for field in PROFILE_FIELDS
        if before[field] != getattr(user, field)
    }
    if not changes:
        return user
    try:
        with transaction.atomic():
            user.save(update_fields=[*changes, "updated_at"])
    except IntegrityError as error:
        user.validate_unique()  # a concurrent rename took the username first
        raise ValidationError("This user could not be saved.", code="conflict") from error
    audit_record(action="accounts.user.updated", actor=actor or user, target=user, changes=changes)
    return user


def device_label(user_agent: str) -> str:
    """Name a device from its user agent, e.g. "Firefox on Linux", "okhttp"."""
    parsed = ua_parse(user_agent or "")
    browser = parsed.user_agent.family if parsed.user_agent and parsed.user_agent.family != "Other" else ""
    system = parsed.os.family if parsed.os and parsed.os.family != "Other" else ""
    if browser and system:
        return f"{browser} on {system}"[:128]
    return (browser or system or "Unknown device")[:128]


@transaction.atomic
def device_session_start(
    *,
    user: User,
    user_agent: str,
    ip_address: str | None,
    session_key: str = "",
    authentication: list[dict[str, Any]] | None = None,
) -> tuple[DeviceSession, TokenPair]:
    """Open a device session for a fully signed-in API client and issue its first token pair.

    `authentication` is allauth's record of the sign-in's steps; its tokens carry when and how
    (`auth_time`, `amr`).

    One sign-in session opens one device session: asked again for the same `session_key` (allauth
    builds a response, and so a token pair, both in `post_login` and once more when a sign-in
    completes a stage such as the second factor), it issues a new pair for the device session
    already open, whose earlier refresh token then stops working.
    """
    now = timezone.now()
    records = authentication or []
    if session_key:
        existing = (
            DeviceSession.objects.select_for_update()
            .filter(user=user, session_key=session_key, revoked_at__isnull=True, expires_at__gt=now)
            .first()
        )
        if existing is not None:
            existing.refresh_jti = uuid.uuid4().hex
            existing.last_used_at = now
            existing.save(update_fields=["refresh_jti", "last_used_at"])
            return existing, token_pair_issue(session=existing)
    session = DeviceSession(
        user=user,
        label=device_label(user_agent),
        user_agent=user_agent[:512],
        ip_address=ip_address or None,
        session_key=session_key,
        refresh_jti=uuid.uuid4().hex,
        last_used_at=now,
        expires_at=now + jwt_settings.REFRESH_TOKEN_LIFETIME,
        auth_time=auth_time_of(records) or now,
        amr=amr_of(records),
    )
    session.full_clean()
    session.save()
    return session, token_pair_issue(session=session)


def device_session_refresh(*, refresh_token: str) -> TokenPair:
    """Rotate a refresh token: the presented one stops working and a new pair is issued.

    Presenting a refresh token that was already rotated away is reuse: the whole device session is
    revoked (RFC 9700 §4.14.2), unless it is the token rotated in the last few seconds, which is a
    client refreshing twice concurrently: that request is refused and the session kept.
    """
    try:
        token = RefreshToken(refresh_token)  # type: ignore[arg-type]
    except TokenError as error:
        raise RefreshTokenRejected("The refresh token is invalid or expired.") from error
    session_id = token.get(SESSION_CLAIM)
    jti = token.get(jwt_settings.JTI_CLAIM)
    now = timezone.now()
    with transaction.atomic():
        session = (
            DeviceSession.objects.select_for_update()
            .select_related("user")
            .filter(pk=session_id, user_id=token.get(jwt_settings.USER_ID_CLAIM))
            .first()
        )
        if (
            session is None
            or not session.is_active
            or session.expires_at <= now
            or not session.user.is_active
        ):
            raise RefreshTokenRejected("The refresh token has been revoked.", code="token_revoked")
        if jti == session.refresh_jti:
            session.previous_refresh_jti, session.refresh_jti = jti, uuid.uuid4().hex
            session.rotated_at = session.last_used_at = now
            _device_session_follow_reauthentication(session)
            session.save(
                update_fields=[
                    "previous_refresh_jti",
                    "refresh_jti",
                    "rotated_at",
                    "last_used_at",
                    "auth_time",
                    "amr",
                ]
            )
            return token_pair_issue(session=session)
        raced = (
            jti == session.previous_refresh_jti
            and session.rotated_at is not None
            and now - session.rotated_at < REFRESH_RACE_WINDOW
        )
        if not raced:
            audit_record(
                action="accounts.token.refresh_reused",
                outcome=AuditEvent.Outcome.FAILURE,
                actor=session.user,
                target=session,
                metadata={"device": session.label},
            )
            device_session_revoke(session=session, reason=DeviceSession.RevokeReason.REFRESH_REUSED)
    if raced:
        raise RefreshTokenRejected(
            "This refresh token was just used by another request.", code="token_refresh_raced"
        )
    raise RefreshTokenRejected(
        "This refresh token was already used; the session is revoked.", code="token_reused"
    )


def _device_session_follow_reauthentication(session: DeviceSession) -> None:
    """A re-authentication on the device's sign-in session shows in its next tokens' auth_time/amr."""
    if not session.session_key:
        return
    records = authentication_records(session_store(session.session_key), user_id=session.user_id)
    auth_time = auth_time_of(records)
    if auth_time is not None and (session.auth_time is None or auth_time > session.auth_time):
        session.auth_time = auth_time
        session.amr = sorted(set(session.amr or []) | set(amr_of(records)))


@transaction.atomic
def device_session_revoke(*, session: DeviceSession, reason: str) -> DeviceSession:
    """End a device session now: its tokens fail on their next use, and its sign-in session ends."""
    if session.revoked_at is None:
        session.revoked_at = timezone.now()
        session.revoke_reason = reason
        session.save(update_fields=["revoked_at", "revoke_reason"])
        if session.session_key:
            session_store(session.session_key).delete()
        audit_record(
            action="accounts.device_session.revoked",
            target=session,
            metadata={"reason": reason, "user_id": str(session.user_id), "device": session.label},
        )
    transaction.on_commit(lambda: device_session_mark_revoked(session_id=session.id))
    return session


@transaction.atomic
def device_sessions_revoke(*, user: User, reason: str, keep: DeviceSession | None = None) -> int:
    """End every live device session of `user`, except `keep`; return how many ended."""
    sessions = DeviceSession.objects.select_for_update().filter(user=user).active()
    if keep is not None:
        sessions = sessions.exclude(pk=keep.pk)
    revoked = 0
    for session in sessions:
        device_session_revoke(session=session, reason=reason)
        revoked += 1
    return revoked


DEVICE_SESSIONS_PRUNE_BATCH = 1000


def device_sessions_prune(
    *, now: datetime | None = None, batch_size: int = DEVICE_SESSIONS_PRUNE_BATCH
) -> int:
    """Delete device sessions revoked, or expired, more than ACCOUNTS_DEVICE_SESSION_RETENTION_DAYS
    ago, in short batches (daily beat job); returns how many went.

    Nothing they held works any more (a JWT or refresh token of a missing session is refused
    like a revoked one); the audit trail keeps their sign-ins and revocations. Without this every
    app sign-in would add a row for ever.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.ACCOUNTS_DEVICE_SESSION_RETENTION_DAYS)
    ended_long_ago = Q(revoked_at__lte=cutoff) | Q(revoked_at__isnull=True, expires_at__lte=cutoff)
    return delete_in_batches(DeviceSession, ended_long_ago, batch_size=batch_size)


@transaction.atomic
def browser_session_end(*, user_session: UserSession) -> None:
    """Sign a browser out: its Django session is deleted, so its cookie stops working at once."""
    user_session.end()


@transaction.atomic
def signed_in_device_revoke(*, user: User, device_id: uuid.UUID) -> None:
    """Sign the user out on one device (an app's device session or a browser session)."""
    from accounts.selectors.sessions import browser_session_get

    session = DeviceSession.objects.filter(user=user, pk=device_id).active().first()
    if session is not None:
        device_session_revoke(session=session, reason=DeviceSession.RevokeReason.REVOKED)
        return
    user_session = browser_session_get(user=user, public_id=device_id)
    if user_session is None:
        raise DeviceNotFound("No such signed-in device.")
    browser_session_end(user_session=user_session)


@transaction.atomic
def signed_in_devices_revoke_others(
    *, user: User, current_device_session_id: str | None, current_session_key: str | None
) -> int:
    """Sign the user out everywhere but on the calling device; return how many devices ended."""
    keep = (
        DeviceSession.objects.filter(user=user, pk=current_device_session_id).first()
        if current_device_session_id
        else None
    )
    keep_key = keep.session_key if keep is not None else current_session_key
    # Sign-in sessions behind apps' device sessions end with those, not as browsers.
    app_session_keys = set(
        DeviceSession.objects.filter(user=user).exclude(session_key="").values_list("session_key", flat=True)
    )
    revoked = device_sessions_revoke(user=user, reason=DeviceSession.RevokeReason.REVOKED, keep=keep)
    browser_sessions = UserSession.objects.filter(user=user).exclude(session_key__in=app_session_keys)
    for user_session in browser_sessions.exclude(session_key=keep_key or ""):
        browser_session_end(user_session=user_session)
        revoked += 1
    return revoked


@transaction.atomic
def device_sessions_sign_out(*, session_key: str | None, device_session_id: str | None) -> int:
    """End the device sessions opened by a sign-in session that just signed out."""
    if not session_key and not device_session_id:
        return 0
    matches = Q(session_key=session_key) if session_key else Q()
    if device_session_id:
        matches |= Q(pk=device_session_id)
    sessions = list(DeviceSession.objects.select_for_update().filter(matches).active())
    for session in sessions:
        device_session_revoke(session=session, reason=DeviceSession.RevokeReason.SIGNED_OUT)
    return len(sessions)


@transaction.atomic
def device_sessions_revoke_after_password_change(
    *, user: User, keep_device_session_id: str | None, current_session_key: str | None
) -> int:
    """A new password ends every device session but the one it was changed from.

    Django gives the sign-in session a new key on a password change; the kept device session
    follows it, so revoking that device later still ends its sign-in session.
    """
    keep = (
        DeviceSession.objects.filter(user=user, pk=keep_device_session_id).active().first()
        if keep_device_session_id
        else None
    )
    if keep is not None and current_session_key and keep.session_key != current_session_key:
        keep.session_key = current_session_key
        keep.save(update_fields=["session_key"])
    return device_sessions_revoke(user=user, reason=DeviceSession.RevokeReason.PASSWORD_CHANGED, keep=keep)


def sign_in_notify_if_new_device(
    *, user: User, user_agent: str, ip_address: str | None, current_session_key: str | None
) -> bool:
    """E-mail the user when they sign in on a kind of device they have not used before.

    A device is known by its label ("Firefox on Linux") among the user's app device sessions and
    other browser sessions; the first sign-in of an account has nothing to compare with and sends
    nothing. Returns whether a notice was queued.
    """
    label = device_label(user_agent)
    known = set(DeviceSession.objects.filter(user=user).values_list("label", flat=True))
    other_browsers = UserSession.objects.filter(user=user).exclude(session_key=current_session_key or "")
    known |= {device_label(user_session.user_agent) for user_session in other_browsers}
    if not known or label in known:
        return False
    email_new_device_notice(user=user, device_label=label, ip_address=ip_address, signed_in_at=timezone.now())
    return True
