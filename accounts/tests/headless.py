"""A native app's side of allauth's headless API (client `app`), shared by the MFA, step-up and
enforcement tests."""

from __future__ import annotations

import time
from typing import Any

from allauth.account.models import EmailAddress
from allauth.mfa import app_settings as mfa_settings
from django.test import Client

from accounts.models import User
from accounts.services.moderation import user_set_roles
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory, totp_code

APP = "/_allauth/app/v1"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def verified_user(role: str | None = None, **fields: Any) -> User:
    """A user with a verified primary address, and `role` on top of `user` when given."""
    user = UserFactory.create(**fields)
    EmailAddress.objects.create(user=user, email=user.email.lower(), primary=True, verified=True)
    if role is not None:
        user_set_roles(user=user, roles=[role])
    return user


def app_post(client: Client, path: str, body: dict[str, Any], session_token: str | None = None) -> Any:
    headers = {"User-Agent": USER_AGENT}
    if session_token:
        headers["X-Session-Token"] = session_token
    return client.post(f"{APP}{path}", body, content_type="application/json", headers=headers)


def with_step_headroom(seconds: float = 3) -> None:
    """Wait out the end of a TOTP step, so a code computed now is checked within the same step."""
    remaining = mfa_settings.TOTP_PERIOD - time.time() % mfa_settings.TOTP_PERIOD
    if remaining < seconds:
        time.sleep(remaining + 0.1)


def signed_in_meta(user: User, secret: str | None = None) -> dict[str, Any]:
    """Sign in over the headless API (the password, then a code for a TOTP user); the response's
    `meta`, with the session token and the JWT pair."""
    client = Client()
    with_step_headroom()
    response = app_post(client, "/auth/login", {"username": user.username, "password": DEFAULT_PASSWORD})
    if secret is not None:
        assert response.status_code == 401, response.content
        response = app_post(
            client,
            "/auth/2fa/authenticate",
            {"code": totp_code(secret)},
            response.json()["meta"]["session_token"],
        )
    assert response.status_code == 200, response.content
    meta: dict[str, Any] = response.json()["meta"]
    return meta
