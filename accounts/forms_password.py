"""allauth's password change form with the account lockout (accounts.lockout).

allauth checks the current password with a bare `check_password`: a wrong one would be neither
audited nor counted, so a stolen session could guess the password through this form for ever.
"""

from __future__ import annotations

from allauth.account.adapter import get_adapter
from allauth.account.forms import ChangePasswordForm as AllauthChangePasswordForm
from allauth.core import context

from accounts.lockout import lockout_check_current_password
from accounts.models import User


class ChangePasswordForm(AllauthChangePasswordForm):
    def clean_oldpassword(self) -> str:
        password: str = self.cleaned_data.get("oldpassword", "")
        user = self.user
        if not isinstance(user, User) or not lockout_check_current_password(
            user=user, password=password, request=context.request
        ):
            raise get_adapter().validation_error("enter_current_password")
        return password
