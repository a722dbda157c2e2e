"""The device authorization grant (RFC 8628), the whole dance over HTTP (docs/decisions/0015)."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_device_grant_model

from accounts.models import User
from accounts.tests.factories import UserFactory
from oauth_provider.models import Application, Consent, TokenFamily
from oauth_provider.tests.browser import id_token_claims
from oauth_provider.tests.token_flows import (
    RegisteredClient,
    access_token_row,
    events,
    oauth_error,
    refresh,
    registered_client,
    signed_in,
    token_request,
    userinfo,
)
from oauth_provider.views.device import USER_CODE_ALPHABET, user_code_generate, user_code_normalise

pytestmark = pytest.mark.django_db

DEVICE_GRANT = Application.GRANT_DEVICE_CODE
DEVICE_URL = "/o/device-authorization/"
USER_CODE_URL = "/o/device/"
SITE = "http://127.0.0.1:8000"


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: the left half of the SHA-256 of the access token, base64url."""
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def tv_app(**kwargs: Any) -> RegisteredClient:
    kwargs.setdefault("confidential", False)
    return registered_client(grant_type=DEVICE_GRANT, name="Living room TV", **kwargs)


def start(client: RegisteredClient, scope: str = "openid users:read") -> Any:
    """The device asks for codes (RFC 8628 §3.1): a form-encoded POST."""
    data = {**client.credentials(), **({"scope": scope} if scope else {})}
    return Client().post(DEVICE_URL, urlencode(data), content_type="application/x-www-form-urlencoded")


def poll(client: RegisteredClient, device_code: str) -> Any:
    return token_request(
        {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": device_code,
            **client.credentials(),
        }
    )


def wait_interval(device_code: str) -> None:
    """As if the device had waited its interval since its last poll."""
    grant = get_device_grant_model().objects.get(device_code=device_code)
    get_device_grant_model().objects.filter(pk=grant.pk).update(
        last_checked=timezone.now() - timedelta(seconds=grant.interval)
    )


def enter_code(browser: Client, user_code: str) -> Any:
    return browser.post(USER_CODE_URL, {"user_code": user_code})


def test_the_whole_device_dance() -> None:
    client = tv_app()
    user = UserFactory.create()

    started = start(client)

    assert started.status_code == 200, started.content
    body = started.json()
    assert set(body) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
        "scope",
    }
    assert re.fullmatch(f"[{USER_CODE_ALPHABET}]{{4}}-[{USER_CODE_ALPHABET}]{{4}}", body["user_code"])
    assert body["verification_uri"] == f"{SITE}/o/device/"
    assert body["verification_uri_complete"] == f"{SITE}/o/device/?user_code={body['user_code']}"
    assert (body["expires_in"], body["interval"], body["scope"]) == (600, 5, "openid users:read")
    assert started["Cache-Control"] == "no-store"

    # The device polls while the user has not answered.
    wait_interval(body["device_code"])
    pending = poll(client, body["device_code"])
    assert pending.status_code == 400
    assert pending.json() == oauth_error("authorization_pending")

    # The user opens the page: sign-in first (ours, second factor included).
    anonymous = Client().get(body["verification_uri_complete"])
    assert anonymous.status_code == 302
    assert anonymous["Location"] == f"/accounts/login/?next=/o/device/%3Fuser_code%3D{body['user_code']}"

    browser, _ = signed_in(user)
    page = browser.get(f"{USER_CODE_URL}?user_code={body['user_code']}")
    assert page.status_code == 200
    assert b'class="site-header"' in page.content  # the project's base template
    assert page.context["form"]["user_code"].value() == body["user_code"]

    typed = body["user_code"].lower().replace("-", " ")  # as a person might type it
    entered = enter_code(browser, typed)
    confirm_url = f"/o/device-confirm/{client.client_id}/{body['user_code']}"
    assert entered.status_code == 302
    assert entered["Location"] == confirm_url

    confirm = browser.get(confirm_url)
    assert confirm.status_code == 200
    assert confirm.context["application"] == client.application
    assert confirm.context["scope_descriptions"] == [
        ("openid", "Sign you in with your account"),
        ("users:read", "Read user profiles"),
    ]
    assert b"Living room TV" in confirm.content
    assert b"Read user profiles" in confirm.content

    allowed = browser.post(confirm_url, {"action": "accept"})
    assert allowed.status_code == 302
    assert allowed["Location"] == f"/o/device-grant-status/{client.client_id}/{body['user_code']}"
    assert b"Device connected" in browser.get(allowed["Location"]).content

    # The device's next poll gets its tokens, once.
    wait_interval(body["device_code"])
    issued = poll(client, body["device_code"])
    assert issued.status_code == 200, issued.content
    tokens = issued.json()
    assert set(tokens) == {"access_token", "refresh_token", "id_token", "expires_in", "token_type", "scope"}
    assert (tokens["scope"], tokens["expires_in"]) == ("openid users:read", 600)
    assert access_token_row(tokens["access_token"]).user == user
    assert userinfo(tokens["access_token"]).status_code == 200
    assert not get_device_grant_model().objects.exists()  # a device code buys one set of tokens
    assert poll(client, body["device_code"]).json() == oauth_error("invalid_grant")

    assert Consent.objects.get(user=user, application=client.application).scope_list == [
        "openid",
        "users:read",
    ]
    [issued_event] = events("oauth.token.issued")
    assert issued_event.metadata["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"
    assert TokenFamily.objects.get().grant_type == "urn:ietf:params:oauth:grant-type:device_code"
    assert events("oauth.consent.granted")[0].actor_id == str(user.pk)


def test_polling_too_fast_is_slow_down_and_adds_five_seconds() -> None:
    client = tv_app()
    device_code = start(client).json()["device_code"]

    first = poll(client, device_code)  # at once: sooner than the interval
    second = poll(client, device_code)

    assert first.status_code == second.status_code == 400
    assert first.json() == second.json() == oauth_error("slow_down")
    assert get_device_grant_model().objects.get(device_code=device_code).interval == 15
    wait_interval(device_code)
    assert poll(client, device_code).json() == oauth_error("authorization_pending")


def test_a_denied_device_gets_access_denied() -> None:
    client = tv_app()
    body = start(client).json()
    browser, user = signed_in()
    enter_code(browser, body["user_code"])

    browser.post(f"/o/device-confirm/{client.client_id}/{body['user_code']}", {"action": "deny"})

    wait_interval(body["device_code"])
    response = poll(client, body["device_code"])
    assert response.status_code == 400
    assert response.json() == oauth_error("access_denied")
    assert get_access_token_model().objects.count() == 0
    assert not Consent.objects.filter(user=user).exists()
    [denied] = events("oauth.device.denied")
    assert denied.metadata == {"client_id": client.client_id, "scopes": ["openid", "users:read"]}


def test_an_expired_device_code_is_expired_token_and_its_user_code_is_refused() -> None:
    client = tv_app()
    body = start(client).json()
    get_device_grant_model().objects.update(expires=timezone.now() - timedelta(seconds=1))
    browser, _ = signed_in()

    entered = enter_code(browser, body["user_code"])
    response = poll(client, body["device_code"])

    assert entered.status_code == 200
    assert entered.context["form"].errors == {
        "user_code": ["This code has expired. Start again on your device."]
    }
    assert response.status_code == 400
    assert response.json() == oauth_error("expired_token")


def test_an_unknown_user_code_is_refused_on_the_page() -> None:
    browser, _ = signed_in()

    response = enter_code(browser, "BCDF-GHJK")

    assert response.status_code == 200
    assert response.context["form"].errors == {
        "user_code": ["No device is waiting for this code. Check it and try again."]
    }


def test_guessing_user_codes_is_limited(settings: Any) -> None:
    settings.RATELIMIT_DEVICE_USER_CODE = "3/m"
    browser, _ = signed_in()

    answers = [enter_code(browser, f"BCDF-GHJ{letter}").status_code for letter in "KMNP"]

    assert answers == [200, 200, 200, 429]


def test_a_code_claimed_by_one_user_cannot_be_taken_over_by_another() -> None:
    client = tv_app()
    body = start(client).json()
    first, _ = signed_in()
    second, _ = signed_in()
    enter_code(first, body["user_code"])

    response = enter_code(second, body["user_code"])

    assert response.status_code == 200
    assert response.context["form"].errors == {"user_code": ["This code has already been used."]}
    confirm = second.get(f"/o/device-confirm/{client.client_id}/{body['user_code']}")
    assert confirm.status_code == 404


def test_a_device_code_of_another_client_is_invalid_grant() -> None:
    tv, other = tv_app(), tv_app()
    device_code = start(tv).json()["device_code"]

    assert poll(other, device_code).json() == oauth_error("invalid_grant")
    assert poll(tv, "no-such-code").json() == oauth_error("invalid_grant")


def test_a_deactivated_user_approval_gives_no_tokens() -> None:
    client = tv_app()
    body = start(client).json()
    browser, user = signed_in()
    enter_code(browser, body["user_code"])
    browser.post(f"/o/device-confirm/{client.client_id}/{body['user_code']}", {"action": "accept"})
    User.objects.filter(pk=user.pk).update(is_active=False)

    wait_interval(body["device_code"])
    response = poll(client, body["device_code"])

    assert response.json() == oauth_error("access_denied")
    assert get_access_token_model().objects.count() == 0


def test_only_a_client_registered_for_the_device_grant_may_start_one() -> None:
    web_app = registered_client(confidential=False)

    response = start(web_app)

    assert response.status_code == 400
    assert response.json() == oauth_error(
        "unauthorized_client", "This client is not registered for the device authorization grant."
    )
    assert not get_device_grant_model().objects.exists()


def test_a_device_may_not_ask_for_scopes_its_client_is_not_allowed() -> None:
    response = start(tv_app(allowed_scopes="openid"), scope="openid users:write")

    assert response.status_code == 400
    assert response.json() == oauth_error("invalid_scope")
    assert not get_device_grant_model().objects.exists()


def test_a_confidential_device_client_authenticates() -> None:
    client = tv_app(confidential=True)

    assert start(client).status_code == 200
    wrong = Client().post(
        DEVICE_URL,
        urlencode({"client_id": client.client_id, "client_secret": "wrong"}),
        content_type="application/x-www-form-urlencoded",
    )
    assert wrong.status_code == 401
    assert wrong.json() == oauth_error("invalid_client")


def test_user_codes_are_easy_to_type() -> None:
    codes = {user_code_generate() for _ in range(200)}

    assert len(codes) == 200
    assert all(re.fullmatch("[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", code) for code in codes)
    assert user_code_normalise(" wdjb mjht ") == "WDJB-MJHT"
    assert user_code_normalise("wdjb-mjht") == "WDJB-MJHT"


def approved_poll(client: RegisteredClient, user: User, scope: str) -> Any:
    """Start, have `user` enter the code and allow, then poll once the interval has passed."""
    body = start(client, scope=scope).json()
    browser, _ = signed_in(user)
    enter_code(browser, body["user_code"])
    browser.post(f"/o/device-confirm/{client.client_id}/{body['user_code']}", {"action": "accept"})
    wait_interval(body["device_code"])
    return poll(client, body["device_code"])


def test_a_device_granted_openid_gets_an_id_token_as_its_refresh_does() -> None:
    """Issue 12 item 12: OIDC Core §3.1.3.3 for the device grant, as the refresh of the same grant
    (§12.2) already gave."""
    client = tv_app()
    user = UserFactory.create()

    issued = approved_poll(client, user, "openid users:read")

    assert issued.status_code == 200, issued.content
    tokens = issued.json()
    assert set(tokens) == {"access_token", "refresh_token", "id_token", "expires_in", "token_type", "scope"}
    claims = id_token_claims(tokens["id_token"], client.application)
    assert (claims["iss"], claims["sub"]) == (SITE, str(user.pk))
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    assert str(access_token_row(tokens["access_token"]).id_token.jti) == claims["jti"]
    refreshed = refresh(client, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.content
    assert id_token_claims(refreshed.json()["id_token"], client.application)["sub"] == str(user.pk)


def test_a_device_not_granted_openid_gets_no_id_token() -> None:
    client = tv_app()

    issued = approved_poll(client, UserFactory.create(), "users:read")

    assert issued.status_code == 200, issued.content
    assert set(issued.json()) == {"access_token", "refresh_token", "expires_in", "token_type", "scope"}
