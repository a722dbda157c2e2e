"""Writes on signing keys: add, activate (the active key retires), withdraw, prune, the safe rotation,
and re-encryption under the current encryption key (`manage.py secrets_reencrypt`).

The lifecycle and why each wait (docs/decisions/0013-oauth-keys-and-discovery.md):
`next` (published, not signing) → `active` (signs) → `retired` (published until `publish_until`)
→ deleted. A leaked `next` or `retired` key is withdrawn: retired with `publish_until` = now, out of
the JWKS at once. The `OIDC_RSA_PRIVATE_KEY` setting's row is never deleted once retired: it is what
keeps the setting from standing in as the fallback signer again
(oauth_provider/selectors/signing_keys.py). Every step is audited with the kid, never the key
material.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from jwcrypto import jwk
from oauth2_provider.settings import oauth2_settings

from accounts.encryption import secret_encrypt, secret_reencrypt
from accounts.models import User
from accounts.services.secrets import ReencryptionCounts
from audit.services import audit_record
from oauth_provider.models import SigningKey
from oauth_provider.selectors.signing_keys import (
    jwks_max_age_seconds,
    key_ring,
    key_ring_invalidate,
    private_key_parse,
    refresh_seconds,
    setting_key_kid,
    signing_key_activatable_at,
)

RSA_KEY_BITS = 2048
MIN_RSA_KEY_BITS = 2048


@dataclass(frozen=True)
class RotationStep:
    """What `signing_keys_rotate` did: `added`, `activated` or `waiting` (nothing changed)."""

    action: str
    key: SigningKey
    activatable_at: datetime | None = None
    retired: SigningKey | None = None


def retired_key_publish_until(retired_at: datetime) -> datetime:
    """When a key retired at `retired_at` may leave the JWKS: every token it signed has expired.

    The longest token lifetime (a worker that has not yet seen the activation may sign for one
    more refresh interval), plus one JWKS lifetime as a margin for verifiers' clocks and caches.
    """
    longest_token = max(oauth2_settings.ID_TOKEN_EXPIRE_SECONDS, oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS)
    return retired_at + timedelta(seconds=longest_token + refresh_seconds() + jwks_max_age_seconds())


def _new_private_key_pem() -> str:
    key = jwk.JWK.generate(kty="RSA", size=RSA_KEY_BITS)
    return key.export_to_pem(private_key=True, password=None).decode()


def _validated_key(pem: str) -> jwk.JWK:
    try:
        loaded = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as error:
        raise ValidationError("Not an unencrypted PEM private key.", code="signing_key_invalid") from error
    if not isinstance(loaded, rsa.RSAPrivateKey) or loaded.key_size < MIN_RSA_KEY_BITS:
        raise ValidationError(
            "Signing keys are RSA keys of at least %(bits)s bits.",
            code="signing_key_invalid",
            params={"bits": MIN_RSA_KEY_BITS},
        )
    return private_key_parse(pem)


def _lock_keys() -> list[SigningKey]:
    """Serialize key changes: every row locked until the transaction ends (the table is tiny)."""
    return list(SigningKey.objects.select_for_update().order_by("id"))


def _locked(key: SigningKey) -> tuple[SigningKey, list[SigningKey]]:
    """`key` as it is now, and every key row, all locked (`_lock_keys`)."""
    rows = _lock_keys()
    current = next((row for row in rows if row.pk == key.pk), None)
    if current is None:
        raise ValidationError("This signing key no longer exists.", code="signing_key_missing")
    return current, rows


def _keys_changed() -> None:
    # This process re-reads at once; the others within OAUTH_SIGNING_KEYS_REFRESH_SECONDS.
    key_ring_invalidate()
    transaction.on_commit(key_ring_invalidate)


def _save(key: SigningKey) -> None:
    key.full_clean()
    key.save()


def _key_add(*, pem: str, state: str, source: str, actor: User | None, now: datetime) -> SigningKey:
    """Store `pem` encrypted as a key in `state`, and record `oauth.signing_key.added`."""
    key = SigningKey(
        kid=_validated_key(pem).thumbprint(),
        state=state,
        private_key_encrypted=secret_encrypt(pem),
        created_at=now,
        activated_at=now if state == SigningKey.State.ACTIVE else None,
    )
    _save(key)
    audit_record(
        action="oauth.signing_key.added",
        actor=actor,
        target=key,
        metadata={"kid": key.kid, "algorithm": key.algorithm, "state": key.state, "source": source},
    )
    return key


def _import_setting_key(*, actor: User | None, now: datetime) -> SigningKey:
    """Make the `OIDC_RSA_PRIVATE_KEY` setting, which signed every token so far, the table's active key."""
    return _key_add(
        pem=oauth2_settings.OIDC_RSA_PRIVATE_KEY,
        state=SigningKey.State.ACTIVE,
        source="setting",
        actor=actor,
        now=now,
    )


@transaction.atomic
def signing_key_add(*, actor: User | None = None, private_key_pem: str | None = None) -> SigningKey:
    """Publish a new key (generated, or the PEM given); it signs only once activated."""
    now = timezone.now()
    if not _lock_keys():
        _import_setting_key(actor=actor, now=now)
    pem = private_key_pem if private_key_pem is not None else _new_private_key_pem()
    key = _key_add(pem=pem, state=SigningKey.State.NEXT, source="new", actor=actor, now=now)
    _keys_changed()
    return key


@transaction.atomic
def signing_key_activate(*, key: SigningKey, actor: User | None = None, force: bool = False) -> SigningKey:
    """Sign with `key` from now on; the active key retires and stays published until its tokens expire.

    Refused while `key` has been published for less than one JWKS lifetime (verifiers holding a
    cached JWKS would not know it), unless `force`d.
    """
    now = timezone.now()
    key, rows = _locked(key)
    if key.state == SigningKey.State.ACTIVE:
        raise ValidationError("This key already signs.", code="signing_key_already_active")
    if key.state == SigningKey.State.RETIRED and key.publish_until is not None and key.publish_until <= now:
        raise ValidationError(
            "This key is no longer published; add a new key instead.", code="signing_key_unpublished"
        )
    activatable_at = signing_key_activatable_at(key)
    if now < activatable_at and not force:
        raise ValidationError(
            "Key %(kid)s has been published since %(since)s; verifiers may cache the JWKS for "
            "%(max_age)s seconds, so it can sign from %(at)s (or force it).",
            code="signing_key_too_new",
            params={
                "kid": key.kid,
                "since": key.created_at.isoformat(),
                "max_age": jwks_max_age_seconds(),
                "at": activatable_at.isoformat(),
            },
        )
    previous = next((row for row in rows if row.state == SigningKey.State.ACTIVE), None)
    if previous is not None:
        previous.state = SigningKey.State.RETIRED
        previous.retired_at = now
        previous.publish_until = retired_key_publish_until(now)
        _save(previous)
        audit_record(
            action="oauth.signing_key.retired",
            actor=actor,
            target=previous,
            metadata={"kid": previous.kid, "publish_until": previous.publish_until.isoformat()},
        )
    key.state = SigningKey.State.ACTIVE
    key.activated_at = now
    key.retired_at = None
    key.publish_until = None
    _save(key)
    audit_record(
        action="oauth.signing_key.activated",
        actor=actor,
        target=key,
        metadata={"kid": key.kid, "forced": force, "previous_kid": previous.kid if previous else None},
    )
    _keys_changed()
    return key


@transaction.atomic
def signing_key_withdraw(*, key: SigningKey, actor: User | None = None) -> SigningKey:
    """Take a leaked `next` or `retired` key out of the JWKS now; ID tokens it signed stop verifying.

    The key becomes what a retired key is once its tokens have expired: `retired` with
    `publish_until` = now. It is unpublished at once, cannot be activated again, and `prune`
    deletes it — except the `OIDC_RSA_PRIVATE_KEY` setting's row, kept so the setting never stands
    in as the fallback again. The key that signs is refused: another key must sign first.
    """
    now = timezone.now()
    key, _ = _locked(key)
    if key.state == SigningKey.State.ACTIVE:
        raise ValidationError(
            "Key %(kid)s signs new tokens and cannot be withdrawn: make another key sign first "
            "(`oidc_keys add`, then `oidc_keys activate <new kid> --force`), then withdraw it.",
            code="signing_key_active",
            params={"kid": key.kid},
        )
    if key.state == SigningKey.State.RETIRED and key.publish_until is not None and key.publish_until <= now:
        raise ValidationError(
            "Key %(kid)s is already out of the JWKS (since %(since)s).",
            code="signing_key_unpublished",
            params={"kid": key.kid, "since": key.publish_until.isoformat()},
        )
    key_ring_invalidate()  # the table as it is now: the rows are locked
    signing = key_ring().signing
    if signing is not None and signing.from_setting and signing.kid == key.kid:
        # No active row can be used, so the OIDC_RSA_PRIVATE_KEY setting signs as the fallback
        # (its row is `next`): withdrawing it would leave no key to sign ID tokens.
        raise ValidationError(
            "Key %(kid)s is OIDC_RSA_PRIVATE_KEY, which signs because no active key in the table can "
            "be used (see the error log): make another key sign first (`oidc_keys add`, then "
            "`oidc_keys activate <new kid> --force`), then withdraw it.",
            code="signing_key_active",
            params={"kid": key.kid},
        )
    key.state = SigningKey.State.RETIRED
    key.retired_at = key.retired_at or now
    key.publish_until = now
    _save(key)
    audit_record(action="oauth.signing_key.withdrawn", actor=actor, target=key, metadata={"kid": key.kid})
    _keys_changed()
    return key


def retired_setting_key(keys: Iterable[SigningKey]) -> SigningKey | None:
    """The row that says the `OIDC_RSA_PRIVATE_KEY` setting was retired (or withdrawn), if any.

    While it exists the setting never signs or is published as the fallback, so `prune` keeps it
    (unpublished, past `publish_until`) for as long as the setting holds that key.
    """
    if not oauth2_settings.OIDC_RSA_PRIVATE_KEY:
        return None
    kid = setting_key_kid()
    return next((key for key in keys if key.kid == kid and key.state == SigningKey.State.RETIRED), None)


@transaction.atomic
def signing_keys_prune(*, actor: User | None = None) -> list[str]:
    """Delete retired keys past `publish_until` (idempotent); return their kids.

    The setting key's retired row stays (one row at most: the kid is unique): deleting it would let
    the setting sign and be published again as the fallback.
    """
    now = timezone.now()
    tombstone = retired_setting_key(_lock_keys())
    expired = SigningKey.objects.filter(state=SigningKey.State.RETIRED, publish_until__lte=now)
    if tombstone is not None:
        expired = expired.exclude(pk=tombstone.pk)
    due = list(expired.order_by("id"))
    for key in due:
        audit_record(
            action="oauth.signing_key.pruned",
            actor=actor,
            target=key,
            metadata={
                "kid": key.kid,
                "publish_until": key.publish_until.isoformat() if key.publish_until else None,
            },
        )
        key.delete()
    if due:
        _keys_changed()
    return [key.kid for key in due]


@transaction.atomic
def signing_keys_rotate(*, actor: User | None = None) -> RotationStep:
    """Take the step of the safe rotation that is due: add a key, or activate one published long enough."""
    now = timezone.now()
    pending = max(
        (row for row in _lock_keys() if row.state == SigningKey.State.NEXT),
        key=lambda row: (row.created_at, row.pk),
        default=None,
    )
    if pending is None:
        added = signing_key_add(actor=actor)
        return RotationStep(action="added", key=added, activatable_at=signing_key_activatable_at(added))
    activatable_at = signing_key_activatable_at(pending)
    if now < activatable_at:
        return RotationStep(action="waiting", key=pending, activatable_at=activatable_at)
    previous = SigningKey.objects.filter(state=SigningKey.State.ACTIVE).first()
    activated = signing_key_activate(key=pending, actor=actor)
    if previous is not None:
        previous.refresh_from_db()
    return RotationStep(action="activated", key=activated, retired=previous)


@transaction.atomic
def signing_keys_reencrypt() -> ReencryptionCounts:
    """Encrypt every stored private key under the first encryption key; report the kids no key decrypts.

    Part of `accounts.services.secrets.secrets_reencrypt`, which records the one audit event
    of the run. One short transaction under the lock every key change takes (the table is tiny).
    A key already under the first key, or unreadable, is left as it is.
    """
    reencrypted = current = 0
    failed: list[str] = []
    for key in _lock_keys():
        try:
            token = secret_reencrypt(key.private_key_encrypted)
        except (InvalidToken, ValueError):
            failed.append(key.kid)
            continue
        if token == key.private_key_encrypted:
            current += 1
            continue
        key.private_key_encrypted = token
        _save(key)
        reencrypted += 1
    if reencrypted:
        _keys_changed()
    return ReencryptionCounts(reencrypted=reencrypted, current=current, failed=tuple(failed))
