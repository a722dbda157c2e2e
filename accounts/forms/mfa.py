"""The forms that check a second-factor code, for allauth's pages (MFA_FORMS) and, through
accounts.headless, its JSON API: strict replay protection, e-mailed fallback codes, lockout.

They replace allauth's code check and keep its contract: `clean_code` raises allauth's
`incorrect_code` error, `save()` records the authentication step in the session and sends
allauth's `authenticator_used` signal (or, for an e-mailed code, records it with type
`email_code`). A failure sends `authentication_failed`, which accounts.receivers counts against
the account lockout and records in the audit trail.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.account.internal.flows.login import record_authentication
from allauth.core import context
from allauth.mfa import signals
from allauth.mfa.base.forms import AuthenticateForm, ReauthenticateForm
from allauth.mfa.base.internal.flows import post_authentication
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.forms import ActivateTOTPForm
from allauth.mfa.webauthn.forms import AuthenticateWebAuthnForm, LoginWebAuthnForm, ReauthenticateWebAuthnForm
from allauth.mfa.webauthn.internal.auth import parse_authentication_response
from django.core.exceptions import ValidationError

from accounts.lockout import lockout_seconds_remaining
from accounts.services.mfa import (
    EMAIL_CODE,
    TOTP_ACTIVATION_STEP_ATTRIBUTE,
    AcceptedFactor,
    mfa_code_accept,
    totp_step_of,
    webauthn_sign_count_accept,
)
from audit.services import audit_record


class MFACodeFormMixin:
    """Shared by sign-in and re-authentication: `reauthentication` tells them apart."""

    reauthentication = False
    user: Any
    cleaned_data: dict[str, Any]
    accepted: AcceptedFactor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # An empty code is a wrong code like any other: `incorrect_code`, recorded and counted
        # toward the lockout, rather than a `required` error that slips past both.
        self.fields["code"].required = False  # type: ignore[attr-defined]

    def clean_code(self) -> str:
        code = str(self.cleaned_data.get("code") or "")
        if lockout_seconds_remaining(user=self.user):
            raise get_account_adapter().validation_error("too_many_login_attempts")
        factor = mfa_code_accept(user=self.user, code=code, email_codes=not self.reauthentication)
        if factor is None:
            self._failed()
            raise get_account_adapter().validation_error("incorrect_code")
        self.accepted = factor
        if factor.authenticator is not None:
            factor.authenticator.user = self.user
            self.authenticator = factor.authenticator
        return code

    def _failed(self) -> None:
        authenticator = (
            Authenticator.objects.filter(user=self.user).exclude(type=Authenticator.Type.WEBAUTHN).first()
            or Authenticator.objects.filter(user=self.user).first()
        )
        signals.authentication_failed.send(
            sender=Authenticator,
            request=context.request,
            user=self.user,
            authenticator=authenticator,
            reauthentication=self.reauthentication,
        )

    def save(self) -> None:
        request = context.request
        if self.accepted.authenticator is not None:
            post_authentication(request, self.accepted.authenticator, reauthenticated=self.reauthentication)
            return
        extra: dict[str, Any] = {"type": EMAIL_CODE}
        if self.reauthentication:
            extra["reauthenticated"] = True
        record_authentication(request, self.user, "mfa", **extra)
        audit_record(
            action="accounts.mfa.authenticated",
            actor=self.user,
            target=self.user,
            request=request,
            metadata={"type": EMAIL_CODE, "reauthentication": self.reauthentication},
        )


class MFAAuthenticateForm(MFACodeFormMixin, AuthenticateForm):
    """The second factor of a sign-in."""


class MFAReauthenticateForm(MFACodeFormMixin, ReauthenticateForm):
    """A second factor asked again before a sensitive action."""

    reauthentication = True


# --- WebAuthn: failures recorded and counted like wrong codes ------------------------------------


class WebAuthnFailureMixin:
    """allauth's WebAuthn forms refuse a bad assertion without the `authentication_failed` signal
    its code forms send: record and count it the same way (malformed input included), and refuse
    while the account is locked. With no known user (passkey sign-in) nothing is counted."""

    reauthenticated: bool
    user: Any
    _failure_recorded = False

    def clean_credential(self) -> Any:
        if self.user is not None and lockout_seconds_remaining(user=self.user):
            raise get_account_adapter().validation_error("too_many_login_attempts")
        try:
            authenticator = super().clean_credential()  # type: ignore[misc]
            assertion = parse_authentication_response(self.cleaned_data["credential"])  # type: ignore[attr-defined]
            if not webauthn_sign_count_accept(
                authenticator=authenticator, sign_count=assertion.response.authenticator_data.counter
            ):
                raise get_account_adapter().validation_error("incorrect_code")
            return authenticator
        except ValidationError:
            self._record_failure()
            raise

    def clean(self) -> Any:
        cleaned = super().clean()  # type: ignore[misc]
        if "credential" in self.errors:  # type: ignore[attr-defined]
            self._record_failure()  # missing or not JSON: refused before clean_credential ran
        return cleaned

    def _record_failure(self) -> None:
        if self.user is None or self._failure_recorded:
            return
        self._failure_recorded = True
        signals.authentication_failed.send(
            sender=Authenticator,
            request=context.request,
            user=self.user,
            authenticator=Authenticator.objects.filter(
                user=self.user, type=Authenticator.Type.WEBAUTHN
            ).first(),
            reauthentication=self.reauthenticated,
        )


class MFAAuthenticateWebAuthnForm(WebAuthnFailureMixin, AuthenticateWebAuthnForm):
    pass


class MFAReauthenticateWebAuthnForm(WebAuthnFailureMixin, ReauthenticateWebAuthnForm):
    pass


class MFALoginWebAuthnForm(WebAuthnFailureMixin, LoginWebAuthnForm):
    """Passwordless sign-in with a passkey: its account comes from the assertion itself, so a
    failure is not counted against anyone (an attacker could otherwise lock others out)."""


# --- TOTP enrolment: the confirming code is spent --------------------------------------------------


class MFAActivateTOTPForm(ActivateTOTPForm):
    """allauth's enrolment form; the step of the code that confirmed it is remembered once the
    authenticator exists (accounts.receivers), so that code cannot also complete a sign-in."""

    def clean_code(self) -> str:
        code = super().clean_code()
        step = totp_step_of(secret=self.secret, code=code)
        if step is not None:
            setattr(context.request, TOTP_ACTIVATION_STEP_ATTRIBUTE, step)
        return code
