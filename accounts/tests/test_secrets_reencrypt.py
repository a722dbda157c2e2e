"""`manage.py secrets_reencrypt`: after it, the old encryption key can go and every second factor and
signing key still works; unreadable values are reported by id and fail the run; a second run is a no-op."""

from __future__ import annotations

import io
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from cryptography.fernet import Fernet, InvalidToken
from django.contrib.auth import SESSION_KEY
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from accounts.encryption import secret_decrypt, secret_encrypt, secret_reencrypt
from accounts.models import User
from accounts.tests.factories import (
    UserFactory,
    recovery_codes_enrol,
    sign_in_through_pages,
    totp_code,
    totp_enrol,
)
from audit.models import AuditEvent
from oauth_provider.models import SigningKey
from oauth_provider.selectors import signing_keys as keys
from oauth_provider.services.signing_keys import signing_key_activate, signing_key_add
from oauth_provider.tests.test_keys import (
    header_kid,
    id_token_from_code_flow,
    published_kids,
    relying_party,
    setting_kid,
    token_verifies,
)

pytestmark = pytest.mark.django_db

OLD_KEY = "old-encryption-key-" + "o" * 40
NEW_KEY = "new-encryption-key-" + "n" * 40


# --- rotating the keys the way docs/operations.md tells operators to --------------------------------


class Rotation:
    """One of the two ways to rotate: DJANGO_SECRET_KEY (+ fallbacks), or MFA_ENCRYPTION_KEYS."""

    def __init__(self, settings: Any, kind: str) -> None:
        self.settings = settings
        self.kind = kind
        if kind == "mfa_encryption_keys":
            settings.MFA_ENCRYPTION_KEYS = [OLD_KEY]
        else:
            settings.SECRET_KEY = OLD_KEY
            settings.SECRET_KEY_FALLBACKS = []

    def roll(self) -> None:
        """Step 1: the new key encrypts, the old one still decrypts."""
        if self.kind == "mfa_encryption_keys":
            self.settings.MFA_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
        else:
            self.settings.SECRET_KEY = NEW_KEY
            self.settings.SECRET_KEY_FALLBACKS = [OLD_KEY]

    def drop_old_key(self) -> None:
        """Step 2: the old key is gone."""
        if self.kind == "mfa_encryption_keys":
            self.settings.MFA_ENCRYPTION_KEYS = [NEW_KEY]
        else:
            self.settings.SECRET_KEY_FALLBACKS = []


@pytest.fixture(params=["secret_key", "mfa_encryption_keys"])
def rotation(request: pytest.FixtureRequest, settings: Any) -> Rotation:
    return Rotation(settings, request.param)


@pytest.fixture(autouse=True)
def _new_process_key_ring(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key ring of its own: the module's copy keeps keys parsed by earlier tests."""
    monkeypatch.setattr(keys, "_cache", keys.KeyRingCache())


def restart_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker started now sees: no key parsed before the old encryption key went."""
    monkeypatch.setattr(keys, "_cache", keys.KeyRingCache())


def reencrypt(*args: str) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("secrets_reencrypt", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def summary(authenticators: tuple[int, int, int], signing_keys: tuple[int, int, int]) -> str:
    def line(label: str, counts: tuple[int, int, int]) -> str:
        reencrypted, current, failed = counts
        return (
            f"{label}: {reencrypted} re-encrypted, {current} already under the first key, "
            f"{failed} could not be decrypted.\n"
        )

    return line("Authenticators", authenticators) + line("Signing keys", signing_keys)


ALL_DONE = "Every stored secret is under the first key: older keys are no longer needed for them.\n"


def reencryption_events() -> list[tuple[str, dict[str, Any]]]:
    events = AuditEvent.objects.filter(action="accounts.secrets.reencrypted").order_by("id")
    return [(event.outcome, event.metadata) for event in events]


def counts(reencrypted: int, current: int, failed: int) -> dict[str, int]:
    return {"reencrypted": reencrypted, "current": current, "failed": failed}


def stored_data(user: User) -> dict[str, dict[str, Any]]:
    return {row.type: row.data for row in Authenticator.objects.filter(user=user)}


def stored_keys() -> dict[str, str]:
    return dict(SigningKey.objects.values_list("kid", "private_key_encrypted"))


def member() -> User:
    """A user with a verified primary address, as sign-up and verification leave them."""
    user = UserFactory.create()
    EmailAddress.objects.create(user=user, email=user.email.lower(), primary=True, verified=True)
    return user


def signed_in_user_id(client: Client) -> str | None:
    return client.session.get(SESSION_KEY)


def foreign_token(text: str) -> str:
    """`text` encrypted under a key this deployment never had."""
    return Fernet(Fernet.generate_key()).encrypt(text.encode()).decode("ascii")


# --- the helper --------------------------------------------------------------------------------


def test_secret_reencrypt_moves_a_token_to_the_first_key_and_leaves_a_current_one_as_it_is(
    rotation: Rotation,
) -> None:
    old = secret_encrypt("JBSWY3DPEHPK3PXP")
    rotation.roll()

    new = secret_reencrypt(old)
    rotation.drop_old_key()

    assert new != old
    assert secret_decrypt(new) == "JBSWY3DPEHPK3PXP"
    assert secret_reencrypt(new) == new
    with pytest.raises(InvalidToken):
        secret_decrypt(old)
    with pytest.raises(InvalidToken):
        secret_reencrypt(foreign_token("JBSWY3DPEHPK3PXP"))


# --- the rotation end to end -------------------------------------------------------------------------


def test_without_reencryption_dropping_the_old_key_loses_every_factor_and_signing_key(
    rotation: Rotation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the command prevents (and what the next test would otherwise not prove)."""
    user = UserFactory.create()
    totp_enrol(user)
    key = signing_key_add()
    rotation.roll()

    rotation.drop_old_key()
    restart_workers(monkeypatch)

    with pytest.raises(InvalidToken):
        secret_decrypt(stored_data(user)["totp"]["secret"])
    assert key.kid not in published_kids()


def test_after_reencryption_the_old_key_can_go_and_totp_recovery_codes_and_signing_keys_still_work(
    rotation: Rotation, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = member()
    secret = totp_enrol(user)
    codes = recovery_codes_enrol(user)
    key = signing_key_add()  # imports OIDC_RSA_PRIVATE_KEY as the active key, then adds `next`
    before = stored_keys()
    rotation.roll()

    stdout, stderr = reencrypt()
    rotation.drop_old_key()
    restart_workers(monkeypatch)

    assert stdout == summary((2, 0, 0), (2, 0, 0)) + ALL_DONE
    assert stderr == ""
    assert secret not in stdout
    assert all(stored_keys()[kid] != token for kid, token in before.items())
    assert reencryption_events() == [
        ("success", {"authenticators": counts(2, 0, 0), "signing_keys": counts(2, 0, 0)})
    ]
    # The TOTP code still signs the user in through the pages.
    browser = Client()
    response = sign_in_through_pages(browser, user, code=totp_code(secret))
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert signed_in_user_id(browser) == str(user.pk)
    # The recovery codes are the same.
    recovery = Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES)
    assert RecoveryCodes(recovery).generate_codes() == codes
    # Both signing keys decrypt: published, and the table's active key signs (not the fallback).
    assert sorted(published_kids()) == sorted([setting_kid(), key.kid])
    assert keys.signing_key().kid == setting_kid()
    assert keys.signing_key().from_setting is False
    # The new key signs once activated, and its ID tokens verify against the JWKS.
    signing_key_activate(key=key, force=True)
    token = id_token_from_code_flow(browser, relying_party())
    assert header_kid(token) == key.kid
    assert token_verifies(token)


def test_a_value_no_configured_key_decrypts_is_reported_by_id_fails_the_run_and_breaks_nothing_else(
    rotation: Rotation, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = member(), member()
    alice_secret = totp_enrol(alice)
    bob_secret = totp_enrol(bob)
    bob_totp = Authenticator.objects.get(user=bob, type=Authenticator.Type.TOTP)
    unreadable_secret = foreign_token(bob_secret)
    bob_totp.data["secret"] = unreadable_secret
    bob_totp.save(update_fields=["data"])
    key = signing_key_add()
    unreadable_key = foreign_token("-----BEGIN PRIVATE KEY-----")
    SigningKey.objects.filter(pk=key.pk).update(private_key_encrypted=unreadable_key)
    rotation.roll()

    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("secrets_reencrypt", stdout=stdout, stderr=stderr)

    assert failure.value.returncode == 1
    assert str(failure.value).startswith("2 stored values cannot be decrypted with any configured key")
    assert stdout.getvalue() == summary((1, 0, 1), (1, 0, 1))
    assert stderr.getvalue() == (
        f"Authenticators not decrypted (ids): {bob_totp.pk}\nSigning keys not decrypted (kids): {key.kid}\n"
    )
    output = stdout.getvalue() + stderr.getvalue() + str(failure.value)
    assert not any(value in output for value in (alice_secret, bob_secret, unreadable_secret, unreadable_key))
    # The unreadable values are left exactly as they were.
    assert stored_data(bob)["totp"]["secret"] == unreadable_secret
    assert stored_keys()[key.kid] == unreadable_key
    assert reencryption_events() == [
        ("failure", {"authenticators": counts(1, 0, 1), "signing_keys": counts(1, 0, 1)})
    ]
    # Everything else moved to the new key.
    rotation.drop_old_key()
    restart_workers(monkeypatch)
    browser = Client()
    sign_in_through_pages(browser, alice, code=totp_code(alice_secret))
    assert signed_in_user_id(browser) == str(alice.pk)
    assert published_kids() == [setting_kid()]
    assert keys.signing_key().from_setting is False


def test_running_twice_writes_nothing_the_second_time(rotation: Rotation) -> None:
    users = UserFactory.create_batch(3)
    for user in users:
        totp_enrol(user)
    signing_key_add()
    rotation.roll()
    reencrypt("--batch-size", "2")
    after_first = ({user.pk: stored_data(user) for user in users}, stored_keys())

    stdout, _ = reencrypt("--batch-size", "1")

    assert stdout == summary((0, 3, 0), (0, 2, 0)) + ALL_DONE
    assert ({user.pk: stored_data(user) for user in users}, stored_keys()) == after_first
    assert reencryption_events() == [
        ("success", {"authenticators": counts(3, 0, 0), "signing_keys": counts(2, 0, 0)}),
        ("success", {"authenticators": counts(0, 3, 0), "signing_keys": counts(0, 2, 0)}),
    ]


def test_a_batch_size_below_one_is_refused_and_changes_nothing(rotation: Rotation) -> None:
    user = UserFactory.create()
    totp_enrol(user)
    rotation.roll()
    before = stored_data(user)

    with pytest.raises(CommandError, match=r"^The batch size must be at least 1\.$"):
        reencrypt("--batch-size", "0")

    assert stored_data(user) == before
    assert reencryption_events() == []


def test_webauthn_credentials_are_not_touched(rotation: Rotation) -> None:
    user = UserFactory.create()
    credential = Authenticator.objects.create(
        user=user, type=Authenticator.Type.WEBAUTHN, data={"name": "Key", "credential": {"id": "abc"}}
    )
    rotation.roll()

    stdout, _ = reencrypt()

    assert stdout == summary((0, 0, 0), (0, 0, 0)) + ALL_DONE
    credential.refresh_from_db()
    assert credential.data == {"name": "Key", "credential": {"id": "abc"}}
