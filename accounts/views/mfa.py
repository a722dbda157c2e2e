"""Browser pages of the second factor: allauth's sign-in step with the e-mailed fallback code."""

from __future__ import annotations

from typing import Any

from allauth.account.internal.stagekit import get_pending_stage
from allauth.mfa.base.views import AuthenticateView
from allauth.mfa.stages import AuthenticateStage
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from accounts.exceptions import RateLimited
from accounts.selectors.mfa import user_may_use_email_codes
from accounts.services.mfa import email_code_address, email_code_send


class MFAAuthenticatePageView(AuthenticateView):
    """allauth's second-factor page, offering a code by e-mail to accounts that may use one."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        user = self.stage.login.user
        context["email_code_available"] = user_may_use_email_codes(user) and bool(email_code_address(user))
        return context


@require_POST
def email_code_request(request: HttpRequest) -> HttpResponse:
    """E-mail a code for the sign-in waiting for its second factor, then back to that step."""
    stage = get_pending_stage(request)
    if not isinstance(stage, AuthenticateStage) or stage.login.user is None:
        return redirect("account_login")
    try:
        email_code_send(user=stage.login.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    except RateLimited:
        messages.error(request, "Too many codes were sent. Wait a few minutes, then ask again.")
    else:
        messages.success(request, "We e-mailed you a 6-digit code. Enter it below; it works for 10 minutes.")
    return redirect("mfa_authenticate")
