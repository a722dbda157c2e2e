"""Client secrets are checked with a fast salted HMAC, never a password KDF (docs/decisions/0015)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.contrib.auth import hashers
from django.contrib.auth.hashers import check_password, identify_hasher, make_password
from django.utils.module_loading import import_string

from oauth_provider.hashers import ClientSecretHasher
from oauth_provider.models import Application
from oauth_provider.services import application_rotate_secret
from oauth_provider.tests.token_flows import basic_auth, oauth_error, registered_client, token_request

pytestmark = pytest.mark.django_db

SLOW_HASHERS: tuple[type[hashers.BasePasswordHasher], ...] = (
    hashers.Argon2PasswordHasher,
    hashers.PBKDF2PasswordHasher,
    hashers.PBKDF2SHA1PasswordHasher,
    import_string("django.contrib.auth.hashers.ScryptPasswordHasher"),  # not in django-stubs
)


@pytest.fixture
def hasher_calls() -> Iterator[Counter[str]]:
    """How often each hasher encoded or verified something (wrapping, not replacing, them)."""
    calls: Counter[str] = Counter()
    patches = []
    hasher: type[hashers.BasePasswordHasher]
    for hasher in (*SLOW_HASHERS, ClientSecretHasher):
        for method in ("encode", "verify", "harden_runtime"):
            original = getattr(hasher, method)

            def counted(
                self: Any,
                *args: Any,
                _original: Any = original,
                _name: str = str(hasher.algorithm),
                **kwargs: Any,
            ) -> Any:
                calls[_name] += 1
                return _original(self, *args, **kwargs)

            patches.append(mock.patch.object(hasher, method, counted))
    for patch in patches:
        patch.start()
    yield calls
    for patch in patches:
        patch.stop()


def client_credentials(client_id: str, secret: str) -> Any:
    return token_request(
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    )


def test_new_secrets_are_stored_under_the_fast_hasher() -> None:
    client = registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS)

    stored = Application.objects.get(pk=client.application.pk).client_secret

    assert stored.startswith("client_secret_sha256$")
    assert client.secret not in stored
    assert check_password(client.secret, stored)
    assert not check_password(client.secret + "x", stored)


def test_a_token_request_runs_no_password_kdf(hasher_calls: Counter[str]) -> None:
    client = registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS, allowed_scopes="users:read")
    hasher_calls.clear()

    basic = token_request({"grant_type": "client_credentials"}, Authorization=basic_auth(client))
    posted = client_credentials(client.client_id, client.secret)

    assert basic.status_code == posted.status_code == 200
    assert hasher_calls == Counter({"client_secret_sha256": 4})  # one encode + one verify each
    assert not any(hasher_calls[str(hasher.algorithm)] for hasher in SLOW_HASHERS)


def test_a_secret_stored_under_an_older_hasher_still_works_and_is_rehashed_once(
    hasher_calls: Counter[str],
) -> None:
    client = registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS, allowed_scopes="users:read")
    legacy = make_password(client.secret, hasher="pbkdf2_sha256")
    Application.objects.filter(pk=client.application.pk).update(client_secret=legacy)
    hasher_calls.clear()

    first = client_credentials(client.client_id, client.secret)
    after_first = Counter(hasher_calls)
    second = client_credentials(client.client_id, client.secret)

    assert first.status_code == second.status_code == 200
    assert after_first["pbkdf2_sha256"] > 0  # paid once, on the first request
    assert hasher_calls["pbkdf2_sha256"] == after_first["pbkdf2_sha256"]  # and never again
    stored = Application.objects.get(pk=client.application.pk).client_secret
    assert identify_hasher(stored).algorithm == "client_secret_sha256"
    assert check_password(client.secret, stored)


def test_a_wrong_secret_is_refused_under_either_hasher() -> None:
    client = registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS, allowed_scopes="users:read")

    fast = client_credentials(client.client_id, "wrong")
    Application.objects.filter(pk=client.application.pk).update(
        client_secret=make_password(client.secret, hasher="pbkdf2_sha256")
    )
    legacy = client_credentials(client.client_id, "wrong")

    assert fast.status_code == legacy.status_code == 401
    assert fast.json() == legacy.json() == oauth_error("invalid_client")
    assert (
        identify_hasher(Application.objects.get(pk=client.application.pk).client_secret).algorithm
        == "pbkdf2_sha256"
    )


def test_a_rotated_secret_replaces_the_old_one_at_once() -> None:
    client = registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS, allowed_scopes="users:read")

    rotated = application_rotate_secret(application=client.application)

    assert client_credentials(client.client_id, client.secret).status_code == 401
    assert client_credentials(client.client_id, rotated.client_secret).status_code == 200


def test_a_public_client_never_authenticates_with_an_empty_secret() -> None:
    client = registered_client(confidential=False, grant_type=Application.GRANT_CLIENT_CREDENTIALS)

    response = client_credentials(client.client_id, "")

    assert response.status_code == 401
    assert response.json() == oauth_error("invalid_client")


def test_user_passwords_never_use_the_client_secret_hasher() -> None:
    assert settings.PASSWORD_HASHERS[-1] == "oauth_provider.hashers.ClientSecretHasher"
    assert identify_hasher(make_password("a-user-password-1234")).algorithm != "client_secret_sha256"
    assert settings.OAUTH2_PROVIDER["CLIENT_SECRET_HASHER"] == "client_secret_sha256"


def test_the_hasher_is_salted_and_checks_in_constant_time() -> None:
    hasher = ClientSecretHasher()

    first, second = hasher.encode("s3cret", hasher.salt()), hasher.encode("s3cret", hasher.salt())

    assert first != second
    assert hasher.verify("s3cret", first)
    assert hasher.verify("s3cret", second)
    assert not hasher.verify("s3creT", first)
    assert not hasher.verify("s3cret", "md5$salt$hash")
    assert hasher.must_update(first) is False
    assert set(hasher.safe_summary(first)) == {"algorithm", "salt", "hash"}
