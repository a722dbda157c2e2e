"""Second factors: strict code checks, codes e-mailed as a fallback, and staff resets.

allauth.mfa owns enrolment (TOTP, recovery codes, WebAuthn) and the sign-in stage; the forms that
check a typed code are ours (accounts.forms, accounts.headless) and call `mfa_code_accept`, which:

- accepts a TOTP code at most once, ever: the authenticator remembers the last time step it
  accepted and refuses that step and older ones (RFC 6238 §5.2), under a row lock, in the
  database — allauth alone remembers used codes in the cache for one 30-second period while a
  code stays valid for three (tolerance ±1), and forgets them when the cache does;
- uses each recovery code once, under the same row lock (two concurrent uses: one wins);
- accepts a code e-mailed to the user's verified address, for users allowed to use them.

Decisions: docs/decisions/0012-mfa-and-step-up.md.
"""

from __future__ import annotations

import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import timedelta

from allauth.account.models import EmailAddress
from allauth.core.internal.cryptokit import compare_user_code
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value, yield_hotp_counters_from_time
from allauth.mfa.utils import decrypt
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts import app_settings
from accounts.emails import email_queue
from accounts.exceptions import RateLimited
from accounts.models import DeviceSession, EmailCode, User
from accounts.selectors.mfa import user_may_use_email_codes
from accounts.services.moderation import revoked_for_audit, user_revoke_everything
from accounts.tokens import user_forget
from audit.services import audit_record

# Authenticator.data key of the last TOTP time step accepted.
TOTP_LAST_COUNTER = "last_accepted_counter"
# Where the enrolment form leaves, on the request, the step of the code that confirmed it.
TOTP_ACTIVATION_STEP_ATTRIBUTE = "_accounts_totp_activation_step"
EMAIL_CODE_DIGITS = 6
EMAIL_CODE_MAX_FAILURES = 5
EMAIL_CODE_TEMPLATE_PREFIX = "account/email/mfa_email_code"
EMAIL_CODE = "email_code"


@dataclass(frozen=True)
class AcceptedFactor:
    """What a code proved: an allauth authenticator, or an e-mailed code (`authenticator` None)."""

    type: str
    authenticator: Authenticator | None = None


def _digits(code: str) -> str:
    return "".join(code.split())


@transaction.atomic
def totp_code_accept(*, authenticator: Authenticator, code: str) -> bool:
    """Accept a TOTP code of a time step newer than the last one accepted; never the same twice."""
    locked = Authenticator.objects.select_for_update().get(pk=authenticator.pk)
    secret = decrypt(locked.data["secret"])
    last_accepted = int(locked.data.get(TOTP_LAST_COUNTER, -1))
    code = _digits(code)
    for counter in yield_hotp_counters_from_time():
        if compare_user_code(actual=code, expected=format_hotp_value(hotp_value(secret, counter))):
            if counter <= last_accepted:
                return False  # replayed, or older than a code already used
            locked.data[TOTP_LAST_COUNTER] = counter
            locked.save(update_fields=["data"])
            authenticator.data = locked.data
            return True
    return False


def totp_step_of(*, secret: str, code: str) -> int | None:
    """The time step (within the tolerance window) whose code `code` is, or None."""
    code = _digits(code)
    for counter in yield_hotp_counters_from_time():
        if compare_user_code(actual=code, expected=format_hotp_value(hotp_value(secret, counter))):
            return counter
    return None


@transaction.atomic
def totp_activation_record(*, authenticator: Authenticator, step: int) -> None:
    """Remember the step of the code that confirmed the enrolment: it can't then sign anyone in."""
    locked = Authenticator.objects.select_for_update().get(pk=authenticator.pk)
    if int(locked.data.get(TOTP_LAST_COUNTER, -1)) < step:
        locked.data[TOTP_LAST_COUNTER] = step
        locked.save(update_fields=["data"])


# Authenticator.data key of the last WebAuthn signature counter seen.
WEBAUTHN_SIGN_COUNT = "sign_count"


@transaction.atomic
def webauthn_sign_count_accept(*, authenticator: Authenticator, sign_count: int) -> bool:
    """Accept an assertion's signature counter: it must grow, unless the key keeps none (0).

    WebAuthn §7.2 step 21: a counter that does not advance means the credential may have been
    cloned; allauth and fido2 do not check it. Keys that keep no counter (most synced passkeys)
    always send 0 and are accepted.
    """
    locked = Authenticator.objects.select_for_update().get(pk=authenticator.pk)
    stored = int(locked.data.get(WEBAUTHN_SIGN_COUNT, 0))
    if (sign_count or stored) and sign_count <= stored:
        audit_record(
            action="accounts.mfa.webauthn_counter_regressed",
            outcome="failure",
            target=locked.user,
            metadata={"authenticator_id": locked.pk, "stored": stored, "presented": sign_count},
        )
        return False
    if sign_count:
        locked.data[WEBAUTHN_SIGN_COUNT] = sign_count
        locked.save(update_fields=["data"])
        authenticator.data = locked.data
    return True


@transaction.atomic
def recovery_code_accept(*, authenticator: Authenticator, code: str) -> bool:
    """Use one recovery code; the row lock makes two concurrent uses of one code a single use."""
    recovery_codes = Authenticator.objects.select_for_update().get(pk=authenticator.pk).wrap()
    accepted = bool(recovery_codes.validate_code(_digits(code)))
    # validate_code reads the row again (under its own lock): its copy knows the code just used.
    authenticator.data = recovery_codes.instance.data
    return accepted


def mfa_code_accept(*, user: User, code: str, email_codes: bool = True) -> AcceptedFactor | None:
    """The factor a typed code proves for `user` (TOTP, a recovery code, an e-mailed code), or None.

    E-mailed codes are for the second factor of a sign-in (`email_codes`); a re-authentication
    asks for the real factor.
    """
    if not _digits(code):
        return None
    authenticators = Authenticator.objects.filter(
        user=user, type__in=(Authenticator.Type.TOTP, Authenticator.Type.RECOVERY_CODES)
    )
    by_type = {authenticator.type: authenticator for authenticator in authenticators}
    totp = by_type.get(Authenticator.Type.TOTP)
    if totp is not None and totp_code_accept(authenticator=totp, code=code):
        return AcceptedFactor(type=Authenticator.Type.TOTP, authenticator=totp)
    recovery = by_type.get(Authenticator.Type.RECOVERY_CODES)
    if recovery is not None:
        with transaction.atomic():  # a recovery code is used up only with its audit event
            if recovery_code_accept(authenticator=recovery, code=code):
                audit_record(
                    action="accounts.mfa.recovery_code_used",
                    actor=user,
                    target=user,
                    metadata={"codes_left": len(recovery.wrap().get_unused_codes())},
                )
                return AcceptedFactor(type=Authenticator.Type.RECOVERY_CODES, authenticator=recovery)
    # A code sent before the user's role came to require MFA must not stand in for it either.
    if email_codes and user_may_use_email_codes(user) and email_code_accept(user=user, code=code):
        return AcceptedFactor(type=EMAIL_CODE)
    return None


# --- codes e-mailed as a fallback ----------------------------------------------------------------


def _email_code_hash(code: str) -> str:
    # Six digits are a million guesses offline: the hash is keyed, so a database dump alone won't do.
    return salted_hmac("accounts.mfa.email-code", code, algorithm="sha256").hexdigest()


def email_code_address(user: User) -> str | None:
    """Where e-mail codes go: the user's verified primary address, if any."""
    address = EmailAddress.objects.filter(user=user, primary=True, verified=True).first()
    return address.email if address is not None else None


@transaction.atomic
def email_code_send(*, user: User) -> EmailCode:
    """E-mail the user a fresh 6-digit code for the second factor of the sign-in in progress.

    Refused with `email_code_unavailable` when e-mail codes are off, the user's role needs a real
    second factor, or no address is verified; `RateLimited` past the per-window allowance.
    """
    address = email_code_address(user)
    if not user_may_use_email_codes(user) or address is None:
        raise ValidationError(
            "A code by e-mail is not available for this account.", code="email_code_unavailable"
        )
    User.objects.select_for_update().filter(pk=user.pk).first()  # one sender per user at a time
    now = timezone.now()
    window_start = now - app_settings.mfa_email_code_window()
    recent = list(
        EmailCode.objects.filter(user=user, created_at__gt=window_start)
        .order_by("created_at")
        .values_list("created_at", flat=True)
    )
    if len(recent) >= app_settings.mfa_email_codes_per_window():
        wait = (recent[0] + app_settings.mfa_email_code_window() - now).total_seconds()
        raise RateLimited("Too many codes were sent. Retry later.", retry_after=max(math.ceil(wait), 1))
    EmailCode.objects.filter(user=user, used_at__isnull=True, expires_at__gt=now).update(expires_at=now)
    code = f"{secrets.randbelow(10**EMAIL_CODE_DIGITS):0{EMAIL_CODE_DIGITS}d}"
    email_code = EmailCode(
        user=user,
        code_hash=_email_code_hash(code),
        sent_to=address,
        expires_at=now + app_settings.mfa_email_code_lifetime(),
    )
    email_code.full_clean()
    email_code.save()
    email_queue(
        template_prefix=EMAIL_CODE_TEMPLATE_PREFIX,
        to=address,
        context={
            "user": user,
            "code": code,
            "minutes": int(app_settings.mfa_email_code_lifetime().total_seconds() // 60),
        },
    )
    audit_record(action="accounts.mfa.email_code_sent", actor=user, target=user, metadata={"email": address})
    return email_code


@transaction.atomic
def email_code_accept(*, user: User, code: str) -> bool:
    """Use the user's live e-mailed code if `code` is it; a wrong guess counts against the code."""
    now = timezone.now()
    email_code = (
        EmailCode.objects.select_for_update()
        .filter(user=user, used_at__isnull=True, expires_at__gt=now)
        .order_by("-created_at")
        .first()
    )
    if email_code is None:
        return False
    code = _digits(code)
    if len(code) == EMAIL_CODE_DIGITS and hmac.compare_digest(email_code.code_hash, _email_code_hash(code)):
        email_code.used_at = now
        email_code.save(update_fields=["used_at"])
        return True
    email_code.failed_attempts += 1
    if email_code.failed_attempts >= EMAIL_CODE_MAX_FAILURES:
        email_code.expires_at = now  # guessed at too often: dead
    email_code.save(update_fields=["failed_attempts", "expires_at"])
    return False


def email_codes_prune(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Delete e-mail codes long expired (a beat job)."""
    deleted, _ = EmailCode.objects.filter(expires_at__lt=timezone.now() - older_than).delete()
    return deleted


# --- staff tools -----------------------------------------------------------------------------------


@transaction.atomic
def user_mfa_reset(*, user: User, actor: User | None = None) -> dict[str, object]:
    """Remove every second factor of the user (who lost them) and sign them out everywhere.

    Records `accounts.mfa.reset` with the factor types removed. A user whose role requires MFA is
    sent to enrol again at their next sign-in. Staff cannot reset their own (`cannot_target_self`):
    they would be signed out at once, and anyone holding their session could strip their factors.
    """
    if actor is not None and actor.pk == user.pk:
        raise ValidationError("You cannot reset your own second factors.", code="cannot_target_self")
    removed = sorted(set(Authenticator.objects.filter(user=user).values_list("type", flat=True)))
    Authenticator.objects.filter(user=user).delete()
    EmailCode.objects.filter(user=user).delete()
    revoked = user_revoke_everything(user=user, reason=DeviceSession.RevokeReason.STAFF)
    transaction.on_commit(lambda: user_forget(user_id=user.pk))
    audit_record(
        action="accounts.mfa.reset",
        actor=actor,
        target=user,
        metadata={"removed": removed, "revoked": revoked_for_audit(revoked)},
    )
    return {"removed": removed, "revoked": revoked}
