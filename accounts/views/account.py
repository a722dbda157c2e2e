"""allauth's account pages with our rules: the sign-up page."""

from __future__ import annotations

from allauth.account.views import SignupView as AllauthSignupView
from django.core.exceptions import ValidationError
from django.forms import BaseForm
from django.http import HttpResponse

from accounts.forms.account import sign_up_conflict_refused


class SignupPageView(AllauthSignupView):
    """allauth's sign-up page, answering a username lost to a concurrent sign-up like a taken one."""

    def form_valid(self, form: BaseForm) -> HttpResponse:
        try:
            return super().form_valid(form)
        except ValidationError as error:
            if not sign_up_conflict_refused(form, error):
                raise
            return self.form_invalid(form)
