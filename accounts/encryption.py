"""Encryption of the second-factor secrets allauth stores (TOTP keys, recovery-code seeds).

allauth.mfa keeps them in `Authenticator.data` and leaves encryption to its adapter's
`encrypt`/`decrypt` hooks, which do nothing by default: a database dump would hand over every
user's authenticator. They are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under keys
derived from `MFA_ENCRYPTION_KEYS` (the first encrypts; the others still decrypt, for rotation),
or by default from `DJANGO_SECRET_KEY` and its fallbacks, so rotating the secret key the usual
way (old key into `DJANGO_SECRET_KEY_FALLBACKS`) keeps every factor readable. Nothing but
`manage.py secrets_reencrypt` (accounts.services.secrets) moves stored values to the first key,
which must run before an old key is dropped.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

HKDF_INFO = b"identity-service mfa secrets v1"


def _fernet_key(material: str) -> bytes:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(material.encode())
    return base64.urlsafe_b64encode(derived)


@lru_cache(maxsize=8)
def _fernet(key: str) -> Fernet:
    return Fernet(_fernet_key(key))


@lru_cache(maxsize=4)
def _box(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(key) for key in keys])


def _keys() -> tuple[str, ...]:
    configured = [key for key in getattr(settings, "MFA_ENCRYPTION_KEYS", []) if key]
    if configured:
        return tuple(configured)
    return (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", []))


def secret_encrypt(text: str) -> str:
    return _box(_keys()).encrypt(text.encode()).decode("ascii")


def secret_decrypt(token: str) -> str:
    """Decrypt with any of the keys; `cryptography.fernet.InvalidToken` if none fits."""
    return _box(_keys()).decrypt(token.encode("ascii")).decode()


def secret_reencrypt(token: str) -> str:
    """`token` encrypted under the first key: `token` itself if it already is.

    `cryptography.fernet.InvalidToken` if none of the keys decrypts it. Leaving a current token
    as it is makes a second pass over the stored values write nothing.
    """
    keys = _keys()
    data = token.encode("ascii")
    try:
        _fernet(keys[0]).decrypt(data)
    except InvalidToken:
        return _box(keys).rotate(data).decode("ascii")
    return token
