"""allauth's account forms with our rules (ACCOUNT_FORMS); the headless API's inputs reuse the
same rules in accounts/headless.py."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import get_adapter
from allauth.account.forms import ChangePasswordForm as AllauthChangePasswordForm
from allauth.account.forms import SignupForm as AllauthSignupForm
from allauth.core import context
from django.core.exceptions import ValidationError
from django.forms import BaseForm
from django.http import HttpRequest, HttpResponse

from accounts.lockout import lockout_check_current_password
from accounts.models import User
from accounts.services.users import user_sign_up_with_taken_address


class TakenAddressSignUpMixin:
    """A sign-up with an address that has an account costs what a new account costs.

    allauth answers it like a new sign-up (enumeration prevention) but skips the password hash,
    the bulk of a new account's time: the answer's timing told which addresses have accounts.
    """

    account_already_exists: bool
    cleaned_data: dict[str, Any]

    def try_save(self, request: HttpRequest) -> tuple[Any, HttpResponse | None]:
        if self.account_already_exists:
            user_sign_up_with_taken_address(
                email=self.cleaned_data.get("email") or "",
                password=self.cleaned_data.get("password1") or self.cleaned_data.get("password") or "",
                request=request,
            )
        return super().try_save(request)  # type: ignore[misc]


class SignupForm(TakenAddressSignUpMixin, AllauthSignupForm):
    pass


def sign_up_conflict_refused(form: BaseForm, error: ValidationError) -> bool:
    """Put on the form a username another sign-up took between the form's check and the insert.

    Worded as allauth's own check words a taken username, so a sign-up that loses the race gets
    exactly the answer of one that came second. False for any other error (re-raised by the caller).
    """
    if "username" not in getattr(error, "error_dict", {}):
        return False
    form.add_error("username", get_adapter().validation_error("username_taken"))
    return True


class ChangePasswordForm(AllauthChangePasswordForm):
    """allauth checks the current password with a bare `check_password`: a wrong one would be
    neither audited nor counted, so a stolen session could guess the password here for ever."""

    def clean_oldpassword(self) -> str:
        password: str = self.cleaned_data.get("oldpassword", "")
        user = self.user
        if not isinstance(user, User) or not lockout_check_current_password(
            user=user, password=password, request=context.request
        ):
            raise get_adapter().validation_error("enter_current_password")
        return password
