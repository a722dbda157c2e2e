"""Key material the settings need: secrets made once into the data folder for the embedded default,
then reused; and the rules a configured signing or encryption key must meet in production
(docs/decisions/0003).

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
# Every other HMAC or encryption key: 32 characters, as many bytes as HS256's and Fernet's keys.
MIN_KEY_LENGTH = 32
MIN_RSA_KEY_BITS = 2048
# Parts of the values examples show (.env.example, the docs, tutorials): a key containing one was
# copied, not generated. Compared in lower case.
PLACEHOLDER_MARKERS = (
    "change-me",
    "change_me",
    "changeme",
    "replace-me",
    "example",
    "placeholder",
    "your-",
    "your_",
    # Long enough that a random key never holds it by chance (a 4-letter run would, once in 10,000).
    "xxxxxxxx",
    "...",
    "<",
)


def secret_key_is_weak(key: str) -> bool:
    """Apply the same rule as Django's security.W009 deploy check."""
    return (
        len(key) < MIN_SECRET_KEY_LENGTH
        or len(set(key)) < MIN_SECRET_KEY_UNIQUE_CHARACTERS
        or key.startswith("django-insecure-")
    )


def key_problem(value: str) -> str | None:
    """Why `value` must not sign or encrypt anything (the value itself never in it), or None."""
    if not value.strip():
        return "empty"
    lowered = value.lower()
    if any(marker in lowered for marker in PLACEHOLDER_MARKERS):
        return "an example placeholder"
    if len(value) < MIN_KEY_LENGTH:
        return f"shorter than {MIN_KEY_LENGTH} characters"
    if len(set(value)) < MIN_SECRET_KEY_UNIQUE_CHARACTERS:
        return f"made of fewer than {MIN_SECRET_KEY_UNIQUE_CHARACTERS} distinct characters"
    return None


def secret_key_problem(value: str) -> str | None:
    """`key_problem`, and Django's own rule for its secret key (the security.W009 deploy check)."""
    problem = key_problem(value)
    if problem is None and secret_key_is_weak(value):
        return (
            f"weak (Django asks for at least {MIN_SECRET_KEY_LENGTH} random characters, not starting with "
            "'django-insecure-')"
        )
    return problem


def rsa_key_problem(pem: str) -> str | None:
    """Why `pem` cannot sign ID tokens: not a PEM RSA private key of at least 2048 bits."""
    if "-----BEGIN" not in pem:
        # Not even PEM: say what it is (empty, or an example's placeholder) when that is the reason.
        return key_problem(pem) or "not a PEM private key without a password"
    # A PEM block's base64 body is random text: example markers would match it by chance.
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        return "not a PEM private key without a password"
    if not isinstance(key, rsa.RSAPrivateKey):
        return "not an RSA key"
    if key.key_size < MIN_RSA_KEY_BITS:
        return f"an RSA key shorter than {MIN_RSA_KEY_BITS} bits"
    return None


def configured_key_problems(
    *,
    secret_key: str,
    secret_key_fallbacks: list[str],
    jwt_signing_key: str,
    oidc_rsa_private_key: str,
    mfa_encryption_keys: list[str],
    audit_chain_keys: list[str],
) -> list[str]:
    """Each configured signing or encryption key that must not be used, as "NAME is <why>"."""
    problems = []
    for name, problem in [
        ("DJANGO_SECRET_KEY", secret_key_problem(secret_key)),
        *(
            (f"DJANGO_SECRET_KEY_FALLBACKS value {n}", key_problem(key))
            for n, key in enumerate(secret_key_fallbacks, 1)
        ),
        # By default the secret key signs JWTs too: then it is checked once, under its own name.
        ("JWT_SIGNING_KEY", key_problem(jwt_signing_key) if jwt_signing_key != secret_key else None),
        ("OIDC_RSA_PRIVATE_KEY", rsa_key_problem(oidc_rsa_private_key)),
        *(
            (f"MFA_ENCRYPTION_KEYS value {n}", key_problem(key))
            for n, key in enumerate(mfa_encryption_keys, 1)
        ),
        *((f"AUDIT_CHAIN_KEYS value {n}", key_problem(key)) for n, key in enumerate(audit_chain_keys, 1)),
        # Required: no audit event can be written without one (the embedded default generates it).
        ("AUDIT_CHAIN_KEYS", None if audit_chain_keys else "empty"),
    ]:
        if problem is not None:
            problems.append(f"{name} is {problem}")
    return problems


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
