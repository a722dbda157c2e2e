"""Re-encryption of every stored secret under the first encryption key (`manage.py secrets_reencrypt`).

Second-factor secrets (allauth `Authenticator.data`) and OIDC signing keys
(`oauth_provider.SigningKey.private_key_encrypted`) are encrypted under the first of the keys
accounts.encryption derives (from `MFA_ENCRYPTION_KEYS`, or else `DJANGO_SECRET_KEY`) and decrypted
with any of them. A value stays under the key it was written with until it is written again, so an
old key may be dropped from `MFA_ENCRYPTION_KEYS` or `DJANGO_SECRET_KEY_FALLBACKS` only once this
has run (docs/operations.md, "Key and secret rotation").

Authenticators are walked in batches, each in a short transaction holding its rows' locks: the
same locks a sign-in takes before writing `data` (accounts.services.mfa), so a concurrent sign-in
waits for one batch at most and no write is lost. Values already under the first key are left as
they are, so a second run writes nothing. A value no configured key decrypts is left as it is and
reported by id, never by value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from allauth.mfa.models import Authenticator
from cryptography.fernet import InvalidToken
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.encryption import secret_reencrypt
from audit.models import AuditEvent
from audit.services import audit_record

DEFAULT_BATCH_SIZE = 500
# The authenticator types whose data allauth.mfa encrypts through the adapter (WebAuthn
# credentials are public keys, stored in the clear).
ENCRYPTED_AUTHENTICATOR_TYPES = (Authenticator.Type.TOTP, Authenticator.Type.RECOVERY_CODES)


@dataclass(frozen=True)
class ReencryptionCounts:
    """What one kind of stored value came to: moved to the first key, already there, unreadable."""

    reencrypted: int = 0
    current: int = 0
    failed: tuple[str, ...] = ()  # ids (authenticators) or kids (signing keys), never values

    def as_metadata(self) -> dict[str, int]:
        return {"reencrypted": self.reencrypted, "current": self.current, "failed": len(self.failed)}


@dataclass(frozen=True)
class SecretsReencryption:
    authenticators: ReencryptionCounts
    signing_keys: ReencryptionCounts

    @property
    def failed_count(self) -> int:
        return len(self.authenticators.failed) + len(self.signing_keys.failed)


def _reencrypted(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidToken  # missing or not a token: nothing any key could decrypt
    return secret_reencrypt(value)


def _reencrypted_data(authenticator: Authenticator) -> dict[str, Any]:
    """`authenticator.data` with its secrets under the first key; InvalidToken if one is unreadable."""
    data = dict(authenticator.data)
    if authenticator.type == Authenticator.Type.TOTP:
        data["secret"] = _reencrypted(data.get("secret"))
        return data
    # Recovery codes: a seed the codes are derived from, or the codes themselves when allauth
    # migrated them from another library (allauth.mfa.recovery_codes.internal.auth).
    if "migrated_codes" in data:
        codes = data["migrated_codes"]
        if not isinstance(codes, list):
            raise InvalidToken
        data["migrated_codes"] = [_reencrypted(code) for code in codes]
    if "seed" in data or "migrated_codes" not in data:
        data["seed"] = _reencrypted(data.get("seed"))
    return data


def authenticators_reencrypt(*, batch_size: int = DEFAULT_BATCH_SIZE) -> ReencryptionCounts:
    """Encrypt every TOTP secret and recovery-code seed under the first key, batch by batch."""
    if batch_size < 1:
        raise ValidationError("The batch size must be at least 1.", code="batch_size_invalid")
    reencrypted = current = 0
    failed: list[str] = []
    last_pk: Any = 0
    while True:
        with transaction.atomic():
            batch = list(
                Authenticator.objects.select_for_update()
                .filter(type__in=ENCRYPTED_AUTHENTICATOR_TYPES, pk__gt=last_pk)
                .order_by("pk")[:batch_size]
            )
            for authenticator in batch:
                try:
                    data = _reencrypted_data(authenticator)
                except (InvalidToken, ValueError):
                    failed.append(str(authenticator.pk))
                    continue
                if data == authenticator.data:
                    current += 1
                    continue
                authenticator.data = data
                authenticator.save(update_fields=["data"])
                reencrypted += 1
        if len(batch) < batch_size:
            break
        last_pk = batch[-1].pk
    return ReencryptionCounts(reencrypted=reencrypted, current=current, failed=tuple(failed))


def secrets_reencrypt(*, batch_size: int = DEFAULT_BATCH_SIZE) -> SecretsReencryption:
    """Encrypt every stored second-factor secret and signing key under the first key; audit the counts."""
    # oauth_provider builds on accounts (its models, this encryption): imported here, not at load.
    from oauth_provider.services.signing_keys import signing_keys_reencrypt

    authenticators = authenticators_reencrypt(batch_size=batch_size)
    signing_keys = signing_keys_reencrypt()
    result = SecretsReencryption(authenticators=authenticators, signing_keys=signing_keys)
    # The writes were committed batch by batch; the event records the run as a whole.
    with transaction.atomic():
        audit_record(
            action="accounts.secrets.reencrypted",
            outcome=AuditEvent.Outcome.FAILURE if result.failed_count else AuditEvent.Outcome.SUCCESS,
            metadata={
                "authenticators": authenticators.as_metadata(),
                "signing_keys": signing_keys.as_metadata(),
            },
        )
    return result
