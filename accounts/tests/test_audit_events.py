"""Every security-relevant account event reaches the audit trail, recorded from real HTTP flows."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import DeviceSession, User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory, totp_enrol
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

APP = "/_allauth/app/v1"
PASSWORD = "a-Long-enough-pass-8812"


def verified_user(**fields: Any) -> User:
    user = UserFactory.create(**fields)
    EmailAddress.objects.create(user=user, email=user.email.lower(), primary=True, verified=True)
    return user


def app_login(user: User, password: str = DEFAULT_PASSWORD, **headers: str) -> Any:
    return Client().post(
        f"{APP}/auth/login",
        {"username": user.username, "password": password},
        content_type="application/json",
        headers={"User-Agent": "okhttp/4.12", **headers},
    )


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_sign_up_is_recorded_with_where_it_came_from(client: Client) -> None:
    client.post(
        f"{APP}/auth/signup",
        {"email": "kim@example.com", "username": "kim", "password": PASSWORD},
        content_type="application/json",
        headers={"X-Request-ID": "signup-1", "User-Agent": "okhttp/4.12"},
    )

    [event] = events("accounts.user.signed_up")
    kim = User.objects.get(username="kim")
    assert (event.actor_type, event.actor_id) == ("user", str(kim.pk))
    assert (event.target_type, event.target_id, event.target_label) == ("accounts.user", str(kim.pk), "kim")
    assert (event.ip_address, event.user_agent, event.request_id) == ("127.0.0.1", "okhttp/4.12", "signup-1")
    assert event.outcome == "success"


def test_verifying_a_new_accounts_address_is_no_email_change(
    client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    """allauth sends `email_changed` after every verification; a sign-up's has nothing before it."""
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/accounts/signup/",
            {"email": "lee@example.com", "username": "lee", "password1": PASSWORD, "password2": PASSWORD},
        )
    link = re.search(r"/accounts/confirm-email/[^/\s]+/", str(mail.outbox[-1].body))
    assert link is not None

    assert client.post(link.group(0)).status_code == 302

    lee = User.objects.get(username="lee")
    [verified] = events("accounts.user.email_verified")
    assert (verified.target_id, verified.metadata) == (str(lee.pk), {"email": "lee@example.com"})
    assert events("accounts.user.email_changed") == []


def test_sign_in_success_and_failure_are_recorded_with_the_reason() -> None:
    user = verified_user()

    assert app_login(user, "Wrong-pass-0001").status_code == 400
    assert app_login(user).status_code == 200
    Client().post(
        f"{APP}/auth/login",
        {"email": "ghost@example.com", "password": "x" * 12},
        content_type="application/json",
    )

    wrong, unknown = events("accounts.user.sign_in_failed")
    assert (wrong.outcome, wrong.target_id, wrong.metadata["reason"]) == (
        "failure",
        str(user.pk),
        "invalid_credentials",
    )
    assert (unknown.target_id, unknown.metadata) == (
        "",
        {"reason": "unknown_account", "identifier": "ghost@example.com"},
    )
    [signed_in] = events("accounts.user.signed_in")
    assert (signed_in.actor_id, signed_in.metadata["via"]) == (str(user.pk), f"{APP}/auth/login")


def test_a_lockout_is_recorded() -> None:
    user = verified_user()

    for _ in range(5):
        app_login(user, "Wrong-pass-0001")

    [event] = events("accounts.user.locked_out")
    assert (event.target_id, event.outcome) == (str(user.pk), "failure")
    assert event.metadata == {"seconds": 60, "lockout_count": 1}


def test_sign_out_device_revocation_and_refresh_reuse_are_recorded() -> None:
    user = verified_user()
    first = app_login(user).json()["meta"]
    second = app_login(user).json()["meta"]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {first['access_token']}")

    device = DeviceSession.objects.get(session_key=second["session_token"])
    api.delete(f"/api/v1/sessions/{device.pk}/")
    api.post("/api/v1/auth/token/refresh/", {"refresh_token": first["refresh_token"]}, format="json")
    DeviceSession.objects.filter(user=user).update(rotated_at=timezone.now() - timedelta(minutes=5))
    api.post("/api/v1/auth/token/refresh/", {"refresh_token": first["refresh_token"]}, format="json")

    revoked = events("accounts.device_session.revoked")
    assert [(event.target_id, event.metadata["reason"]) for event in revoked] == [
        (str(device.pk), "revoked"),
        (str(DeviceSession.objects.exclude(pk=device.pk).get().pk), "refresh_reused"),
    ]
    assert (revoked[0].actor_type, revoked[0].actor_id) == ("user", str(user.pk))
    [reused] = events("accounts.token.refresh_reused")
    assert (reused.outcome, reused.actor_id) == ("failure", str(user.pk))

    session_client = Client()
    session_client.post(
        f"{APP}/auth/login",
        {"username": user.username, "password": DEFAULT_PASSWORD},
        content_type="application/json",
    )
    token = DeviceSession.objects.filter(user=user, revoked_at__isnull=True).get().session_key
    session_client.delete(f"{APP}/auth/session", headers={"X-Session-Token": token})
    [signed_out] = events("accounts.user.signed_out")
    assert signed_out.target_id == str(user.pk)


def test_password_change_and_reset_are_recorded(
    client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    user = verified_user()
    client.post("/accounts/login/", {"login": user.username, "password": DEFAULT_PASSWORD})
    client.post(
        "/accounts/password/change/",
        {"oldpassword": DEFAULT_PASSWORD, "password1": PASSWORD, "password2": PASSWORD},
    )
    browser = Client()
    with django_capture_on_commit_callbacks(execute=True):
        browser.post("/accounts/password/reset/", {"email": user.email})
    path = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/\S+/)", str(mail.outbox[-1].body))
    assert path is not None
    form = browser.get(path.group(1), follow=True)
    browser.post(form.redirect_chain[-1][0], {"password1": DEFAULT_PASSWORD, "password2": DEFAULT_PASSWORD})

    assert [event.target_id for event in events("accounts.user.password_changed")] == [str(user.pk)]
    assert [event.target_id for event in events("accounts.user.password_reset")] == [str(user.pk)]


def test_email_change_and_verification_are_recorded(
    client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    user = verified_user(email="before@example.com")
    client.post(
        "/_allauth/browser/v1/auth/login",
        {"email": user.email, "password": DEFAULT_PASSWORD},
        content_type="application/json",
    )
    # Changing the address is a step-up action: the password again first.
    reauthenticated = client.post(
        "/_allauth/browser/v1/auth/reauthenticate",
        {"password": DEFAULT_PASSWORD},
        content_type="application/json",
    )
    assert reauthenticated.status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/_allauth/browser/v1/account/email",
            {"email": "after@example.com"},
            content_type="application/json",
        )
    key = re.search(r"/accounts/confirm-email/([^/\s]+)/", str(mail.outbox[-1].body))
    assert key is not None

    client.post(
        "/_allauth/browser/v1/auth/email/verify", {"key": key.group(1)}, content_type="application/json"
    )

    [verified] = events("accounts.user.email_verified")
    assert (verified.target_id, verified.metadata) == (str(user.pk), {"email": "after@example.com"})
    [changed] = events("accounts.user.email_changed")
    assert changed.changes == {"email": ["before@example.com", "after@example.com"]}


def test_admin_changes_are_mirrored_with_field_values(client: Client) -> None:
    from accounts.tests.test_admin_users import change_form_data

    staff = UserFactory.create(is_staff=True, is_superuser=True)
    totp_enrol(staff)  # staff must have a second factor to reach the admin
    member = UserFactory.create(username="member", description="")
    client.force_login(staff)
    change_url = f"/admin/accounts/user/{member.pk}/change/"
    form = {**change_form_data(client, member), "display_name": "Member", "description": "Spammer"}

    response = client.post(change_url, form)

    assert response.status_code == 302
    [mirrored] = events("admin.object.changed")
    assert (mirrored.actor_id, mirrored.target_type, mirrored.target_id) == (
        str(staff.pk),
        "accounts.user",
        str(member.pk),
    )
    assert mirrored.changes == {
        "display_name": ["member", "Member"],
        "description": ["", "Spammer"],
    }
    assert "Changed" in mirrored.metadata["change_message"]
    [updated] = events("accounts.user.updated")
    assert (updated.actor_id, updated.target_id) == (str(staff.pk), str(member.pk))


# --- e-mail addresses added, removed, verified and made primary (issue 12, finding 8) -----------


def browser_signed_in(user: User) -> Client:
    """A browser session (headless client `browser`) that has just re-authenticated: managing
    addresses is a step-up action."""
    client = Client()
    signed_in = client.post(
        "/_allauth/browser/v1/auth/login",
        {"username": user.username, "password": DEFAULT_PASSWORD},
        content_type="application/json",
    )
    assert signed_in.status_code == 200, signed_in.content
    reauthenticated = client.post(
        "/_allauth/browser/v1/auth/reauthenticate",
        {"password": DEFAULT_PASSWORD},
        content_type="application/json",
    )
    assert reauthenticated.status_code == 200, reauthenticated.content
    return client


def manage_email(client: Client, method: str, body: dict[str, Any]) -> Any:
    return getattr(client, method)(
        "/_allauth/browser/v1/account/email", body, content_type="application/json"
    )


def test_adding_and_removing_an_address_are_recorded(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    user = verified_user(email="kept@example.com")
    client = browser_signed_in(user)

    with django_capture_on_commit_callbacks(execute=True):
        added = manage_email(client, "post", {"email": "Second@Example.com"})
    removed = manage_email(client, "delete", {"email": "second@example.com"})

    assert (added.status_code, removed.status_code) == (200, 200)
    assert list(EmailAddress.objects.filter(user=user).values_list("email", flat=True)) == [
        "kept@example.com"
    ]
    recorded = [
        (event.action, event.actor_id, event.target_id, event.metadata)
        for event in AuditEvent.objects.filter(
            action__in=["accounts.user.email_added", "accounts.user.email_removed"]
        ).order_by("id")
    ]
    assert recorded == [
        (
            "accounts.user.email_added",
            str(user.pk),
            str(user.pk),
            {"email": "second@example.com", "verified": False},
        ),
        (
            "accounts.user.email_removed",
            str(user.pk),
            str(user.pk),
            {"email": "second@example.com", "verified": False},
        ),
    ]


def test_making_an_address_primary_is_recorded_as_an_email_change() -> None:
    user = verified_user(email="first@example.com")
    EmailAddress.objects.create(user=user, email="other@example.com", primary=False, verified=True)
    client = browser_signed_in(user)

    response = manage_email(client, "patch", {"email": "other@example.com", "primary": True})

    assert response.status_code == 200, response.content
    user.refresh_from_db()
    assert user.email == "other@example.com"
    [primary] = events("accounts.user.email_changed")
    assert (primary.actor_id, primary.target_id) == (str(user.pk), str(user.pk))
    assert primary.changes == {"email": ["first@example.com", "other@example.com"]}


def test_removing_an_address_on_the_browser_page_is_recorded() -> None:
    user = verified_user(email="first@example.com")
    EmailAddress.objects.create(user=user, email="old@example.com", primary=False, verified=True)
    client = browser_signed_in(user)  # the page shares the headless browser client's session

    response = client.post("/accounts/email/", {"action_remove": "", "email": "old@example.com"})

    assert response.status_code == 302, response.content
    [removed] = events("accounts.user.email_removed")
    assert (removed.actor_id, removed.metadata) == (
        str(user.pk),
        {"email": "old@example.com", "verified": True},
    )
