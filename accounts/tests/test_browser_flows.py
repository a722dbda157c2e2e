"""Browser clients end to end: the allauth pages and the headless API for same-origin SPAs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-enough-pass-8812"
NEW_PASSWORD = "another-Long-pass-5521"


def link_in_last_mail(path_pattern: str) -> str:
    """The path of the first link in the last e-mail whose path matches."""
    match = re.search(rf"https?://[^/\s]+({path_pattern})", str(mail.outbox[-1].body))
    assert match is not None, mail.outbox[-1].body
    return match.group(1)


def verified_user() -> User:
    user = UserFactory.create()
    EmailAddress.objects.create(user=user, email=user.email.lower(), primary=True, verified=True)
    return user


def test_sign_up_verify_and_use_the_api_with_the_pages(
    client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/accounts/signup/",
            {"email": "grace@example.com", "username": "grace", "password1": PASSWORD, "password2": PASSWORD},
        )

    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert client.get("/api/v1/users/me/").status_code == 401  # not verified, not signed in
    confirm_url = link_in_last_mail(r"/accounts/confirm-email/[^/\s]+/")
    assert client.get(confirm_url).status_code == 200

    response = client.post(confirm_url)

    assert response.status_code == 302
    me = client.get("/api/v1/users/me/")
    assert me.status_code == 200
    assert me.json()["username"] == "grace"
    assert EmailAddress.objects.get(user__username="grace").verified is True

    client.post("/accounts/logout/")
    assert client.get("/api/v1/users/me/").status_code == 401


def test_sign_in_by_username_or_email_on_the_pages(client: Client) -> None:
    user = verified_user()

    by_username = client.post(
        "/accounts/login/", {"login": user.username.upper(), "password": DEFAULT_PASSWORD}
    )
    client.post("/accounts/logout/")
    by_email = client.post("/accounts/login/", {"login": user.email.upper(), "password": DEFAULT_PASSWORD})

    assert by_username.status_code == 302
    assert by_email.status_code == 302
    assert client.get("/api/v1/users/me/").json()["id"] == str(user.id)


def test_unverified_account_cannot_sign_in(client: Client) -> None:
    user = UserFactory.create()
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=False)

    client.post("/accounts/login/", {"login": user.username, "password": DEFAULT_PASSWORD})

    assert client.get("/api/v1/users/me/").status_code == 401


def test_headless_browser_client_uses_the_session_cookie(client: Client) -> None:
    user = verified_user()

    response = client.post(
        "/_allauth/browser/v1/auth/login",
        {"email": user.email, "password": DEFAULT_PASSWORD},
        content_type="application/json",
    )

    assert response.status_code == 200
    assert "access_token" not in response.json()["meta"]  # browsers keep the cookie, not tokens
    assert client.get("/api/v1/users/me/").status_code == 200
    assert client.delete("/_allauth/browser/v1/auth/session").status_code == 401
    assert client.get("/api/v1/users/me/").status_code == 401


def test_headless_wrong_password_unknown_account_and_unverified_look_the_same(client: Client) -> None:
    user = verified_user()
    unverified = UserFactory.create()
    EmailAddress.objects.create(user=unverified, email=unverified.email, primary=True, verified=False)

    def attempt(email: str, password: str) -> tuple[int, Any]:
        response = Client().post(
            "/_allauth/app/v1/auth/login",
            {"email": email, "password": password},
            content_type="application/json",
        )
        return response.status_code, response.json().get("errors")

    wrong_password = attempt(user.email, "Not-the-pass-0000")
    unknown = attempt("nobody@example.com", "Not-the-pass-0000")

    assert wrong_password == unknown
    assert wrong_password[0] == 400


def test_password_reset_by_link_then_sign_in_with_the_new_password(
    client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    user = verified_user()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/password/reset/", {"email": user.email})
    assert response.status_code == 302
    reset_url = link_in_last_mail(r"/accounts/password/reset/key/[^\s]+/")

    form = client.get(reset_url, follow=True)
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(form.redirect_chain[-1][0], {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert mail.outbox[-1].subject.endswith("Password Reset")


def test_password_reset_for_an_unknown_address_reveals_nothing(
    client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        unknown = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    known_user = verified_user()
    with django_capture_on_commit_callbacks(execute=True):
        known = client.post("/accounts/password/reset/", {"email": known_user.email})

    assert (unknown.status_code, unknown["Location"]) == (known.status_code, known["Location"])


def test_password_change_keeps_this_browser_signed_in(client: Client) -> None:
    user = verified_user()
    client.post("/accounts/login/", {"login": user.username, "password": DEFAULT_PASSWORD})

    response = client.post(
        "/accounts/password/change/",
        {"oldpassword": DEFAULT_PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert client.get("/api/v1/users/me/").status_code == 200


def test_weak_passwords_are_refused_with_the_rule_that_failed(client: Client) -> None:
    response = client.post(
        "/_allauth/browser/v1/auth/signup",
        {"email": "weak@example.com", "username": "weak_one", "password": "123456789"},
        content_type="application/json",
    )

    assert response.status_code == 400
    messages = " ".join(error["message"] for error in response.json()["errors"])
    assert "too short" in messages
    assert "entirely numeric" in messages
    assert not User.objects.filter(username="weak_one").exists()


def test_argon2id_is_the_first_password_hasher() -> None:
    from config import settings as production_settings

    assert production_settings.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"


def test_headless_errors_carry_the_project_error_keys_too(client: Client) -> None:
    response = client.post(
        "/_allauth/app/v1/auth/signup",
        {"email": "not-an-address", "username": "Bad Name!", "password": "a-Long-enough-pass-8812"},
        content_type="application/json",
    )

    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation_error"
    assert body["status"] == 400  # allauth's own keys stay for its clients
    by_field = {error["attr"]: error for error in body["errors"]}
    assert set(by_field) == {"email", "username"}
    for error in body["errors"]:
        assert error["detail"] == error["message"]
        assert error["attr"] == error["param"]
        assert error["code"]
