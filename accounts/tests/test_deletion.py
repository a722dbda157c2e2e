"""Account deletion with a grace period, over HTTP: request, revocation, undo, sign-in, purge."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from allauth.usersessions.models import UserSession
from django.contrib.sessions.models import Session
from django.core import mail, signing
from django.core.files.base import ContentFile
from django.test import Client
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from oauth2_provider.models import (
    get_access_token_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
    set_token_value,
)
from rest_framework.test import APIClient

from accounts.models import (
    DataExport,
    DeviceSession,
    Invitation,
    Membership,
    Organization,
    User,
    UserBlock,
)
from accounts.services.deletion import deletion_undo_token_make, users_due_for_purge
from accounts.services.moderation import (
    user_block,
    user_deactivate,
    user_lock_down,
    user_reactivate,
    user_set_roles,
)
from accounts.tasks import users_purge_due
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from audit.models import AuditEvent
from conftest import LogCapture
from oauth_provider.models import Application
from oauth_provider.services import application_create
from oauth_provider.services.consents import consent_grant

# Revocation marks, e-mails and export files follow commits, so these tests really commit.
pytestmark = pytest.mark.django_db(transaction=True)

APP = "/_allauth/app/v1"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
GRACE = timedelta(days=14)
WRONG_PASSWORD = "Not-the-pass-0000"
UNDO_LINK = re.compile(r"https?://[^/\s]+(/accounts/deletion/undo/)\?token=([^\s\"'<&]+)")


# --- helpers ----------------------------------------------------------------------------------


def verified_user(**fields: Any) -> User:
    user = UserFactory.create(**fields)
    EmailAddress.objects.create(user=user, email=user.email.lower(), primary=True, verified=True)
    return user


def app_login(user: User, password: str = DEFAULT_PASSWORD) -> Any:
    return Client().post(
        f"{APP}/auth/login",
        {"username": user.username, "password": password},
        content_type="application/json",
        headers={"User-Agent": USER_AGENT},
    )


def sign_in(user: User) -> dict[str, Any]:
    """Sign in as an app client and confirm the password again, as deleting the account asks
    (step-up, docs/decisions/0012-mfa-and-step-up.md); the JWT pair and allauth's session token."""
    response = app_login(user)
    assert response.status_code == 200, response.content
    meta: dict[str, Any] = response.json()["meta"]
    reauthenticated = Client().post(
        f"{APP}/auth/reauthenticate",
        {"password": DEFAULT_PASSWORD},
        content_type="application/json",
        headers={"User-Agent": USER_AGENT, "X-Session-Token": meta["session_token"]},
    )
    assert reauthenticated.status_code == 200, reauthenticated.content
    return meta


def browser_sign_in(user: User) -> Client:
    browser = Client(headers={"User-Agent": USER_AGENT})
    response = browser.post("/accounts/login/", {"login": user.username, "password": DEFAULT_PASSWORD})
    assert response.status_code == 302, response.content
    assert browser.get("/api/v1/users/me/").status_code == 200  # usersessions records the browser
    return browser


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def me(token: str) -> Any:
    return bearer(token).get("/api/v1/users/me/")


def refresh(token: str) -> Any:
    return APIClient().post("/api/v1/auth/token/refresh/", {"refresh_token": token}, format="json")


def delete_me(token: str) -> Any:
    return bearer(token).delete("/api/v1/users/me/")


def request_deletion(user: User) -> str:
    """Delete the account over the API; the token of the e-mailed undo link."""
    response = delete_me(sign_in(user)["access_token"])
    assert response.status_code == 202, response.content
    return undo_token_in_last_mail()


def undo_token_in_last_mail() -> str:
    match = UNDO_LINK.search(str(mail.outbox[-1].body))
    assert match is not None, mail.outbox[-1].body
    return match.group(2)


def html_part(message: mail.EmailMessage) -> str:
    assert isinstance(message, mail.EmailMultiAlternatives)
    [(content, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return str(content)


def undo_page(token: str) -> str:
    return f"/accounts/deletion/undo/?token={token}"


def api_undo(token: Any) -> Any:
    body = {} if token is None else {"token": token}
    return APIClient().post("/api/v1/users/deletion/undo/", body, format="json")


def move_deletion_back(user: User, by: timedelta) -> datetime:
    """Pretend the deletion was asked for `by` earlier; the moved `deleted_at`."""
    deleted_at = User.objects.get(pk=user.pk).deleted_at
    assert deleted_at is not None
    User.objects.filter(pk=user.pk).update(deleted_at=deleted_at - by)
    moved = User.objects.get(pk=user.pk).deleted_at
    assert moved is not None
    return moved


def undo_token_signed_at(user: User, when: datetime) -> str:
    """The undo token as it would have been e-mailed at `when`."""
    stamp = signing.b62_encode(int(when.timestamp()))
    with mock.patch.object(signing.TimestampSigner, "timestamp", return_value=stamp):
        return deletion_undo_token_make(user=User.objects.get(pk=user.pk))


def account_state(user: User) -> tuple[Any, ...]:
    user = User.objects.get(pk=user.pk)
    return (user.is_active, user.deleted_at, user.purged_at, user.username, user.email, user.password)


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def errors(response: Any) -> list[tuple[str, str | None]]:
    return [(error["code"], error["attr"]) for error in response.json()["errors"]]


def oauth_application() -> tuple[Application, str]:
    issued = application_create(
        name="Photo printer", owner=None, redirect_uris="https://printer.example/callback"
    )
    return issued.application, issued.client_secret


def oauth_tokens(user: User, application: Application, *, suffix: str) -> tuple[str, str]:
    """An OAuth access token and its refresh token, as the toolkit stores them (hashed at rest)."""
    access_value, refresh_value = f"oauth-access-{suffix}", f"oauth-refresh-{suffix}"
    access = get_access_token_model()(
        user=user,
        application=application,
        expires=timezone.now() + timedelta(minutes=10),
        scope="openid profile users:read users:write",
    )
    set_token_value(access, access_value)
    access.save()
    refresh_token = get_refresh_token_model()(user=user, application=application, access_token=access)
    set_token_value(refresh_token, refresh_value)
    refresh_token.save()
    return access_value, refresh_value


CODE_VERIFIER = "a-code-verifier-long-enough-for-rfc-7636-0123456789"


def oauth_code(user: User, application: Application, code: str) -> None:
    """An authorization code just issued to `application` (PKCE S256, RFC 7636 §4.2)."""
    challenge = base64.urlsafe_b64encode(hashlib.sha256(CODE_VERIFIER.encode()).digest()).rstrip(b"=")
    get_grant_model().objects.create(
        user=user,
        application=application,
        code=code,
        expires=timezone.now() + timedelta(minutes=1),
        redirect_uri="https://printer.example/callback",
        scope="openid",
        code_challenge=challenge.decode(),
        code_challenge_method="S256",
    )


def oauth_exchange(application: Application, secret: str, code: str) -> Any:
    return Client().post(
        "/o/token/",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://printer.example/callback",
            "client_id": application.client_id,
            "client_secret": secret,
            "code_verifier": CODE_VERIFIER,
        },
    )


def oauth_refresh(application: Application, secret: str, refresh_value: str) -> Any:
    return Client().post(
        "/o/token/",
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_value,
            "client_id": application.client_id,
            "client_secret": secret,
        },
    )


# --- requesting deletion ----------------------------------------------------------------------


def test_delete_me_deactivates_the_account_and_answers_when_it_will_be_purged() -> None:
    user = verified_user()
    tokens = sign_in(user)
    before = timezone.now()

    response = delete_me(tokens["access_token"])

    assert response.status_code == 202
    user.refresh_from_db()
    assert user.is_active is False
    assert user.deleted_at is not None
    assert before <= user.deleted_at <= timezone.now()
    assert user.purged_at is None
    assert response.json() == {"purge_after": response.json()["purge_after"]}
    assert parse_datetime(response.json()["purge_after"]) == user.deleted_at + GRACE


def test_delete_me_uses_the_configured_grace_period(settings: Any) -> None:
    settings.ACCOUNT_DELETION_GRACE_DAYS = 30
    user = verified_user()

    response = delete_me(sign_in(user)["access_token"])

    user.refresh_from_db()
    assert user.deleted_at is not None
    assert parse_datetime(response.json()["purge_after"]) == user.deleted_at + timedelta(days=30)


def test_delete_me_rejects_the_jwt_on_the_very_next_request_and_refuses_its_refresh_token() -> None:
    user = verified_user()
    tokens = sign_in(user)
    elsewhere = sign_in(user)
    assert me(tokens["access_token"]).status_code == 200  # cached as live: revocation must reach the cache
    assert me(elsewhere["access_token"]).status_code == 200

    assert delete_me(tokens["access_token"]).status_code == 202

    for pair in (tokens, elsewhere):
        response = me(pair["access_token"])
        assert response.status_code == 401
        assert errors(response) == [("token_not_valid", None)]
        refused = refresh(pair["refresh_token"])
        assert refused.status_code == 401
        assert errors(refused) == [("token_revoked", None)]
    assert list(DeviceSession.objects.filter(user=user).values_list("revoke_reason", flat=True)) == [
        DeviceSession.RevokeReason.DEACTIVATED,
        DeviceSession.RevokeReason.DEACTIVATED,
    ]


def test_delete_me_ends_every_browser_session() -> None:
    user = verified_user()
    browser = browser_sign_in(user)
    other_browser = browser_sign_in(user)
    assert UserSession.objects.filter(user=user).count() == 2
    # Deleting the account asks for the password again (step-up).
    assert browser.post("/accounts/reauthenticate/", {"password": DEFAULT_PASSWORD}).status_code == 302

    response = browser.delete("/api/v1/users/me/")

    assert response.status_code == 202
    assert browser.get("/api/v1/users/me/").status_code == 401
    assert other_browser.get("/api/v1/users/me/").status_code == 401
    assert UserSession.objects.filter(user=user).count() == 0
    assert Session.objects.count() == 0


def test_delete_me_revokes_the_oauth_access_and_refresh_tokens() -> None:
    user = verified_user()
    bystander = verified_user()
    application, secret = oauth_application()
    access, refresh_value = oauth_tokens(user, application, suffix="user")
    _, bystander_refresh = oauth_tokens(bystander, application, suffix="bystander")
    assert me(access).status_code == 200

    assert delete_me(sign_in(user)["access_token"]).status_code == 202

    response = me(access)
    assert response.status_code == 401
    assert get_access_token_model().objects.filter(user=user).count() == 0
    refresh_row = get_refresh_token_model().objects.get(user=user)
    assert refresh_row.revoked is not None
    refused = oauth_refresh(application, secret, refresh_value)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert oauth_refresh(application, secret, bystander_refresh).status_code == 200  # the setup works


def test_delete_me_voids_authorization_codes_not_yet_exchanged() -> None:
    user = verified_user()
    bystander = verified_user()
    application, secret = oauth_application()
    oauth_code(user, application, "code-of-the-deleted")
    oauth_code(bystander, application, "code-of-the-bystander")

    assert delete_me(sign_in(user)["access_token"]).status_code == 202

    refused = oauth_exchange(application, secret, "code-of-the-deleted")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert get_access_token_model().objects.filter(user=user).count() == 0
    assert oauth_exchange(application, secret, "code-of-the-bystander").status_code == 200  # the setup works


def test_delete_me_emails_an_undo_link_and_records_the_request() -> None:
    user = verified_user()
    tokens = sign_in(user)
    mail.outbox.clear()

    response = delete_me(tokens["access_token"])

    assert response.status_code == 202
    [message] = mail.outbox
    assert message.to == [user.email]
    assert message.subject == "[Identity] Your account is scheduled for deletion"
    assert "Keep my account" in html_part(message)
    token = undo_token_in_last_mail()
    assert UNDO_LINK.search(html_part(message)) is not None
    assert Client().get(undo_page(token)).status_code == 200
    user.refresh_from_db()
    assert user.deleted_at is not None
    [event] = events("accounts.user.deletion_requested")
    assert (event.actor_type, event.actor_id) == ("user", str(user.pk))
    assert (event.target_type, event.target_id) == ("accounts.user", str(user.pk))
    assert event.changes == {"is_active": [True, False]}
    assert event.metadata == {
        "purge_after": (user.deleted_at + GRACE).isoformat(),
        "revoked": {
            "device_sessions": 1,
            "browser_sessions": 1,  # the allauth session behind the app's sign-in
            "oauth_access": 0,
            "oauth_refresh": 0,
            "oauth_authorization_codes": 0,
        },
    }
    assert token not in str(event.metadata)


def test_delete_me_needs_a_signed_in_caller() -> None:
    user = verified_user()

    response = APIClient().delete("/api/v1/users/me/")

    assert response.status_code == 401
    assert errors(response) == [("not_authenticated", None)]
    assert account_state(user)[:3] == (True, None, None)
    assert mail.outbox == []


def test_delete_me_is_refused_to_third_party_oauth_tokens() -> None:
    user = verified_user()
    application, _ = oauth_application()
    access, _ = oauth_tokens(user, application, suffix="third-party")
    before = account_state(user)

    response = bearer(access).delete("/api/v1/users/me/")

    assert response.status_code == 403
    assert errors(response) == [("first_party_only", None)]
    assert account_state(user) == before
    assert me(access).status_code == 200
    assert events("accounts.user.deletion_requested") == []


# --- undo in the browser ----------------------------------------------------------------------


def test_undo_page_shows_the_account_and_restores_nothing_until_posted() -> None:
    user = verified_user()
    token = request_deletion(user)
    before = account_state(user)

    response = Client().get(undo_page(token))

    assert response.status_code == 200
    page = response.content.decode()
    assert f"The account {user.username} is scheduled for deletion" in page
    assert f'name="token" value="{token}"' in page
    assert response["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
    assert response["Referrer-Policy"] == "no-referrer"
    assert account_state(user) == before


def test_undo_page_post_restores_the_account_which_signs_in_again() -> None:
    user = verified_user()
    old_tokens = sign_in(user)
    assert delete_me(old_tokens["access_token"]).status_code == 202
    token = undo_token_in_last_mail()
    browser = Client(enforce_csrf_checks=True)
    form = browser.get(undo_page(token))
    csrf_token = form.context["csrf_token"]

    response = browser.post("/accounts/deletion/undo/", {"token": token, "csrfmiddlewaretoken": csrf_token})

    assert response.status_code == 200
    assert "is no longer scheduled for deletion" in response.content.decode()
    user.refresh_from_db()
    assert (user.is_active, user.deleted_at, user.purged_at) == (True, None, None)
    [event] = events("accounts.user.deletion_cancelled")
    assert (event.actor_id, event.target_id) == (str(user.pk), str(user.pk))
    assert event.changes["is_active"] == [False, True]
    assert me(old_tokens["access_token"]).status_code == 401  # the old sessions stay ended
    assert me(sign_in(user)["access_token"]).status_code == 200


def test_undo_page_post_needs_the_csrf_token() -> None:
    user = verified_user()
    token = request_deletion(user)
    before = account_state(user)

    response = Client(enforce_csrf_checks=True).post("/accounts/deletion/undo/", {"token": token})

    assert response.status_code == 403
    assert account_state(user) == before


def _tampered(token: str) -> str:
    return token[:-2] + ("AA" if token[-2:] != "AA" else "BB")


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("tampered", "undo_link_invalid"),
        ("garbage", "undo_link_invalid"),
        ("missing", "undo_link_invalid"),
        ("unknown_user", "undo_link_invalid"),
        ("replaced", "undo_link_invalid"),
        ("expired", "undo_link_expired"),
        ("used", "undo_link_used"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_undo_page_refuses_a_bad_link_with_its_reason_and_changes_nothing(
    case: str, code: str, method: str
) -> None:
    user = verified_user()
    token = request_deletion(user)
    if case == "tampered":
        token = _tampered(token)
    elif case == "garbage":
        token = "not-a-token"
    elif case == "missing":
        token = ""
    elif case == "unknown_user":
        token = signing.dumps(
            {"user": "00000000-0000-0000-0000-000000000000", "deletion": 1},
            salt="accounts.deletion.undo",
            compress=True,
        )
    elif case == "replaced":
        assert api_undo(token).status_code == 204
        request_deletion(user)  # a newer request: only its link works
    elif case == "expired":
        deleted_at = move_deletion_back(user, GRACE + timedelta(minutes=1))
        token = undo_token_signed_at(user, deleted_at)  # the link e-mailed back then
    elif case == "used":
        assert api_undo(token).status_code == 204
    before = account_state(user)
    browser = Client()

    if method == "GET":
        response = browser.get(undo_page(token))
    else:
        response = browser.post("/accounts/deletion/undo/", {"token": token})

    assert response.status_code == 400
    assert f'data-code="{code}"' in response.content.decode()
    assert account_state(user) == before


def test_undo_link_works_until_the_last_moment_of_the_grace_period() -> None:
    user = verified_user()
    request_deletion(user)
    deleted_at = move_deletion_back(user, GRACE - timedelta(minutes=1))
    token = undo_token_signed_at(user, deleted_at)

    assert api_undo(token).status_code == 204
    assert User.objects.get(pk=user.pk).is_active is True


# --- undo over the API ------------------------------------------------------------------------


def test_api_undo_restores_the_account() -> None:
    user = verified_user()
    token = request_deletion(user)

    response = api_undo(token)

    assert response.status_code == 204
    assert response.content == b""
    user.refresh_from_db()
    assert (user.is_active, user.deleted_at) == (True, None)
    assert len(events("accounts.user.deletion_cancelled")) == 1
    assert me(sign_in(user)["access_token"]).status_code == 200


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("tampered", "undo_link_invalid"),
        ("replaced", "undo_link_invalid"),
        ("expired", "undo_link_expired"),
        ("used", "undo_link_used"),
        ("missing", "required"),
        ("blank", "blank"),
    ],
)
def test_api_undo_refuses_a_bad_token_in_the_error_shape_and_changes_nothing(case: str, code: str) -> None:
    user = verified_user()
    token: str | None = request_deletion(user)
    assert token is not None
    if case == "tampered":
        token = _tampered(token)
    elif case == "replaced":
        assert api_undo(token).status_code == 204
        request_deletion(user)
    elif case == "expired":
        deleted_at = move_deletion_back(user, GRACE + timedelta(seconds=1))
        token = undo_token_signed_at(user, deleted_at)
    elif case == "used":
        assert api_undo(token).status_code == 204
    elif case == "missing":
        token = None
    elif case == "blank":
        token = " "
    before = account_state(user)
    audit_count = AuditEvent.objects.count()

    response = api_undo(token)

    assert response.status_code == 400
    assert response.json()["type"] == "validation_error"
    assert errors(response) == [(code, "token")]
    assert account_state(user) == before
    assert AuditEvent.objects.count() == audit_count


def test_an_undo_link_does_not_reactivate_an_account_staff_locked_down_meanwhile() -> None:
    user = verified_user()
    token = request_deletion(user)
    staff = UserFactory.create(is_staff=True)
    user_lock_down(user=User.objects.get(pk=user.pk), reason="Compromised", actor=staff)

    response = api_undo(token)

    assert response.status_code == 400
    assert errors(response) == [("account_deactivated", "token")]
    page = Client().get(undo_page(token))
    assert page.status_code == 400
    assert 'data-code="account_deactivated"' in page.content.decode()
    user.refresh_from_db()
    assert (user.is_active, user.deactivation_reason) == (False, "Compromised")
    assert user.deleted_at is not None
    mail.outbox.clear()
    assert app_login(user).status_code == 401  # the usual "inactive" answer, not the undo offer
    assert mail.outbox == []


def test_an_undo_link_does_not_reactivate_an_account_staff_deactivated_meanwhile() -> None:
    user = verified_user()
    token = request_deletion(user)
    staff = UserFactory.create(is_staff=True)

    user_deactivate(user=User.objects.get(pk=user.pk), reason="Fraud", actor=staff)

    [event] = events("accounts.user.deactivated")
    assert (event.actor_id, event.changes, event.metadata["reason"]) == (str(staff.pk), {}, "Fraud")
    response = api_undo(token)
    assert response.status_code == 400
    assert errors(response) == [("account_deactivated", "token")]
    user.refresh_from_db()
    assert (user.is_active, user.deactivation_reason) == (False, "Fraud")


def test_staff_reactivating_an_account_pending_deletion_cancels_the_deletion() -> None:
    user = verified_user()
    token = request_deletion(user)
    deleted_at = User.objects.get(pk=user.pk).deleted_at
    staff = UserFactory.create(is_staff=True)

    user_reactivate(user=User.objects.get(pk=user.pk), actor=staff)

    user.refresh_from_db()
    assert (user.is_active, user.deleted_at) == (True, None)
    [event] = events("accounts.user.reactivated")
    assert event.changes == {"is_active": [False, True], "deleted_at": [deleted_at.isoformat(), None]}
    assert errors(api_undo(token)) == [("undo_link_used", "token")]
    assert user.pk not in set(
        users_due_for_purge(now=timezone.now() + GRACE * 2).values_list("pk", flat=True)
    )


def test_staff_lock_down_voids_authorization_codes_not_yet_exchanged() -> None:
    user = verified_user()
    application, secret = oauth_application()
    oauth_code(user, application, "code-of-the-locked")

    result = user_lock_down(user=user, reason="Compromised", actor=UserFactory.create(is_staff=True))

    assert result["revoked"]["oauth_authorization_codes"] == 1
    refused = oauth_exchange(application, secret, "code-of-the-locked")
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")


# --- signing in during the grace period -------------------------------------------------------


def test_browser_sign_in_with_the_right_password_offers_the_undo() -> None:
    user = verified_user()
    request_deletion(user)
    mail.outbox.clear()
    browser = Client()

    response = browser.post("/accounts/login/", {"login": user.username, "password": DEFAULT_PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/deletion/pending/"
    page = browser.get("/accounts/deletion/pending/")
    assert page.status_code == 200
    purge_after = User.objects.get(pk=user.pk).deleted_at + GRACE
    assert f"will be erased on {purge_after:%-d %B %Y, %H:%M} UTC" in page.content.decode()
    assert browser.get("/api/v1/users/me/").status_code == 401  # not signed in
    [message] = mail.outbox
    assert message.to == [user.email]
    assert message.subject == "[Identity] Keep your account: a new link"
    assert api_undo(undo_token_in_last_mail()).status_code == 204
    assert User.objects.get(pk=user.pk).is_active is True


def test_headless_sign_in_with_the_right_password_answers_403_account_pending_deletion() -> None:
    user = verified_user()
    request_deletion(user)
    mail.outbox.clear()

    response = app_login(user)

    assert response.status_code == 403
    body = response.json()
    assert [(error["code"], error["param"]) for error in body["errors"]] == [
        ("account_pending_deletion", None)
    ]
    purge_after = User.objects.get(pk=user.pk).deleted_at + GRACE
    assert body["meta"] == {"is_authenticated": False, "purge_after": purge_after.isoformat()}
    assert "access_token" not in str(body)
    [message] = mail.outbox
    assert message.subject == "[Identity] Keep your account: a new link"
    assert DeviceSession.objects.filter(user=user, revoked_at__isnull=True).count() == 0


def test_signing_in_again_and_again_sends_one_reminder_per_interval() -> None:
    from django.core.cache import cache

    from accounts.services.deletion import DELETION_REMINDER_CACHE_PREFIX

    user = verified_user()
    request_deletion(user)
    mail.outbox.clear()

    answers = [app_login(user).status_code for _ in range(3)]
    page = Client().post("/accounts/login/", {"login": user.username, "password": DEFAULT_PASSWORD})

    assert answers == [403, 403, 403]  # each still says the account is pending deletion
    assert page["Location"] == "/accounts/deletion/pending/"
    [reminder] = mail.outbox
    assert reminder.subject == "[Identity] Keep your account: a new link"
    key = f"{DELETION_REMINDER_CACHE_PREFIX}{user.pk}"
    assert cache.get(key) is not None
    cache.delete(key)  # as when DELETION_REMINDER_INTERVAL is over
    assert app_login(user).status_code == 403
    assert len(mail.outbox) == 2
    assert api_undo(undo_token_in_last_mail()).status_code == 204


def test_sign_in_with_a_wrong_password_fails_as_usual_and_sends_nothing() -> None:
    user = verified_user()
    active = verified_user()
    request_deletion(user)
    mail.outbox.clear()

    page = Client().post("/accounts/login/", {"login": user.username, "password": WRONG_PASSWORD})
    page_active = Client().post("/accounts/login/", {"login": active.username, "password": WRONG_PASSWORD})
    headless = app_login(user, WRONG_PASSWORD)
    headless_active = app_login(active, WRONG_PASSWORD)

    assert page.status_code == page_active.status_code == 200
    assert page.context["form"].errors == page_active.context["form"].errors
    assert headless.status_code == headless_active.status_code == 400
    assert headless.json()["errors"] == headless_active.json()["errors"]
    assert mail.outbox == []


def test_sign_in_to_an_account_deactivated_by_staff_gets_the_usual_answer_and_no_email() -> None:
    user = verified_user()
    staff = UserFactory.create(is_staff=True)
    user_lock_down(user=user, reason="Spam", actor=staff)
    mail.outbox.clear()

    headless = app_login(user)
    page = Client().post("/accounts/login/", {"login": user.username, "password": DEFAULT_PASSWORD})

    assert headless.status_code == 401
    assert page["Location"] == "/accounts/inactive/"
    assert mail.outbox == []


def test_pending_page_without_a_pending_sign_in_sends_to_the_sign_in_page() -> None:
    response = Client().get("/accounts/deletion/pending/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"


def test_sign_in_after_the_grace_period_offers_no_undo() -> None:
    user = verified_user()
    request_deletion(user)
    move_deletion_back(user, GRACE + timedelta(minutes=1))
    mail.outbox.clear()

    headless = app_login(user)
    page = Client().post("/accounts/login/", {"login": user.username, "password": DEFAULT_PASSWORD})

    assert headless.status_code == 401  # allauth's answer for an inactive account: not signed in
    assert headless.json()["meta"] == {"is_authenticated": False}
    assert page.status_code == 302
    assert page["Location"] == "/accounts/inactive/"
    assert mail.outbox == []


# --- purge ------------------------------------------------------------------------------------


@pytest.fixture
def media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def organization(name: str, *members: tuple[User, str]) -> Organization:
    org = Organization.objects.create(name=name, slug=name.lower().replace(" ", "-"))
    for position, (member, role) in enumerate(members):
        membership = Membership.objects.create(organization=org, user=member, role=role)
        # Joined one day apart, in the order given.
        Membership.objects.filter(pk=membership.pk).update(
            created_at=timezone.now() - timedelta(days=100 - position)
        )
    return org


def test_purge_anonymises_the_account_and_deletes_its_personal_data(media_root: Path) -> None:
    user = verified_user(description="Likes long walks")
    EmailAddress.objects.create(user=user, email="second@example.com", primary=False, verified=True)
    social_app = SocialApp.objects.create(provider="github", name="GitHub", client_id="id", secret="s")
    social = SocialAccount.objects.create(
        user=user, provider="github", uid="4242", extra_data={"login": "ada"}
    )
    SocialToken.objects.create(app=social_app, account=social, token="gho_secret")
    other, third = verified_user(), verified_user()
    user_block(blocker=user, blocked=other)
    user_block(blocker=third, blocked=user)
    application, _ = oauth_application()
    oauth_tokens(user, application, suffix="purged")
    consent_grant(user=user, application=application, scopes=["openid"], prompted=True)
    get_id_token_model().objects.create(
        user=user,
        application=application,
        jti="11111111-1111-1111-1111-111111111111",
        expires=timezone.now() + timedelta(minutes=5),
        scope="openid",
    )
    export = DataExport.objects.create(user=user, status=DataExport.Status.READY)
    export.file.save("bundle.json", ContentFile(b"{}"))
    export_path = Path(export.file.path)
    assert export_path.exists()
    old_admin, new_admin, member = verified_user(), verified_user(), verified_user()
    shared = organization(
        "Shared", (member, "member"), (user, "owner"), (new_admin, "admin"), (old_admin, "admin")
    )
    Membership.objects.filter(user=new_admin).update(created_at=timezone.now() - timedelta(days=10))
    Membership.objects.filter(user=old_admin).update(created_at=timezone.now() - timedelta(days=20))
    members_only = organization("Members only", (user, "owner"), (member, "member"), (old_admin, "member"))
    co_owned = organization("Co-owned", (user, "owner"), (other, "owner"))
    solo = organization("Solo", (user, "owner"))
    joined = organization("Joined", (other, "owner"), (user, "member"))
    in_a_week = timezone.now() + timedelta(days=7)
    Invitation.objects.create(
        organization=joined, email="SECOND@example.com", token_hash="a" * 64, expires_at=in_a_week
    )
    Invitation.objects.create(
        organization=joined,
        email=user.email,
        token_hash="b" * 64,
        expires_at=in_a_week,
        accepted_at=timezone.now(),
        accepted_by=user,
    )
    stranger = Invitation.objects.create(
        organization=joined, email="stranger@example.com", token_hash="c" * 64, expires_at=in_a_week
    )
    browser_sign_in(user)
    old_username, old_email = user.username, user.email
    request_deletion(user)
    # Set up after the sign-ins above, which a second factor would stop (and staff roles, which
    # require one before the API serves them), and after the deletion request, which voids
    # authorization codes (a code issued in a race with it).
    user_set_roles(user=user, roles=["moderator", "tester"])
    oauth_code(user, application, "grant-code")
    Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DP"})
    UserSession.objects.create(user=user, session_key="stale", ip="127.0.0.1", user_agent="x")
    move_deletion_back(user, GRACE + timedelta(seconds=1))

    purged = users_purge_due.delay().get(timeout=10)

    assert purged == 1
    user.refresh_from_db()
    assert re.fullmatch(r"deleted_[0-9a-f]{24}", user.username)
    assert user.username == f"deleted_{user.pk.hex[:24]}"
    assert user.display_name == user.username
    assert user.email == f"{user.username}@deleted.invalid"
    assert user.description == ""
    assert user.has_usable_password() is False
    assert (user.is_active, user.is_staff, user.is_superuser, user.last_login) == (False, False, False, None)
    assert user.purged_at is not None
    assert user.groups.count() == 0
    assert EmailAddress.objects.filter(user=user).count() == 0
    assert SocialAccount.objects.filter(user=user).count() == 0
    assert SocialToken.objects.count() == 0
    assert Authenticator.objects.filter(user=user).count() == 0
    assert DeviceSession.objects.filter(user=user).count() == 0
    assert UserSession.objects.filter(user=user).count() == 0
    assert UserBlock.objects.count() == 0
    assert DataExport.objects.filter(user=user).count() == 0
    assert not export_path.exists()
    for model in (
        get_access_token_model(),
        get_refresh_token_model(),
        get_grant_model(),
        get_id_token_model(),
    ):
        assert model.objects.filter(user=user).count() == 0
    assert Membership.objects.filter(user=user).count() == 0
    assert list(Invitation.objects.all()) == [stranger]
    assert dict(Membership.objects.filter(organization=shared).values_list("user__username", "role")) == {
        member.username: "member",
        new_admin.username: "admin",
        old_admin.username: "owner",
    }
    assert dict(
        Membership.objects.filter(organization=members_only).values_list("user__username", "role")
    ) == {member.username: "owner", old_admin.username: "member"}
    assert dict(Membership.objects.filter(organization=co_owned).values_list("user__username", "role")) == {
        other.username: "owner"
    }
    assert Organization.objects.filter(pk=solo.pk).exists() is False
    assert dict(Membership.objects.filter(organization=joined).values_list("user__username", "role")) == {
        other.username: "owner"
    }
    [event] = events("accounts.user.purged")
    assert (event.actor_type, event.target_id, event.target_label) == ("system", str(user.pk), user.username)
    assert event.metadata == {
        "removed": {
            "email_addresses": 2,
            "social_accounts": 1,
            "mfa_authenticators": 1,
            "device_sessions": 1,
            "browser_sessions": 1,
            "blocks": 2,
            "memberships": 5,
            "invitations": 2,
            "data_exports": 1,
            "oauth_access": 0,  # deleted when the deletion was asked for
            "oauth_refresh": 1,
            "oauth_id": 1,
            "oauth_grants": 1,
            "oauth_device_grants": 0,
            "oauth_consents": 1,
            "files": 0,
        }
    }
    recorded = f"{event.changes} {event.metadata} {event.target_label} {event.actor_label}"
    assert old_username not in recorded
    assert old_email not in recorded
    successions = events("accounts.membership.owner_succeeded")
    assert {event.target_id: event.metadata["user"] for event in successions} == {
        str(shared.pk): str(old_admin.pk),
        str(members_only.pk): str(member.pk),
    }
    assert {event.target_id: event.changes for event in successions} == {
        str(shared.pk): {"role": ["admin", "owner"]},
        str(members_only.pk): {"role": ["member", "owner"]},
    }
    [deleted_org] = events("accounts.organization.deleted")
    assert deleted_org.target_id == str(solo.pk)


def test_purge_leaves_accounts_not_yet_due_restored_or_deactivated_by_staff_alone() -> None:
    not_due, restored, active = verified_user(), verified_user(), verified_user()
    deactivated = verified_user(is_active=False)
    request_deletion(not_due)
    move_deletion_back(not_due, GRACE - timedelta(minutes=1))
    token = request_deletion(restored)
    assert api_undo(token).status_code == 204
    before = {user.pk: account_state(user) for user in (not_due, restored, active, deactivated)}
    addresses = EmailAddress.objects.count()

    assert users_purge_due.delay().get(timeout=10) == 0

    assert {user.pk: account_state(user) for user in (not_due, restored, active, deactivated)} == before
    assert EmailAddress.objects.count() == addresses
    assert events("accounts.user.purged") == []


def test_purge_is_idempotent() -> None:
    user = verified_user()
    request_deletion(user)
    move_deletion_back(user, GRACE + timedelta(seconds=1))

    assert users_purge_due.delay().get(timeout=10) == 1
    first = account_state(user)
    assert users_purge_due.delay().get(timeout=10) == 0

    assert account_state(user) == first
    assert len(events("accounts.user.purged")) == 1


def test_purge_goes_through_every_due_account_in_batches() -> None:
    users = [verified_user() for _ in range(3)]
    for user in users:
        request_deletion(user)
        move_deletion_back(user, GRACE + timedelta(seconds=1))
    from accounts.services.deletion import users_purge_due as purge

    assert purge(batch_size=2) == 3
    assert User.objects.filter(purged_at__isnull=False).count() == 3


def test_undo_after_the_purge_fails_with_undo_link_expired() -> None:
    user = verified_user()
    token = request_deletion(user)
    move_deletion_back(user, GRACE + timedelta(seconds=1))
    users_purge_due.delay().get(timeout=10)
    before = account_state(user)

    api = api_undo(token)
    page = Client().get(undo_page(token))

    assert errors(api) == [("undo_link_expired", "token")]
    assert page.status_code == 400
    assert 'data-code="undo_link_expired"' in page.content.decode()
    assert account_state(user) == before


def test_a_purged_account_cannot_sign_in_with_its_old_credentials() -> None:
    user = verified_user()
    request_deletion(user)
    move_deletion_back(user, GRACE + timedelta(seconds=1))
    users_purge_due.delay().get(timeout=10)
    mail.outbox.clear()

    by_username = app_login(user)
    by_email = Client().post(
        f"{APP}/auth/login",
        {"email": user.email, "password": DEFAULT_PASSWORD},
        content_type="application/json",
    )

    assert by_username.status_code == by_email.status_code == 400
    assert mail.outbox == []


def test_the_purge_and_the_export_expiry_are_beat_jobs_of_registered_tasks() -> None:
    from config.celery import app

    schedule = {entry["task"] for entry in app.conf.beat_schedule.values()}

    assert {"accounts.users_purge_due", "accounts.data_exports_expire"} <= schedule
    assert {"accounts.users_purge_due", "accounts.data_exports_expire", "accounts.data_export_build"} <= set(
        app.tasks
    )


def test_undo_tokens_never_reach_the_logs(log_capture: LogCapture) -> None:
    user = verified_user()
    token = request_deletion(user)
    tampered = _tampered(token)

    Client().get(undo_page(tampered))
    Client().post("/accounts/deletion/undo/", {"token": tampered})
    api_undo(tampered)
    Client().get(undo_page(token))
    api_undo(token)

    assert "Bad Request: /accounts/deletion/undo/" in log_capture.output  # the 400s were logged
    assert token not in log_capture.output
    assert tampered not in log_capture.output
