"""Signal receivers of the accounts app: they only delegate."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from allauth.account.models import EmailAddress
from allauth.account.signals import (
    email_added,
    email_changed,
    email_confirmed,
    email_removed,
    password_changed,
    password_reset,
    password_set,
    user_signed_up,
)
from allauth.mfa import signals as mfa_signals
from allauth.mfa.models import Authenticator
from django.apps import AppConfig
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.db.models.signals import post_delete, post_migrate, post_save, pre_delete
from django.dispatch import receiver
from django.http import HttpRequest

from audit.models import AuditEvent
from audit.services import audit_record


@receiver(post_migrate)
def sync_site_with_site_url(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """Keep django.contrib.sites (used by allauth e-mails) in line with SITE_URL."""
    if sender.name != "accounts":
        return
    from django.contrib.sites.models import Site

    domain = urlparse(settings.SITE_URL).netloc or "localhost"
    Site.objects.using(using).update_or_create(
        id=settings.SITE_ID, defaults={"domain": domain, "name": "Identity"}
    )


# --- revocation: sign-out, password changes and user changes end tokens at once ---------------


def sign_in_session(request: HttpRequest | None) -> tuple[str | None, str | None]:
    """The session key of a request and the device session ID its sign-in session recorded."""
    session = getattr(request, "session", None)
    if session is None:
        return None, None
    from accounts.tokens import DEVICE_SESSION_ID_KEY

    return session.session_key, session.get(DEVICE_SESSION_ID_KEY)


@receiver(user_logged_out, dispatch_uid="accounts.revoke_signed_out_device")
def revoke_signed_out_device(sender: object, request: HttpRequest | None = None, **kwargs: Any) -> None:
    from accounts.services import device_sessions_sign_out

    session_key, device_session_id = sign_in_session(request)
    device_sessions_sign_out(session_key=session_key, device_session_id=device_session_id)


@receiver(password_changed, dispatch_uid="accounts.revoke_on_password_changed")
@receiver(password_set, dispatch_uid="accounts.revoke_on_password_set")
def revoke_other_devices_on_password_change(
    sender: object, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any
) -> None:
    from accounts.services import device_sessions_revoke_after_password_change

    session_key, device_session_id = sign_in_session(request)
    device_sessions_revoke_after_password_change(
        user=user,  # type: ignore[arg-type]
        keep_device_session_id=device_session_id,
        current_session_key=session_key,
    )


@receiver(password_reset, dispatch_uid="accounts.revoke_on_password_reset")
def revoke_all_devices_on_password_reset(sender: object, user: AbstractBaseUser, **kwargs: Any) -> None:
    from accounts.services import device_sessions_revoke_after_password_change

    device_sessions_revoke_after_password_change(
        user=user,  # type: ignore[arg-type]
        keep_device_session_id=None,
        current_session_key=None,
    )


@receiver(user_logged_in, dispatch_uid="accounts.notify_new_device")
def notify_new_device(
    sender: object, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: Any
) -> None:
    from accounts.models import User
    from accounts.services import sign_in_notify_if_new_device

    if request is None or not isinstance(user, User):
        return
    session_key, _ = sign_in_session(request)
    sign_in_notify_if_new_device(
        user=user,
        user_agent=request.headers.get("User-Agent", ""),
        ip_address=request.META.get("REMOTE_ADDR"),
        current_session_key=session_key,
    )


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.forget_cached_user")
def forget_cached_user(sender: object, instance: AbstractBaseUser, **kwargs: Any) -> None:
    """A changed user (deactivated, made staff, renamed) is read afresh on its next request."""
    from accounts.tokens import user_forget

    transaction.on_commit(lambda: user_forget(user_id=instance.pk))


# --- sign-in failures and successes feed the account lockout (accounts.lockout) ---------------


@receiver(user_login_failed, dispatch_uid="accounts.lockout_record_failed_sign_in")
def record_failed_sign_in(
    sender: object, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    from accounts.lockout import lockout_record_failed_sign_in

    lockout_record_failed_sign_in(credentials=credentials, request=request)


@receiver(user_logged_in, dispatch_uid="accounts.lockout_record_success")
def record_successful_sign_in(sender: object, user: AbstractBaseUser, **kwargs: Any) -> None:
    from accounts.lockout import lockout_record_success
    from accounts.models import User

    if isinstance(user, User):
        lockout_record_success(user=user)


# --- audit trail: account events (one line each; the service takes IP, agent and request ID) -----


@receiver(user_signed_up, dispatch_uid="accounts.audit_signed_up")
def audit_signed_up(sender: object, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> None:
    audit_record(action="accounts.user.signed_up", actor=user, target=user, request=request)


@receiver(user_logged_in, dispatch_uid="accounts.audit_signed_in")
def audit_signed_in(
    sender: object, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: Any
) -> None:
    path = getattr(request, "path", "")
    audit_record(
        action="accounts.user.signed_in", actor=user, target=user, request=request, metadata={"via": path}
    )


@receiver(user_logged_out, dispatch_uid="accounts.audit_signed_out")
def audit_signed_out(
    sender: object, request: HttpRequest | None, user: AbstractBaseUser | None, **kwargs: Any
) -> None:
    if user is not None:
        audit_record(action="accounts.user.signed_out", actor=user, target=user, request=request)


@receiver(password_changed, dispatch_uid="accounts.audit_password_changed")
@receiver(password_set, dispatch_uid="accounts.audit_password_set")
def audit_password_changed(
    sender: object, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any
) -> None:
    audit_record(action="accounts.user.password_changed", actor=user, target=user, request=request)


@receiver(password_reset, dispatch_uid="accounts.audit_password_reset")
def audit_password_reset(sender: object, request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> None:
    audit_record(action="accounts.user.password_reset", actor=user, target=user, request=request)


@receiver(email_changed, dispatch_uid="accounts.audit_email_changed")
def audit_email_changed(
    sender: object,
    request: HttpRequest,
    user: AbstractBaseUser,
    from_email_address: EmailAddress | None,
    to_email_address: EmailAddress,
    **kwargs: Any,
) -> None:
    if from_email_address is None:
        # allauth (ACCOUNT_CHANGE_EMAIL) sends this after every verification, a sign-up's first
        # included: with no address before, nothing changed (`email_verified` records the address).
        return
    audit_record(
        action="accounts.user.email_changed",
        actor=user,
        target=user,
        request=request,
        changes={"email": [from_email_address.email, to_email_address.email]},
    )


# The audit action of each change to a user's set of addresses (a new primary is `email_changed`).
ADDRESS_CHANGE_ACTIONS = {
    email_added: "accounts.user.email_added",
    email_removed: "accounts.user.email_removed",
}


@receiver(list(ADDRESS_CHANGE_ACTIONS), dispatch_uid="accounts.audit_email_address_changed")
def audit_email_address_changed(
    sender: object,
    signal: Any,
    request: HttpRequest,
    user: AbstractBaseUser,
    email_address: EmailAddress,
    **kwargs: Any,
) -> None:
    audit_record(
        action=ADDRESS_CHANGE_ACTIONS[signal],
        actor=user,
        target=user,
        request=request,
        metadata={"email": email_address.email, "verified": email_address.verified},
    )


@receiver(email_confirmed, dispatch_uid="accounts.audit_email_verified")
def audit_email_verified(
    sender: object, request: HttpRequest, email_address: EmailAddress, **kwargs: Any
) -> None:
    audit_record(
        action="accounts.user.email_verified",
        target=email_address.user,
        request=request,
        metadata={"email": email_address.email},
    )


# --- second factors (allauth.mfa): audit trail, account lockout, cached user ---------------------


# Where an authenticator being deleted keeps its primary key: Django clears `pk` on delete, and
# allauth sends `authenticator_removed` with the deleted instance.
DELETED_PK_ATTRIBUTE = "_accounts_deleted_pk"


def _factor(authenticator: Any) -> dict[str, Any]:
    pk = getattr(authenticator, "pk", None)
    return {
        "type": getattr(authenticator, "type", None),
        "authenticator_id": pk if pk is not None else getattr(authenticator, DELETED_PK_ATTRIBUTE, None),
    }


@receiver(pre_delete, sender=Authenticator, dispatch_uid="accounts.remember_deleted_authenticator_pk")
def remember_deleted_authenticator_pk(sender: object, instance: Authenticator, **kwargs: Any) -> None:
    setattr(instance, DELETED_PK_ATTRIBUTE, instance.pk)


# The audit action of each change to a user's second factors.
FACTOR_CHANGE_ACTIONS = {
    mfa_signals.authenticator_added: "accounts.mfa.enrolled",
    mfa_signals.authenticator_removed: "accounts.mfa.removed",
    mfa_signals.authenticator_reset: "accounts.mfa.recovery_codes_regenerated",
}


@receiver(list(FACTOR_CHANGE_ACTIONS), dispatch_uid="accounts.audit_mfa_factor_changed")
def audit_mfa_factor_changed(
    sender: object,
    signal: Any,
    request: HttpRequest,
    user: AbstractBaseUser,
    authenticator: Any,
    **kwargs: Any,
) -> None:
    audit_record(
        action=FACTOR_CHANGE_ACTIONS[signal],
        actor=user,
        target=user,
        request=request,
        metadata=_factor(authenticator),
    )


@receiver(mfa_signals.authenticator_added, dispatch_uid="accounts.totp_activation_step_spent")
def totp_activation_step_spent(
    sender: object, request: HttpRequest, authenticator: Any, **kwargs: Any
) -> None:
    """The code that confirmed a TOTP enrolment may not complete a sign-in as well."""
    from accounts.services.mfa import TOTP_ACTIVATION_STEP_ATTRIBUTE, totp_activation_record

    step = getattr(request, TOTP_ACTIVATION_STEP_ATTRIBUTE, None)
    if step is not None and getattr(authenticator, "type", None) == Authenticator.Type.TOTP:
        totp_activation_record(authenticator=authenticator, step=step)


@receiver(mfa_signals.authenticator_used, dispatch_uid="accounts.audit_mfa_authenticated")
def audit_mfa_authenticated(
    sender: object,
    request: HttpRequest,
    user: AbstractBaseUser,
    authenticator: Any,
    reauthenticated: bool = False,
    passwordless: bool = False,
    **kwargs: Any,
) -> None:
    audit_record(
        action="accounts.mfa.authenticated",
        actor=user,
        target=user,
        request=request,
        metadata={
            **_factor(authenticator),
            "reauthentication": reauthenticated,
            "passwordless": passwordless,
        },
    )


@receiver(mfa_signals.authentication_failed, dispatch_uid="accounts.mfa_authentication_failed")
def mfa_authentication_failed(
    sender: object,
    request: HttpRequest,
    user: AbstractBaseUser,
    authenticator: Any = None,
    reauthentication: bool = False,
    **kwargs: Any,
) -> None:
    """A wrong, expired, replayed or malformed code: recorded, and counted toward the lockout."""
    from accounts.lockout import lockout_record_failure
    from accounts.models import User

    audit_record(
        action="accounts.mfa.authentication_failed",
        outcome=AuditEvent.Outcome.FAILURE,
        actor=user,
        target=user,
        request=request,
        metadata={**_factor(authenticator), "reauthentication": reauthentication},
    )
    if isinstance(user, User):
        lockout_record_failure(user=user)


@receiver(post_save, sender=Authenticator, dispatch_uid="accounts.forget_user_on_authenticator_saved")
@receiver(post_delete, sender=Authenticator, dispatch_uid="accounts.forget_user_on_authenticator_deleted")
def forget_user_on_authenticator_change(sender: object, instance: Authenticator, **kwargs: Any) -> None:
    """The cached copy of a user knows their second factors (the MFA requirement reads them)."""
    from accounts.tokens import user_forget

    transaction.on_commit(lambda: user_forget(user_id=instance.user_id))
