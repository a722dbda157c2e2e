"""django-allauth adapter: allauth's flows, our services.

allauth drives sign-up, sign-in, verification and resets for the browser pages and the headless
API; every user it creates goes through `accounts.services.user_create`, and every message it
sends goes out through a Celery task after the transaction commits.
"""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.internal.flows.signup import prevent_enumeration
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.headless.base.response import AuthenticationResponse
from allauth.headless.internal.restkit.response import APIResponse
from allauth.headless.tokens.strategies.sessions import SessionTokenStrategy
from allauth.mfa.adapter import DefaultMFAAdapter
from django.core.exceptions import ValidationError
from django.forms import BaseForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from accounts.emails import email_queue
from accounts.encryption import secret_decrypt, secret_encrypt
from accounts.exceptions import RefreshTokenRejected
from accounts.models import User
from accounts.selectors.mfa import authentication_records
from accounts.services import device_session_refresh, device_session_start, user_create
from accounts.tokens import DEVICE_SESSION_ID_KEY
from accounts.validators import UsernameValidator, email_address_canonical


class AccountAdapter(DefaultAccountAdapter):
    def clean_username(self, username: str, shallow: bool = False) -> str:
        username = super().clean_username(username.lower(), shallow=shallow)
        UsernameValidator()(username)
        return username

    def clean_email(self, email: str) -> str:
        # One spelling per mailbox before allauth's uniqueness check: no look-alike second account.
        return super().clean_email(email_address_canonical(email))

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

    def respond_user_inactive(self, request: HttpRequest, user: Any) -> HttpResponse:
        """An inactive account's right password: if its deletion is pending, offer the undo.

        allauth reaches this only after the password (or another sign-in method) proved who is
        signing in; a wrong password gets the ordinary error, so nothing is disclosed. A fresh undo
        link is e-mailed, and the page (or, headless, a 403 `account_pending_deletion`) says so.
        """
        from accounts.services.deletion import user_deletion_remind
        from accounts.views.deletion import DELETION_PENDING_SESSION_KEY

        purge_after = user_deletion_remind(user=user) if isinstance(user, User) else None
        if purge_after is None:
            return super().respond_user_inactive(request, user)
        if hasattr(getattr(request, "allauth", None), "headless"):
            return AccountPendingDeletionResponse(request, purge_after=purge_after)
        request.session[DELETION_PENDING_SESSION_KEY] = purge_after.isoformat()
        return HttpResponseRedirect(reverse("account_deletion_pending"))


class AccountPendingDeletionResponse(AuthenticationResponse):
    """Headless: the account is pending deletion and an undo link was e-mailed (403).

    An `AuthenticationResponse`, so allauth's headless views return it as it is.
    """

    def __init__(self, request: HttpRequest, *, purge_after: datetime) -> None:
        APIResponse.__init__(
            self,
            request,
            errors=[
                {
                    "code": "account_pending_deletion",
                    "message": "This account is scheduled for deletion. We e-mailed you a link to keep it.",
                    "param": None,
                }
            ],
            meta={"is_authenticated": False, "purge_after": purge_after.isoformat()},
            status=HTTPStatus.FORBIDDEN,
        )


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
            authentication=authentication_records(request.session),
        )
        request.session[DEVICE_SESSION_ID_KEY] = str(session.id)
        return pair.as_response()

    def refresh_token(self, refresh_token: str) -> tuple[str, str] | None:
        try:
            pair = device_session_refresh(refresh_token=refresh_token)
        except RefreshTokenRejected:
            return None
        return pair.access_token, pair.refresh_token


class MFAAdapter(DefaultMFAAdapter):
    """allauth.mfa's adapter: its stored secrets are encrypted (accounts.encryption)."""

    def encrypt(self, text: str) -> str:
        return secret_encrypt(text)

    def decrypt(self, encrypted_text: str) -> str:
        return secret_decrypt(encrypted_text)
