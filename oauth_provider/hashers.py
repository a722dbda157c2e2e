"""A fast hash for OAuth client secrets (docs/decisions/0015-oauth-tokens-and-grants.md).

Client secrets are 128 random characters the toolkit generates: nobody can guess one, so the
only thing a slow password KDF would buy is hundreds of milliseconds on every token request.
One salted HMAC-SHA-256 keeps a stolen table useless (the secret cannot be read back, and the
salt makes each row its own problem) at the cost of a microsecond.

It is listed in PASSWORD_HASHERS *after* the password hashers, so Django never hashes a user's
password with it; the toolkit uses it through `OAUTH2_PROVIDER["CLIENT_SECRET_HASHER"]`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.contrib.auth.hashers import BasePasswordHasher, mask_hash
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext_noop as _


class ClientSecretHasher(BasePasswordHasher):
    """`client_secret_sha256$<salt>$<hex HMAC-SHA-256 of the secret, keyed by the salt>`."""

    algorithm = "client_secret_sha256"

    def encode(self, password: str, salt: str) -> str:
        if password is None or not salt or "$" in salt:
            raise ValueError("A password and a salt without '$' are needed.")
        digest = hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()
        return f"{self.algorithm}${salt}${digest}"

    def decode(self, encoded: str) -> dict[str, str]:
        algorithm, salt, digest = encoded.split("$", 2)
        if algorithm != self.algorithm:
            raise ValueError(f"Not a {self.algorithm} hash.")
        return {"algorithm": algorithm, "salt": salt, "hash": digest}

    def verify(self, password: str, encoded: str) -> bool:
        try:
            salt = self.decode(encoded)["salt"]
        except ValueError:
            return False
        return constant_time_compare(encoded, self.encode(password, salt))

    def safe_summary(self, encoded: str) -> dict[Any, Any]:
        decoded = self.decode(encoded)
        return {
            _("algorithm"): decoded["algorithm"],
            _("salt"): mask_hash(decoded["salt"], show=2),
            _("hash"): mask_hash(decoded["hash"]),
        }

    def must_update(self, encoded: str) -> bool:
        return False

    def harden_runtime(self, password: str, encoded: str) -> None:
        # Nothing to even out: every secret is checked with the same single HMAC.
        return None
