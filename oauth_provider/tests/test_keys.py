"""Signing keys: the JWKS, ID tokens signed by kid, rotation end to end, the per-process key ring."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone
from jwcrypto import jwk, jws, jwt
from oauth2_provider.models import AccessToken, Grant, IDToken
from oauth2_provider.settings import oauth2_settings

from accounts.encryption import secret_decrypt
from accounts.models import User
from audit.models import AuditEvent
from config.celery import app as celery_app
from oauth_provider.models import Application, SigningKey
from oauth_provider.selectors import signing_keys as keys
from oauth_provider.services import IssuedClient, application_create
from oauth_provider.services.signing_keys import (
    signing_key_activate,
    signing_key_add,
    signing_key_withdraw,
    signing_keys_prune,
    signing_keys_rotate,
)
from oauth_provider.tasks import signing_keys_prune as signing_keys_prune_task
from oauth_provider.tests.browser import pkce
from oauth_provider.validators import OAuth2Validator

pytestmark = pytest.mark.django_db

REDIRECT_URI = "https://rp.example.com/callback"
JWKS_URL = "/o/.well-known/jwks.json"
MAX_AGE = 3600  # OIDC_JWKS_MAX_AGE_SECONDS
REFRESH = 30  # OAUTH_SIGNING_KEYS_REFRESH_SECONDS
# A retired key stays published for the longest token lifetime (access, 600 s), one refresh
# interval and one JWKS lifetime.
RETIRED_KEY_PUBLISHED_SECONDS = 600 + REFRESH + MAX_AGE


# --- helpers -------------------------------------------------------------------------------------


def relying_party() -> IssuedClient:
    """A confidential client, trusted so no consent page stands between the tests and a code."""
    return application_create(
        name="Relying party", owner=None, redirect_uris=REDIRECT_URI, skip_authorization=True
    )


def authorization_request(issued: IssuedClient, *, challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": issued.application.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "state-1",
        "nonce": "nonce-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def authorize(browser: Client, params: dict[str, str]) -> dict[str, list[str]]:
    """The query of the redirect back to the client, through the consent page if one is shown."""
    response = browser.get("/o/authorize/", params)
    if response.status_code == 200:  # a consent page: allow
        response = browser.post("/o/authorize/", {**params, "allow": "Authorize"})
    assert response.status_code == 302, response.content
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return parse_qs(location.query)


def code_flow_token_response(
    browser: Client, issued: IssuedClient, *, token_client: Client | None = None
) -> tuple[int, bytes]:
    """The token endpoint's status and body in a real authorization-code flow with PKCE (signed in)."""
    challenge = pkce()
    query = authorize(browser, authorization_request(issued, challenge=challenge.challenge))
    credentials = base64.b64encode(f"{issued.application.client_id}:{issued.client_secret}".encode()).decode()
    response = (token_client or Client()).post(
        "/o/token/",
        {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": challenge.verifier,
        },
        HTTP_AUTHORIZATION=f"Basic {credentials}",
    )
    return response.status_code, response.content


def id_token_from_code_flow(browser: Client, issued: IssuedClient) -> str:
    """An ID token through a real authorization-code flow with PKCE (the browser is signed in)."""
    status, body = code_flow_token_response(browser, issued)
    assert status == 200, body
    return str(json.loads(body)["id_token"])


def header_kid(token: str) -> str:
    unverified = jws.JWS()
    unverified.deserialize(token)
    return str(unverified.jose_header["kid"])


def jwks_over_http() -> dict[str, Any]:
    response = Client().get(JWKS_URL)
    assert response.status_code == 200
    return dict(response.json())


def verified_claims(token: str) -> dict[str, Any]:
    """The claims of `token` verified as a relying party would: against the JWKS, by its kid."""
    key_set = jwk.JWKSet.from_json(json.dumps(jwks_over_http()))
    return dict(json.loads(jwt.JWT(jwt=token, key=key_set, algs=["RS256"]).claims))


def token_verifies(token: str) -> bool:
    try:
        verified_claims(token)
    except (jwt.JWTMissingKey, jws.InvalidJWSSignature):
        return False
    return True


def published_kids() -> list[str]:
    return [key["kid"] for key in jwks_over_http()["keys"]]


def setting_kid() -> str:
    return str(jwk.JWK.from_pem(oauth2_settings.OIDC_RSA_PRIVATE_KEY.encode()).thumbprint())


def replace_setting_key(settings: Any) -> str:
    """Give OIDC_RSA_PRIVATE_KEY a new key (every process rolled with it); return its kid."""
    pem = rsa_pem()
    settings.OIDC_RSA_PRIVATE_KEY = pem
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_RSA_PRIVATE_KEY": pem}
    return setting_kid()


def break_ciphertext(key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stored key no longer decrypts, seen by a worker that starts afresh (none parsed yet)."""
    SigningKey.objects.filter(pk=key.pk).update(private_key_encrypted="not a Fernet token")
    monkeypatch.setattr(keys, "_cache", keys.KeyRingCache())


def issued_tokens() -> tuple[int, int]:
    return AccessToken.objects.count(), IDToken.objects.count()


def key_events() -> list[tuple[str, dict[str, Any]]]:
    events = AuditEvent.objects.filter(action__startswith="oauth.signing_key.").order_by("id")
    return [(event.action, event.metadata) for event in events]


def states() -> dict[str, str]:
    return dict(SigningKey.objects.values_list("kid", "state"))


def rsa_pem(bits: int = 2048) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class Clock:
    now: datetime

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class WorkerClock:
    """The monotonic clock of a simulated worker process."""

    seconds: float = 1_000.0

    def __call__(self) -> float:
        return self.seconds


@pytest.fixture(autouse=True)
def _fresh_key_ring() -> Iterator[None]:
    """Every test starts as a new process would, and leaves no copy of its rolled-back keys behind."""
    keys.key_ring_invalidate()
    yield
    keys.key_ring_invalidate()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    frozen = Clock(now=timezone.now())
    monkeypatch.setattr(timezone, "now", lambda: frozen.now)
    return frozen


@pytest.fixture
def browser(user: User) -> Client:
    signed_in = Client()
    signed_in.force_login(user)
    return signed_in


# --- the JWKS and ID tokens ------------------------------------------------------------------------


def test_with_no_keys_in_the_table_the_setting_key_is_published_with_its_kid(client: Client) -> None:
    response = client.get(JWKS_URL)

    assert response.status_code == 200
    assert response["Cache-Control"] == f"public, max-age={MAX_AGE}, stale-if-error={MAX_AGE}"
    assert response["Access-Control-Allow-Origin"] == "*"
    public = json.loads(jwk.JWK.from_pem(settings.OIDC_RSA_PRIVATE_KEY.encode()).export_public())
    assert response.json() == {"keys": [{"kid": setting_kid(), "use": "sig", "alg": "RS256", **public}]}
    assert SigningKey.objects.count() == 0


def test_an_id_token_from_the_code_flow_verifies_against_the_jwks_by_kid(browser: Client, user: User) -> None:
    issued = relying_party()

    token = id_token_from_code_flow(browser, issued)

    assert header_kid(token) == setting_kid()
    claims = verified_claims(token)
    assert claims["iss"] == settings.SITE_URL == "http://127.0.0.1:8000"
    assert claims["aud"] == issued.application.client_id
    assert claims["sub"] == str(user.pk)
    assert claims["nonce"] == "nonce-1"


def test_hs256_clients_keep_signing_with_their_secret() -> None:
    application = Application(algorithm=Application.HS256_ALGORITHM, client_secret="s" * 40)

    assert application.jwk_key.export(as_dict=True, private_key=True) == {
        "kty": "oct",
        "k": base64.urlsafe_b64encode(b"s" * 40).rstrip(b"=").decode(),
    }


# --- rotation end to end -----------------------------------------------------------------------------


def test_rotation_publishes_before_signing_and_keeps_the_old_key_until_its_tokens_expire(
    browser: Client, clock: Clock
) -> None:
    issued = relying_party()
    old_kid = setting_kid()
    old_token = id_token_from_code_flow(browser, issued)

    # 1. A new key is published at once, and does not sign yet.
    new = signing_key_add()

    assert states() == {old_kid: "active", new.kid: "next"}  # the setting key was imported first
    assert published_kids() == [old_kid, new.kid]
    assert header_kid(id_token_from_code_flow(browser, issued)) == old_kid

    # 2. Activating it before every cached JWKS can have it is refused, and changes nothing.
    clock.advance(MAX_AGE + REFRESH - 1)
    with pytest.raises(ValidationError) as refused:
        signing_key_activate(key=new)

    assert refused.value.code == "signing_key_too_new"
    assert states() == {old_kid: "active", new.kid: "next"}
    assert [action for action, _ in key_events()] == ["oauth.signing_key.added", "oauth.signing_key.added"]

    # 3. One JWKS lifetime later it signs; the old key is retired but still published.
    clock.advance(1)
    activated_at = clock.now
    signing_key_activate(key=new)

    retired = SigningKey.objects.get(kid=old_kid)
    assert (retired.state, retired.retired_at) == ("retired", activated_at)
    assert retired.publish_until == activated_at + timedelta(seconds=RETIRED_KEY_PUBLISHED_SECONDS)
    assert SigningKey.objects.get(kid=new.kid).activated_at == activated_at
    new_token = id_token_from_code_flow(browser, issued)
    assert header_kid(new_token) == new.kid
    assert published_kids() == [new.kid, old_kid]
    assert token_verifies(new_token)
    assert token_verifies(old_token)

    # 4. At publish_until it leaves the JWKS. It was OIDC_RSA_PRIVATE_KEY, so prune keeps its row
    # (unpublished): the setting never stands in as the fallback again. Other keys' rows are
    # deleted (test_prune_keeps_the_setting_keys_retired_row_and_only_that_one).
    clock.advance(RETIRED_KEY_PUBLISHED_SECONDS - 1)
    assert published_kids() == [new.kid, old_kid]

    clock.advance(1)
    keys.key_ring_invalidate()  # what every worker does within one refresh interval
    assert published_kids() == [new.kid]
    assert signing_keys_prune() == []

    assert states() == {new.kid: "active", old_kid: "retired"}
    assert published_kids() == [new.kid]
    assert not token_verifies(old_token)
    assert token_verifies(new_token)
    assert key_events() == [
        (
            "oauth.signing_key.added",
            {"kid": old_kid, "algorithm": "RS256", "state": "active", "source": "setting"},
        ),
        ("oauth.signing_key.added", {"kid": new.kid, "algorithm": "RS256", "state": "next", "source": "new"}),
        ("oauth.signing_key.retired", {"kid": old_kid, "publish_until": retired.publish_until.isoformat()}),
        ("oauth.signing_key.activated", {"kid": new.kid, "forced": False, "previous_kid": old_kid}),
    ]


def test_a_rotation_reaches_another_worker_within_the_refresh_interval(
    browser: Client, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = relying_party()
    old_kid = setting_kid()
    worker_clock = WorkerClock()
    other_worker = keys.KeyRingCache(clock=worker_clock)

    with monkeypatch.context() as served_by_the_other_worker:
        served_by_the_other_worker.setattr(keys, "_cache", other_worker)
        assert published_kids() == [old_kid]

    new = signing_key_add()  # in this process (a management command, say)
    clock.advance(MAX_AGE + REFRESH)
    signing_key_activate(key=new)

    with monkeypatch.context() as served_by_the_other_worker:
        served_by_the_other_worker.setattr(keys, "_cache", other_worker)
        # Its copy is up to one refresh interval old: it still signs with the old key, which stays
        # published, so what it signs verifies everywhere.
        stale_token = id_token_from_code_flow(browser, issued)
        assert header_kid(stale_token) == old_kid
        assert published_kids() == [old_kid]

        worker_clock.seconds += REFRESH
        fresh_token = id_token_from_code_flow(browser, issued)

        assert header_kid(fresh_token) == new.kid
        assert published_kids() == [new.kid, old_kid]
    assert token_verifies(stale_token)
    assert token_verifies(fresh_token)


def test_a_forced_activation_skips_the_wait_and_says_so(browser: Client) -> None:
    issued = relying_party()
    new = signing_key_add()

    signing_key_activate(key=new, force=True)

    assert header_kid(id_token_from_code_flow(browser, issued)) == new.kid
    assert key_events()[-1] == (
        "oauth.signing_key.activated",
        {"kid": new.kid, "forced": True, "previous_kid": setting_kid()},
    )


def test_a_retired_key_can_sign_again_at_once_while_it_is_published(browser: Client, clock: Clock) -> None:
    issued = relying_party()
    new = signing_key_add()
    clock.advance(MAX_AGE + REFRESH)
    signing_key_activate(key=new)
    old = SigningKey.objects.get(kid=setting_kid())

    signing_key_activate(key=old)  # rolling back a bad key needs no wait: verifiers have the old one

    assert states() == {old.kid: "active", new.kid: "retired"}
    assert header_kid(id_token_from_code_flow(browser, issued)) == old.kid


def test_activation_refuses_the_active_key_and_a_key_no_longer_published(clock: Clock) -> None:
    new = signing_key_add()
    clock.advance(MAX_AGE + REFRESH)
    signing_key_activate(key=new)
    old = SigningKey.objects.get(kid=setting_kid())
    clock.advance(RETIRED_KEY_PUBLISHED_SECONDS)
    before = (states(), AuditEvent.objects.count())

    with pytest.raises(ValidationError) as active:
        signing_key_activate(key=new)
    with pytest.raises(ValidationError) as unpublished:
        signing_key_activate(key=old, force=True)

    assert (active.value.code, unpublished.value.code) == (
        "signing_key_already_active",
        "signing_key_unpublished",
    )
    assert (states(), AuditEvent.objects.count()) == before


def test_a_retired_key_still_verifies_id_token_hints_while_it_is_published(browser: Client) -> None:
    """RP-initiated logout reads the ID token hint with the key its kid names, retired ones too."""
    issued = relying_party()
    old_token = id_token_from_code_flow(browser, issued)
    signing_key_activate(key=signing_key_add(), force=True)
    validator = OAuth2Validator()

    assert keys.id_token_verification_key(old_token) is not None
    assert keys.id_token_verification_key(old_token).thumbprint() == setting_kid()  # type: ignore[union-attr]
    assert validator._load_id_token(old_token) is not None
    response = browser.get(
        "/o/logout/", {"id_token_hint": old_token, "client_id": issued.application.client_id}
    )
    assert response.status_code == 200  # the confirmation page: the hint was accepted


def test_an_id_token_hint_under_an_unpublished_kid_is_checked_against_no_key(browser: Client) -> None:
    """Only HS256 hints fall back to the client's own key; an RS256 one names its key or none."""
    issued = relying_party()
    stranger = jwk.JWK.generate(kty="RSA", size=2048)
    forged = jwt.JWT(
        header={"alg": "RS256", "kid": stranger.thumbprint()},
        claims={"aud": issued.application.client_id, "jti": "00000000-0000-0000-0000-000000000000"},
    )
    forged.make_signed_token(stranger)

    assert OAuth2Validator()._get_key_for_token(forged.serialize()) is None
    response = browser.get(
        "/o/logout/", {"id_token_hint": forged.serialize(), "client_id": issued.application.client_id}
    )
    assert response.status_code == 400  # the toolkit's "invalid id_token_hint", on our page
    assert "This sign-out request is not valid" in response.content.decode()


def test_id_token_verification_key_refuses_what_it_cannot_vouch_for() -> None:
    stranger = jwk.JWK.generate(kty="RSA", size=2048)
    unknown = jwt.JWT(header={"alg": "RS256", "kid": stranger.thumbprint()}, claims={"aud": "x"})
    unknown.make_signed_token(stranger)
    hmac = jwt.JWT(header={"alg": "HS256", "kid": setting_kid()}, claims={"aud": "x"})
    hmac.make_signed_token(jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(b"k" * 32).decode()))

    assert keys.id_token_verification_key(unknown.serialize()) is None
    assert keys.id_token_verification_key(hmac.serialize()) is None  # never an RSA key for an HMAC token
    assert keys.id_token_verification_key("not a token") is None


# --- withdrawing a leaked key ----------------------------------------------------------------------------


def test_a_withdrawn_key_leaves_the_jwks_at_once_and_its_id_tokens_stop_verifying(
    browser: Client, clock: Clock
) -> None:
    """The setting key leaked: another key signs (forced), then the leaked one is withdrawn."""
    issued = relying_party()
    leaked_kid = setting_kid()
    leaked_token = id_token_from_code_flow(browser, issued)
    new = signing_key_add()
    signing_key_activate(key=new, force=True)
    assert published_kids() == [new.kid, leaked_kid]  # retired, published for another ~70 minutes
    leaked = SigningKey.objects.get(kid=leaked_kid)
    retired_at = leaked.retired_at
    clock.advance(60)

    withdrawn = signing_key_withdraw(key=leaked)

    assert published_kids() == [new.kid]
    assert not token_verifies(leaked_token)
    assert keys.id_token_verification_key(leaked_token) is None
    assert OAuth2Validator()._load_id_token(leaked_token) is None  # no longer an ID token hint
    new_token = id_token_from_code_flow(browser, issued)
    assert header_kid(new_token) == new.kid
    assert token_verifies(new_token)
    assert (withdrawn.state, withdrawn.retired_at, withdrawn.publish_until) == (
        "retired",
        retired_at,
        clock.now,
    )
    assert SigningKey.objects.get(kid=leaked_kid).publish_until == clock.now
    assert states() == {new.kid: "active", leaked_kid: "retired"}
    assert key_events()[-1] == ("oauth.signing_key.withdrawn", {"kid": leaked_kid})

    # It cannot sign again, and prune keeps its row: it is OIDC_RSA_PRIVATE_KEY, which must never
    # stand in as the fallback again.
    with pytest.raises(ValidationError) as reactivated:
        signing_key_activate(key=withdrawn, force=True)
    assert reactivated.value.code == "signing_key_unpublished"
    assert signing_keys_prune() == []
    assert states() == {new.kid: "active", leaked_kid: "retired"}
    assert published_kids() == [new.kid]


def test_withdrawing_a_next_key_unpublishes_it_before_it_ever_signs(clock: Clock) -> None:
    pending = signing_key_add()

    signing_key_withdraw(key=pending)

    withdrawn = SigningKey.objects.get(kid=pending.kid)
    assert (withdrawn.state, withdrawn.activated_at, withdrawn.retired_at, withdrawn.publish_until) == (
        "retired",
        None,
        clock.now,
        clock.now,
    )
    assert published_kids() == [setting_kid()]
    assert signing_keys_rotate().action == "added"  # no longer pending: the rotation starts over
    assert key_events()[-2] == ("oauth.signing_key.withdrawn", {"kid": pending.kid})


def test_a_withdrawal_reaches_another_worker_within_the_refresh_interval(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    pending = signing_key_add()
    worker_clock = WorkerClock()
    other_worker = keys.KeyRingCache(clock=worker_clock)
    with monkeypatch.context() as served_by_the_other_worker:
        served_by_the_other_worker.setattr(keys, "_cache", other_worker)
        assert published_kids() == [setting_kid(), pending.kid]

    signing_key_withdraw(key=pending)  # in this process (a management command, say)

    assert published_kids() == [setting_kid()]
    with monkeypatch.context() as served_by_the_other_worker:
        served_by_the_other_worker.setattr(keys, "_cache", other_worker)
        worker_clock.seconds += REFRESH - 1
        assert published_kids() == [setting_kid(), pending.kid]
        worker_clock.seconds += 1
        assert published_kids() == [setting_kid()]


def test_withdrawal_refuses_the_active_key_a_key_out_of_the_jwks_and_a_deleted_key(clock: Clock) -> None:
    new = signing_key_add()
    signing_key_activate(key=new, force=True)
    expired = SigningKey.objects.get(kid=setting_kid())
    clock.advance(RETIRED_KEY_PUBLISHED_SECONDS)  # the retired key's tokens have all expired
    deleted = signing_key_add()
    signing_key_withdraw(key=deleted)
    SigningKey.objects.filter(pk=deleted.pk).delete()
    before = (states(), AuditEvent.objects.count(), published_kids())

    codes = []
    for key in (new, expired, deleted):
        with pytest.raises(ValidationError) as refused:
            signing_key_withdraw(key=key)
        codes.append(refused.value.code)

    assert codes == ["signing_key_active", "signing_key_unpublished", "signing_key_missing"]
    assert (states(), AuditEvent.objects.count(), published_kids()) == before
    assert before[0] == {new.kid: "active", setting_kid(): "retired"}


def test_withdrawal_refuses_the_setting_key_while_it_signs_as_the_fallback(
    browser: Client, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new setting key, added as `next`, signs as the fallback when the active row breaks."""
    issued = relying_party()
    first_setting_kid = setting_kid()
    active = signing_key_add()
    signing_key_activate(key=active, force=True)
    replace_setting_key(settings)
    signing_key_add(private_key_pem=oauth2_settings.OIDC_RSA_PRIVATE_KEY)  # published before it signs
    break_ciphertext(active, monkeypatch)
    assert header_kid(id_token_from_code_flow(browser, issued)) == setting_kid()
    before = (states(), AuditEvent.objects.count(), published_kids())

    with pytest.raises(ValidationError) as refused:
        signing_key_withdraw(key=SigningKey.objects.get(kid=setting_kid()))

    assert refused.value.code == "signing_key_active"
    assert (states(), AuditEvent.objects.count(), published_kids()) == before
    assert published_kids() == [setting_kid(), first_setting_kid]  # the first one retired, still published


# --- the setting key once retired -------------------------------------------------------------------------


@pytest.mark.parametrize("retirement", ["rotated out", "withdrawn"])
def test_a_retired_setting_key_never_signs_or_is_published_again_when_the_active_key_breaks(
    retirement: str,
    browser: Client,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Imported, rotated out (or withdrawn: it leaked), pruned; then the active row cannot be used."""
    issued = relying_party()
    retired_kid = setting_kid()
    old_token = id_token_from_code_flow(browser, issued)
    new = signing_key_add()  # imports the setting key first
    clock.advance(MAX_AGE + REFRESH)
    signing_key_activate(key=new)
    if retirement == "withdrawn":
        signing_key_withdraw(key=SigningKey.objects.get(kid=retired_kid))
    else:
        clock.advance(RETIRED_KEY_PUBLISHED_SECONDS)
    assert signing_keys_prune() == []
    assert published_kids() == [new.kid]

    break_ciphertext(new, monkeypatch)
    grants, tokens = Grant.objects.count(), issued_tokens()
    with caplog.at_level(logging.ERROR, logger="oauth_provider.keys"):
        jwks = jwks_over_http()

    assert jwks == {"keys": []}  # neither the broken active key nor the retired setting key
    assert f"Signing key {new.kid} cannot be decrypted" in caplog.text
    assert (
        "No key can sign ID tokens, as no active key in the table can be used and "
        f"OIDC_RSA_PRIVATE_KEY (kid {retired_kid}) was retired, so it does not stand in."
    ) in caplog.text
    ring = keys.key_ring()
    assert (ring.signing, dict(ring.published), ring.unusable) == (None, {}, {new.kid})
    assert keys.id_token_verification_key(old_token) is None
    assert not token_verifies(old_token)
    with pytest.raises(keys.NoSigningKeyError, match=f"kid {retired_kid}\\) was retired"):
        keys.signing_key()
    # Token requests fail, as the toolkit's do without a key, and issue nothing (the code stays).
    with pytest.raises(keys.NoSigningKeyError):
        code_flow_token_response(browser, issued)
    status, _body = code_flow_token_response(
        browser, issued, token_client=Client(raise_request_exception=False)
    )
    assert status == 500
    assert issued_tokens() == tokens
    assert Grant.objects.count() == grants + 2
    # A key of the table signs again after `add` and a forced `activate`; the setting key stays out.
    recovered = signing_key_add()
    signing_key_activate(key=recovered, force=True)
    token = id_token_from_code_flow(browser, issued)
    assert header_kid(token) == recovered.kid
    assert token_verifies(token)
    assert published_kids() == [recovered.kid]
    assert states() == {recovered.kid: "active", new.kid: "retired", retired_kid: "retired"}


def test_a_retired_setting_key_still_published_does_not_sign_as_the_fallback(
    browser: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = relying_party()
    retired_kid = setting_kid()
    new = signing_key_add()
    signing_key_activate(key=new, force=True)

    break_ciphertext(new, monkeypatch)

    assert published_kids() == [retired_kid]  # its row: retired, until its publish_until
    assert keys.key_ring().published[retired_kid].state == "retired"
    assert keys.key_ring().signing is None
    with pytest.raises(keys.NoSigningKeyError):
        id_token_from_code_flow(browser, issued)


def test_prune_keeps_the_setting_keys_retired_row_and_only_that_one(clock: Clock, settings: Any) -> None:
    setting_pem = oauth2_settings.OIDC_RSA_PRIVATE_KEY
    retired_kid = setting_kid()
    first = signing_key_add()
    signing_key_activate(key=first, force=True)
    second = signing_key_add()
    signing_key_activate(key=second, force=True)
    clock.advance(RETIRED_KEY_PUBLISHED_SECONDS)

    assert signing_keys_prune() == [first.kid]
    assert signing_keys_prune() == []

    assert states() == {second.kid: "active", retired_kid: "retired"}
    tombstone = SigningKey.objects.get(kid=retired_kid)
    assert tombstone.publish_until is not None
    assert tombstone.publish_until <= clock.now
    assert published_kids() == [second.kid]
    assert [metadata["kid"] for action, metadata in key_events() if action.endswith(".pruned")] == [first.kid]
    # The tombstone cannot be brought back: not activated, not withdrawn, not imported again.
    codes = []
    for change in (
        lambda: signing_key_activate(key=tombstone, force=True),
        lambda: signing_key_withdraw(key=tombstone),
    ):
        with pytest.raises(ValidationError) as refused:
            change()
        codes.append(refused.value.code)
    assert codes == ["signing_key_unpublished", "signing_key_unpublished"]
    with pytest.raises(ValidationError) as imported:
        signing_key_add(private_key_pem=setting_pem)
    assert imported.value.error_dict["kid"][0].code == "unique"

    # Once the setting holds another key, the old row is an ordinary expired key: pruned.
    replace_setting_key(settings)
    assert signing_keys_prune() == [retired_kid]
    assert states() == {second.kid: "active"}


def test_the_key_ring_reads_the_table_with_one_query_per_refresh(
    clock: Clock, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    new = signing_key_add()
    signing_key_activate(key=new, force=True)
    signing_key_withdraw(key=SigningKey.objects.get(kid=setting_kid()))
    signing_keys_prune()  # the setting key's row stays: unpublished, it is never decrypted
    pending = signing_key_add()
    worker_clock = WorkerClock()
    monkeypatch.setattr(keys, "_cache", keys.KeyRingCache(clock=worker_clock))

    with django_assert_num_queries(2):  # the index, then the two published keys' PEMs
        assert list(keys.key_ring().published) == [new.kid, pending.kid]
    with django_assert_num_queries(0):
        keys.key_ring()
    for _ in range(2):
        worker_clock.seconds += REFRESH
        with django_assert_num_queries(1):
            keys.key_ring()

    # With no key that can sign, too: the broken key is not retried until the table changes.
    SigningKey.objects.filter(pk=new.pk).update(private_key_encrypted="not a Fernet token")
    monkeypatch.setattr(keys, "_cache", keys.KeyRingCache(clock=worker_clock))
    with django_assert_num_queries(2):
        assert keys.key_ring().signing is None
    for _ in range(2):
        worker_clock.seconds += REFRESH
        with django_assert_num_queries(1):
            assert keys.key_ring().signing is None


# --- the process cache ---------------------------------------------------------------------------------


def test_each_pem_is_parsed_once_per_process_never_per_request(
    browser: Client, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    parse = keys.private_key_parse

    def counting_parse(pem: str) -> jwk.JWK:
        parsed.append(pem)
        return parse(pem)

    monkeypatch.setattr(keys, "private_key_parse", counting_parse)
    worker_clock = WorkerClock()
    monkeypatch.setattr(keys, "_cache", keys.KeyRingCache(clock=worker_clock))  # a new process
    issued = relying_party()

    for _ in range(3):
        id_token_from_code_flow(browser, issued)
        jwks_over_http()
        worker_clock.seconds += REFRESH  # re-reading the table does not parse again
    assert parsed == [settings.OIDC_RSA_PRIVATE_KEY]

    new = signing_key_add()
    clock.advance(MAX_AGE + REFRESH)
    signing_key_activate(key=new)
    for _ in range(3):
        worker_clock.seconds += REFRESH
        id_token_from_code_flow(browser, issued)
        jwks_over_http()

    assert len(parsed) == 2  # only the new key; the imported setting key was already parsed
    assert jwk.JWK.from_pem(parsed[1].encode()).thumbprint() == new.kid


def test_the_private_key_is_encrypted_at_rest() -> None:
    pem = rsa_pem()

    key = signing_key_add(private_key_pem=pem)

    stored = SigningKey.objects.get(pk=key.pk).private_key_encrypted
    assert "PRIVATE KEY" not in stored
    assert secret_decrypt(stored) == pem
    assert key.kid == jwk.JWK.from_pem(pem.encode()).thumbprint()


def test_a_key_that_can_no_longer_be_decrypted_is_left_out_and_a_setting_key_never_retired_signs(
    browser: Client, settings: Any, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The fallback as before, for a setting key the table never retired: here a replaced setting."""
    issued = relying_party()
    first_setting_kid = setting_kid()
    new = signing_key_add()
    signing_key_activate(key=new, force=True)
    new_setting_kid = replace_setting_key(settings)
    clock.advance(RETIRED_KEY_PUBLISHED_SECONDS)
    assert signing_keys_prune() == [first_setting_kid]  # no longer the setting's key
    assert states() == {new.kid: "active"}  # rows that never included the setting kid

    settings.MFA_ENCRYPTION_KEYS = ["a different encryption key"]
    with caplog.at_level(logging.ERROR, logger="oauth_provider.keys"):
        token = id_token_from_code_flow(browser, issued)

    assert header_kid(token) == new_setting_kid
    assert token_verifies(token)
    assert published_kids() == [new_setting_kid]
    assert f"Signing key {new.kid} cannot be decrypted" in caplog.text
    assert (
        f"No usable active signing key in the table; OIDC_RSA_PRIVATE_KEY (kid {new_setting_kid}) signs."
        in (caplog.text)
    )


def test_only_one_key_can_be_active() -> None:
    signing_key_activate(key=signing_key_add(), force=True)

    with pytest.raises(IntegrityError), transaction.atomic():
        SigningKey.objects.create(
            kid="x" * 43,
            state=SigningKey.State.ACTIVE,
            activated_at=timezone.now(),
            private_key_encrypted="-",
        )


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param("not a key", id="garbage"),
        pytest.param(rsa_pem(1024), id="short-rsa"),
        pytest.param(
            ec.generate_private_key(ec.SECP256R1())
            .private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            .decode(),
            id="ec",
        ),
    ],
)
def test_adding_a_key_that_is_not_a_strong_rsa_key_is_refused_and_changes_nothing(pem: str) -> None:
    with pytest.raises(ValidationError) as refused:
        signing_key_add(private_key_pem=pem)

    assert refused.value.code == "signing_key_invalid"
    assert SigningKey.objects.count() == 0  # not even the setting key's import
    assert AuditEvent.objects.count() == 0


def test_adding_a_key_twice_is_refused() -> None:
    pem = rsa_pem()
    signing_key_add(private_key_pem=pem)
    before = (states(), AuditEvent.objects.count())

    with pytest.raises(ValidationError) as refused:
        signing_key_add(private_key_pem=pem)

    assert refused.value.error_dict["kid"][0].code == "unique"
    assert (states(), AuditEvent.objects.count()) == before


def test_audit_events_never_hold_key_material(browser: Client) -> None:
    signing_key_activate(key=signing_key_add(), force=True)
    signing_key_withdraw(key=SigningKey.objects.get(kid=setting_kid()))
    signing_key_withdraw(key=signing_key_add())
    signing_keys_prune()

    assert [action for action, _ in key_events()] == [
        "oauth.signing_key.added",
        "oauth.signing_key.added",
        "oauth.signing_key.retired",
        "oauth.signing_key.activated",
        "oauth.signing_key.withdrawn",
        "oauth.signing_key.added",
        "oauth.signing_key.withdrawn",
        "oauth.signing_key.pruned",
    ]
    for event in AuditEvent.objects.filter(action__startswith="oauth.signing_key."):
        text = json.dumps([event.metadata, event.changes, event.target_label])
        assert "PRIVATE" not in text
        assert '"d"' not in text
        assert (event.actor_type, event.target_type) == ("system", "oauth_provider.signingkey")


# --- the command and the beat job ---------------------------------------------------------------------------


def run_oidc_keys(*args: str) -> str:
    output = io.StringIO()
    call_command("oidc_keys", *args, stdout=output)
    return output.getvalue()


def run_oidc_keys_with_warnings(*args: str) -> tuple[str, str]:
    output, warnings = io.StringIO(), io.StringIO()
    call_command("oidc_keys", *args, stdout=output, stderr=warnings)
    return output.getvalue(), warnings.getvalue()


def test_oidc_keys_rotate_takes_the_due_step_each_time(clock: Clock) -> None:
    old_kid = setting_kid()
    assert run_oidc_keys("list") == (
        f"No keys in the table: OIDC_RSA_PRIVATE_KEY (kid {old_kid}) signs. "
        "`oidc_keys rotate` imports it and starts a rotation.\n"
    )

    added = run_oidc_keys("rotate")
    [new] = SigningKey.objects.filter(state=SigningKey.State.NEXT)
    activatable_at = new.created_at + timedelta(seconds=MAX_AGE + REFRESH)
    assert added == (
        f"Step 1 of 3 done: added {new.kid}, published now, not signing yet.\n"
        f"Next: after {activatable_at:%Y-%m-%d %H:%M:%S} UTC (when every cached JWKS has it), run "
        f"`oidc_keys rotate` again (or `oidc_keys activate {new.kid}`).\n"
    )

    assert run_oidc_keys("rotate").startswith(f"Nothing to do yet: {new.kid} is published but too recently")
    assert states() == {old_kid: "active", new.kid: "next"}

    clock.advance(MAX_AGE + REFRESH)
    activated = run_oidc_keys("rotate")
    publish_until = clock.now + timedelta(seconds=RETIRED_KEY_PUBLISHED_SECONDS)
    assert activated == (
        f"Step 2 of 3 done: {new.kid} signs new tokens.\n"
        f"{old_kid} is retired and stays published until {publish_until:%Y-%m-%d %H:%M:%S} UTC, when every "
        "token it signed has expired; then `oidc_keys prune` (the hourly beat job does it) removes it.\n"
    )

    assert run_oidc_keys("prune") == "Nothing to prune.\n"
    clock.advance(RETIRED_KEY_PUBLISHED_SECONDS)
    assert run_oidc_keys("prune") == (
        "Nothing to prune.\n"
        f"Kept {old_kid}, the retired OIDC_RSA_PRIVATE_KEY: its row keeps the setting from signing again "
        "as the fallback. Once the setting holds another key, prune deletes it.\n"
    )
    assert states() == {new.kid: "active", old_kid: "retired"}


def test_oidc_keys_activate_refuses_a_new_key_unless_forced() -> None:
    run_oidc_keys("add")
    [new] = SigningKey.objects.filter(state=SigningKey.State.NEXT)

    with pytest.raises(CommandError, match=f"Key {new.kid} has been published since"):
        run_oidc_keys("activate")
    assert states() == {setting_kid(): "active", new.kid: "next"}

    assert run_oidc_keys("activate", new.kid, "--force").startswith(
        f"Activated {new.kid}: it signs new tokens."
    )
    assert states() == {setting_kid(): "retired", new.kid: "active"}
    listing = run_oidc_keys("list").splitlines()
    assert listing[0].split() == ["kid", "state", "created", "activated", "publish", "until"]
    assert {line.split()[0]: line.split()[1] for line in listing[1:3]} == {
        new.kid: "active",
        setting_kid(): "retired",
    }
    assert listing[3:] == [
        f"OIDC_RSA_PRIVATE_KEY (kid {setting_kid()}) is retired: it never signs or is published again, not "
        "even as the fallback; `oidc_keys prune` keeps its row while the setting holds this key."
    ]


def test_oidc_keys_withdraw_takes_a_leaked_key_out_of_the_jwks_and_warns(
    browser: Client, clock: Clock
) -> None:
    issued = relying_party()
    leaked_token = id_token_from_code_flow(browser, issued)
    leaked_kid = setting_kid()
    run_oidc_keys("add")
    [new] = SigningKey.objects.filter(state=SigningKey.State.NEXT)
    run_oidc_keys("activate", new.kid, "--force")

    output, warnings = run_oidc_keys_with_warnings("withdraw", leaked_kid)

    assert output == (
        f"Withdrew {leaked_kid}: out of this process's JWKS now, out of every worker's within {REFRESH} s. "
        "`oidc_keys prune` (the hourly beat job) deletes its row.\n"
    )
    assert warnings == (
        f"Warning: ID tokens signed with {leaked_kid} stop verifying, here and at relying parties once "
        f"their cached JWKS copies expire (max-age {MAX_AGE} s).\n"
        f"Warning: {leaked_kid} is OIDC_RSA_PRIVATE_KEY. Its row stays, unpublished, so it never signs or "
        "is published again, not even as the fallback; still replace it in every process's environment "
        "and roll them: a leaked key should not stay configured (a database restored from before its "
        "import would sign with it again), and a new one is a working fallback.\n"
    )
    assert published_kids() == [new.kid]
    assert not token_verifies(leaked_token)
    assert key_events()[-1] == ("oauth.signing_key.withdrawn", {"kid": leaked_kid})
    listing = run_oidc_keys("list").splitlines()[1:3]
    assert {line.split()[0]: line.split()[1] for line in listing} == {
        new.kid: "active",
        leaked_kid: "retired",
    }


def test_oidc_keys_withdraw_of_a_key_other_than_the_setting_warns_once() -> None:
    run_oidc_keys("add")
    [pending] = SigningKey.objects.filter(state=SigningKey.State.NEXT)

    output, warnings = run_oidc_keys_with_warnings("withdraw", pending.kid)

    assert output.startswith(f"Withdrew {pending.kid}: out of this process's JWKS now")
    assert warnings == (
        f"Warning: ID tokens signed with {pending.kid} stop verifying, here and at relying parties once "
        f"their cached JWKS copies expire (max-age {MAX_AGE} s).\n"
    )
    assert published_kids() == [setting_kid()]


def test_oidc_keys_withdraw_refuses_the_active_key_and_an_unknown_kid() -> None:
    with pytest.raises(CommandError) as setting_signs:
        run_oidc_keys("withdraw", setting_kid())
    assert str(setting_signs.value) == (
        f"Key {setting_kid()} is OIDC_RSA_PRIVATE_KEY, which signs while the table is empty: run "
        "`oidc_keys add`, then `oidc_keys activate <new kid> --force`, then withdraw it."
    )
    assert SigningKey.objects.count() == 0
    run_oidc_keys("add")
    [new] = SigningKey.objects.filter(state=SigningKey.State.NEXT)
    run_oidc_keys("activate", new.kid, "--force")
    before = (states(), AuditEvent.objects.count(), published_kids())

    with pytest.raises(CommandError) as active:
        run_oidc_keys("withdraw", new.kid)
    with pytest.raises(CommandError) as unknown:
        run_oidc_keys("withdraw", "no-such-kid")

    assert str(active.value) == (
        f"Key {new.kid} signs new tokens and cannot be withdrawn: make another key sign first "
        "(`oidc_keys add`, then `oidc_keys activate <new kid> --force`), then withdraw it."
    )
    assert str(unknown.value) == "No key no-such-kid."
    assert (states(), AuditEvent.objects.count(), published_kids()) == before


@pytest.mark.parametrize("first", ["v", "C", "-"])
def test_oidc_keys_reads_a_kid_that_starts_with_a_dash_as_the_kid(first: str) -> None:
    """One thumbprint in 64 starts with "-"; `-v...` would otherwise be read as the verbosity."""
    dash_kid = f"-{first}" + "Q" * 41
    run_oidc_keys("add")
    [pending] = SigningKey.objects.filter(state=SigningKey.State.NEXT)
    SigningKey.objects.filter(pk=pending.pk).update(kid=dash_kid)

    output = run_oidc_keys("withdraw", dash_kid)
    with pytest.raises(CommandError) as activate:
        run_oidc_keys("activate", dash_kid, "--force")
    with pytest.raises(CommandError) as both:
        run_oidc_keys("withdraw", "some-kid", dash_kid)
    with pytest.raises(CommandError) as neither:
        run_oidc_keys("withdraw")

    assert output.startswith(f"Withdrew {dash_kid}: out of this process's JWKS now")
    assert SigningKey.objects.get(pk=pending.pk).state == SigningKey.State.RETIRED
    assert str(activate.value) == "This key is no longer published; add a new key instead."
    assert str(both.value) == "Give one kid."
    assert str(neither.value) == "Error: the following arguments are required: kid"


def test_oidc_keys_list_says_when_no_key_can_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    retired_kid = setting_kid()
    run_oidc_keys("add")
    [new] = SigningKey.objects.filter(state=SigningKey.State.NEXT)
    run_oidc_keys("activate", new.kid, "--force")
    run_oidc_keys("withdraw", retired_kid)
    break_ciphertext(new, monkeypatch)

    output, errors = run_oidc_keys_with_warnings("list")

    assert output.splitlines()[3:] == [
        f"{new.kid} (active) cannot be used: it does not decrypt with the configured keys (or does not "
        "match its kid), so it is left out of the JWKS.",
        f"OIDC_RSA_PRIVATE_KEY (kid {retired_kid}) is retired: it never signs or is published again, not "
        "even as the fallback; `oidc_keys prune` keeps its row while the setting holds this key.",
    ]
    assert errors == (
        "Error: No key can sign ID tokens, as no active key in the table can be used and "
        f"OIDC_RSA_PRIVATE_KEY (kid {retired_kid}) was retired, so it does not stand in. Make a key of the "
        "table sign (`oidc_keys add`, then `oidc_keys activate <new kid> --force`), or configure the "
        "encryption key the active key was stored with again. Until then every token request that returns "
        "an ID token fails.\n"
    )


def test_oidc_keys_list_says_when_the_setting_key_signs_as_the_fallback(
    clock: Clock, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = signing_key_add()
    signing_key_activate(key=new, force=True)
    new_setting_kid = replace_setting_key(settings)
    clock.advance(RETIRED_KEY_PUBLISHED_SECONDS)
    signing_keys_prune()
    assert run_oidc_keys("list").splitlines()[2:] == [
        f"OIDC_RSA_PRIVATE_KEY (kid {new_setting_kid}) is not used: the table's keys sign (it is the "
        "fallback if no active key in the table can be used)."
    ]
    break_ciphertext(new, monkeypatch)

    output, errors = run_oidc_keys_with_warnings("list")

    assert output.splitlines()[2:] == [
        f"{new.kid} (active) cannot be used: it does not decrypt with the configured keys (or does not "
        "match its kid), so it is left out of the JWKS."
    ]
    assert errors == (
        f"Error: no active key in the table can be used: OIDC_RSA_PRIVATE_KEY (kid {new_setting_kid}) signs "
        "as the fallback, and is published. Make a key of the table sign (`oidc_keys add`, then "
        "`oidc_keys activate <new kid> --force`).\n"
    )
    assert published_kids() == [new_setting_kid]


def test_the_hourly_beat_job_prunes_retired_keys(clock: Clock) -> None:
    first = signing_key_add()
    signing_key_activate(key=first, force=True)
    signing_key_activate(key=signing_key_add(), force=True)
    clock.advance(RETIRED_KEY_PUBLISHED_SECONDS)

    assert signing_keys_prune_task.delay().get() == [first.kid]  # the setting key's row stays
    assert signing_keys_prune_task.delay().get() == []  # idempotent
    entry = celery_app.conf.beat_schedule["oauth-signing-keys-prune"]
    assert entry["task"] == signing_keys_prune_task.name == "oauth_provider.signing_keys_prune"
