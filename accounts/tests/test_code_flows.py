"""The code variants of e-mail verification and password reset, for API clients without links."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

APP = "/_allauth/app/v1"
PASSWORD = "a-Long-enough-pass-8812"


def post(client: Client, path: str, body: dict[str, Any], session_token: str | None = None) -> Any:
    headers = {"X-Session-Token": session_token} if session_token else {}
    return client.post(f"{APP}{path}", body, content_type="application/json", headers=headers)


@pytest.fixture
def code_mode(settings: Any) -> Any:
    """Switch allauth to codes at run time; its URL patterns, made at import, must stay as deployed."""
    reverse("account_confirm_email", args=["loaded-before-the-switch"])
    return settings


def code_in_last_mail() -> str:
    match = re.search(
        r"^\s*([A-Z0-9]{4}-[A-Z0-9]{4}|[A-Z0-9]{6,8})\s*$", str(mail.outbox[-1].body), re.MULTILINE
    )
    assert match is not None, mail.outbox[-1].body
    return match.group(1)


def test_sign_up_and_verify_with_a_code(
    client: Client, code_mode: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    code_mode.ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED = True
    with django_capture_on_commit_callbacks(execute=True):
        signup = post(
            client, "/auth/signup", {"email": "lin@example.com", "username": "lin", "password": PASSWORD}
        )
    session_token = signup.json()["meta"]["session_token"]

    wrong = post(client, "/auth/email/verify", {"key": "WRONG1"}, session_token)
    verified = post(client, "/auth/email/verify", {"key": code_in_last_mail()}, session_token)

    assert wrong.status_code == 400
    assert wrong.json()["errors"][0]["attr"] == "key"
    assert verified.status_code == 200
    access = verified.json()["meta"]["access_token"]
    assert APIClient().get("/api/v1/users/me/", HTTP_AUTHORIZATION=f"Bearer {access}").status_code == 200


def test_reset_a_password_with_a_code(
    client: Client, code_mode: Any, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    code_mode.ACCOUNT_PASSWORD_RESET_BY_CODE_ENABLED = True
    user = UserFactory.create()
    EmailAddress.objects.create(user=user, email=user.email.lower(), primary=True, verified=True)
    with django_capture_on_commit_callbacks(execute=True):
        requested = post(client, "/auth/password/request", {"email": user.email})
    session_token = requested.json()["meta"]["session_token"]

    confirmed = post(
        client, "/auth/password/reset", {"key": code_in_last_mail(), "password": PASSWORD}, session_token
    )

    assert confirmed.status_code == 401, confirmed.content  # reset done; the client signs in next
    user = User.objects.get(pk=user.pk)
    assert user.check_password(PASSWORD)


def test_change_of_address_takes_effect_only_once_the_new_one_is_verified(
    client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    user = UserFactory.create(email="old@example.com")
    EmailAddress.objects.create(user=user, email="old@example.com", primary=True, verified=True)
    assert (
        client.post(
            "/_allauth/browser/v1/auth/login",
            {"email": "old@example.com", "password": "correct-horse-battery-staple"},
            content_type="application/json",
        ).status_code
        == 200
    )

    # Changing the address is a sensitive action: allauth asks for the password again first.
    refused = client.post(
        "/_allauth/browser/v1/account/email", {"email": "new@example.com"}, content_type="application/json"
    )
    assert refused.status_code == 401
    assert [flow["id"] for flow in refused.json()["data"]["flows"]] == ["reauthenticate"]
    assert mail.outbox == []
    assert list(EmailAddress.objects.filter(user=user).values_list("email", flat=True)) == ["old@example.com"]
    reauthenticated = client.post(
        "/_allauth/browser/v1/auth/reauthenticate",
        {"password": "correct-horse-battery-staple"},
        content_type="application/json",
    )
    assert reauthenticated.status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        added = client.post(
            "/_allauth/browser/v1/account/email",
            {"email": "new@example.com"},
            content_type="application/json",
        )

    assert added.status_code == 200
    assert mail.outbox[-1].to == ["new@example.com"]
    user.refresh_from_db()
    assert user.email == "old@example.com"  # not until verified
    key = re.search(r"/accounts/confirm-email/([^/\s]+)/", str(mail.outbox[-1].body))
    assert key is not None

    with django_capture_on_commit_callbacks(execute=True):
        verified = client.post(
            "/_allauth/browser/v1/auth/email/verify", {"key": key.group(1)}, content_type="application/json"
        )

    assert verified.status_code == 200
    user.refresh_from_db()
    assert user.email == "new@example.com"
    assert list(EmailAddress.objects.filter(user=user).values_list("email", "primary", "verified")) == [
        ("new@example.com", True, True)
    ]
