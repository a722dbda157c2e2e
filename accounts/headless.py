"""allauth's headless MFA endpoints with our code check, the e-mailed fallback code, the password
change with the account lockout, and the sign-up that costs the same for a taken address.

allauth's headless views build their inputs from allauth's forms directly (MFA_FORMS only reaches
its browser pages), so these subclasses swap in accounts.forms.mfa and are routed ahead of
allauth's own URLs in config/urls.py, at the same paths.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from allauth.account.adapter import get_adapter as get_account_adapter
from allauth.core import context
from allauth.headless.account.inputs import ChangePasswordInput, SignupInput
from allauth.headless.account.views import ChangePasswordView, SignupView
from allauth.headless.base.views import AuthenticationStageAPIView
from allauth.headless.internal.restkit import inputs
from allauth.headless.internal.restkit.response import APIResponse, ErrorResponse
from allauth.headless.mfa.views import (
    AuthenticateView,
    AuthenticateWebAuthnView,
    LoginWebAuthnView,
    ManageTOTPView,
    ReauthenticateView,
    ReauthenticateWebAuthnView,
)
from allauth.mfa.stages import AuthenticateStage
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from rest_framework.exceptions import Throttled

from accounts.exceptions import RateLimited
from accounts.forms.account import TakenAddressSignUpMixin, sign_up_conflict_refused
from accounts.forms.mfa import (
    MFAActivateTOTPForm,
    MFAAuthenticateForm,
    MFAAuthenticateWebAuthnForm,
    MFALoginWebAuthnForm,
    MFAReauthenticateForm,
    MFAReauthenticateWebAuthnForm,
)
from accounts.lockout import lockout_check_current_password
from accounts.services.mfa import email_code_send


class MFAAuthenticateInput(MFAAuthenticateForm, inputs.Input):
    pass


class MFAReauthenticateInput(MFAReauthenticateForm, inputs.Input):
    pass


class MFAAuthenticateWebAuthnInput(MFAAuthenticateWebAuthnForm, inputs.Input):
    pass


class MFAReauthenticateWebAuthnInput(MFAReauthenticateWebAuthnForm, inputs.Input):
    pass


class MFAActivateTOTPInput(MFAActivateTOTPForm, inputs.Input):
    pass


class MFALoginWebAuthnInput(MFALoginWebAuthnForm, inputs.Input):
    pass


class LockoutChangePasswordInput(ChangePasswordInput):
    """The current password is checked like a sign-in: audited, and counted toward the lockout."""

    def clean_current_password(self) -> str:
        password: str = self.cleaned_data["current_password"]
        if password and not lockout_check_current_password(
            user=self.user, password=password, request=context.request
        ):
            raise get_account_adapter().validation_error("enter_current_password")
        return password


class ChangePasswordAPIView(ChangePasswordView):
    input_class = LockoutChangePasswordInput


class TakenAddressSignupInput(TakenAddressSignUpMixin, SignupInput):
    pass


class SignupAPIView(SignupView):
    input_class = {"POST": TakenAddressSignupInput}

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError as error:
            # A concurrent sign-up took the username after this one's input was checked.
            if not sign_up_conflict_refused(self.input, error):
                raise
            return ErrorResponse(request, input=self.input)


class MFAAuthenticateAPIView(AuthenticateView):
    input_class = MFAAuthenticateInput


class MFAReauthenticateAPIView(ReauthenticateView):
    input_class = MFAReauthenticateInput


class MFAAuthenticateWebAuthnAPIView(AuthenticateWebAuthnView):
    input_class = {"POST": MFAAuthenticateWebAuthnInput}


class MFAReauthenticateWebAuthnAPIView(ReauthenticateWebAuthnView):
    input_class = {"POST": MFAReauthenticateWebAuthnInput}


class MFALoginWebAuthnAPIView(LoginWebAuthnView):
    input_class = {"POST": MFALoginWebAuthnInput}


class MFAManageTOTPAPIView(ManageTOTPView):
    input_class = {"POST": MFAActivateTOTPInput}


class EmailCodeRequestAPIView(AuthenticationStageAPIView):
    """`POST …/auth/2fa/email-code`: e-mail a code that the `2fa/authenticate` step then accepts.

    Only while a sign-in waits for its second factor (else 401, as allauth answers for its other
    stage endpoints); 400 `email_code_unavailable` for accounts that may not use e-mail codes;
    429 with Retry-After past the allowance.
    """

    stage_class = AuthenticateStage

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            email_code = email_code_send(user=self.stage.login.user)
        except ValidationError as error:
            return ErrorResponse(request, exception=error)
        except RateLimited as error:
            # The project's 429 everywhere: code `throttled`, the words of the DRF API's 429, and
            # whole seconds.
            message = Throttled(wait=error.retry_after, detail=error.detail).detail
            response = ErrorResponse(
                request,
                status=HTTPStatus.TOO_MANY_REQUESTS,
                exception=ValidationError(str(message), code="throttled"),
            )
            response["Retry-After"] = str(error.retry_after)
            return response
        return APIResponse(request, data={"sent_to": _masked(email_code.sent_to)}, status=HTTPStatus.OK)


def _masked(address: str) -> str:
    """`a•••@example.com`: enough for the user to recognise, not enough to harvest."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}"
