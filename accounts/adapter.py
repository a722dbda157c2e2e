"""django-allauth adapter: allauth's flows, our services.

allauth drives sign-up, sign-in, verification and resets for the browser pages and the headless
API; every user it creates goes through `accounts.services.user_create`, and every message it
sends goes out through a Celery task after the transaction commits.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.internal.flows.signup import prevent_enumeration
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.headless.base.response import AuthenticationResponse
from allauth.headless.tokens.strategies.sessions import SessionTokenStrategy
from django.core.exceptions import ValidationError
from django.forms import BaseForm
from django.http import HttpRequest, HttpResponse

from accounts.emails import email_queue
from accounts.exceptions import RefreshTokenRejected
from accounts.models import User
from accounts.services import device_session_refresh, device_session_start, user_create
from accounts.tokens import DEVICE_SESSION_ID_KEY
from accounts.validators import UsernameValidator


class AccountAdapter(DefaultAccountAdapter):
    def clean_username(self, username: str, shallow: bool = False) -> str:
        username = super().clean_username(username.lower(), shallow=shallow)
        UsernameValidator()(username)
        return username

    def save_user(self, request: HttpRequest, user: Any, form: BaseForm, commit: bool = True) -> User:
        data = form.cleaned_data
        password = data.get("password1") or data.get("password") or None
        try:
            return user_create(username=data["username"], email=data["email"], password=password)
        except ValidationError as error:
            if "email" in getattr(error, "error_dict", {}):
                # A concurrent sign-up with this address (in any letter case) won the race: answer
                # exactly as for an address that already had an account (no enumeration, no 500).
                raise ImmediateHttpResponse(self.account_exists_response(request, data["email"])) from error
            raise

    def account_exists_response(self, request: HttpRequest, email: str) -> HttpResponse:
        """allauth's answer to a sign-up with a taken address, in the caller's API style."""
        response = prevent_enumeration(request, email=email)
        if hasattr(getattr(request, "allauth", None), "headless"):
            response = AuthenticationResponse.from_response(request, response)
        return response

    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        email_queue(template_prefix=template_prefix, to=email, context=context)


class DeviceTokenStrategy(SessionTokenStrategy):
    """allauth's app clients get a JWT pair bound to a new device session once fully signed in.

    The allauth session token still drives the authentication flows (MFA, re-authentication,
    sign-out); the JWT pair authenticates API calls.
    """

    def create_access_token_payload(self, request: HttpRequest) -> dict[str, Any] | None:
        user = request.user
        if not isinstance(user, User):
            return None
        session, pair = device_session_start(
            user=user,
            user_agent=request.headers.get("User-Agent", ""),
            ip_address=request.META.get("REMOTE_ADDR"),
            session_key=self.create_session_token(request),
        )
        request.session[DEVICE_SESSION_ID_KEY] = str(session.id)
        return pair.as_response()

    def refresh_token(self, refresh_token: str) -> tuple[str, str] | None:
        try:
            pair = device_session_refresh(refresh_token=refresh_token)
        except RefreshTokenRejected:
            return None
        return pair.access_token, pair.refresh_token
