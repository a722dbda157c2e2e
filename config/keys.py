"""Secrets for the embedded default: made once into the data folder, then reused.

Imported by settings, so it must not import Django models or settings.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

MIN_SECRET_KEY_LENGTH = 50
MIN_SECRET_KEY_UNIQUE_CHARACTERS = 5


def secret_key_is_weak(key: str) -> bool:
    """Apply the same rule as Django's security.W009 deploy check."""
    return (
        len(key) < MIN_SECRET_KEY_LENGTH
        or len(set(key)) < MIN_SECRET_KEY_UNIQUE_CHARACTERS
        or key.startswith("django-insecure-")
    )


def _write_private_file(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two processes starting at once never overwrite each other's key.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(content)


def _load_or_create(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process made it first
            _write_private_file(path, make())
    return path.read_text()


def _new_secret_key() -> str:
    return secrets.token_urlsafe(64)


def new_rsa_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode()


def load_or_create_secret_key(path: Path) -> str:
    """Return the Django secret key stored at `path`, generating it on first use."""
    return _load_or_create(path, _new_secret_key).strip()


def load_or_create_rsa_key(path: Path) -> str:
    """Return the PEM RSA signing key stored at `path`, generating it on first use."""
    return _load_or_create(path, new_rsa_key)
