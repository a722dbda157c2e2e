"""Signing keys as the toolkit uses them: the key that signs and the published set, parsed once.

Where the keys come from (docs/decisions/0013-oauth-keys-and-discovery.md):

- With no `SigningKey` rows, the `OIDC_RSA_PRIVATE_KEY` setting is the one active key: the embedded
  default, the tests, and every deployment until its first rotation.
- `signing_key_add` (oauth_provider/services/signing_keys.py) first imports that key into the
  table as the active key, so the key that signed every token so far stays published through the
  first rotation. From then on the table is the source of truth and the setting is only a fallback:
  it signs, and is published, when no row of the table can (none active, or the active one cannot be
  decrypted) — but only while no row with its kid says it was retired. Once the setting key has been
  retired (by a rotation, or withdrawn because it leaked) it never signs or is published again from
  the setting; `signing_keys_prune` keeps that row (unpublished) for as long as it is the setting's.
  With no key to sign, `signing_key()` raises `NoSigningKeyError` (logged when the ring is built):
  RS256 ID tokens fail rather than being signed with a retired key.

Each process keeps a `KeyRing` (the parsed jwcrypto keys by `kid`, and the JWKS document). It
re-reads the table's small index (kid, state, publish_until of every row: one query) at most every
`OAUTH_SIGNING_KEYS_REFRESH_SECONDS`, and decrypts and parses a PEM only for a published `kid` it
has not seen before. A rotation made by any process reaches every gunicorn worker within that
interval, without a restart, and no request parses a PEM. The process that makes a change drops
its own copy at once (`key_ring_invalidate`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db.models import QuerySet
from django.utils import timezone
from jwcrypto import jwk, jws
from jwcrypto.common import JWException
from oauth2_provider.settings import oauth2_settings

from accounts.encryption import secret_decrypt
from oauth_provider.models import SigningKey

# The logger's name from before this module moved: docs/operations.md tells operators to alert on it.
logger = logging.getLogger("oauth_provider.keys")

DEFAULT_REFRESH_SECONDS = 30


def refresh_seconds() -> int:
    """How stale a process's key ring may be: how long a rotation takes to reach every worker."""
    return int(getattr(settings, "OAUTH_SIGNING_KEYS_REFRESH_SECONDS", DEFAULT_REFRESH_SECONDS))


def jwks_max_age_seconds() -> int:
    """How long verifiers and HTTP caches may keep a copy of the JWKS (its `max-age`)."""
    return int(oauth2_settings.OIDC_JWKS_MAX_AGE_SECONDS)


def private_key_parse(pem: str) -> jwk.JWK:
    """Parse a PEM private key: the expensive step, done once per key and process."""
    return jwk.JWK.from_pem(pem.encode())


@dataclass(frozen=True)
class PublishedKey:
    """A key in the JWKS; `key` holds the private half (it signs when `state` is active)."""

    kid: str
    algorithm: str
    state: str
    key: jwk.JWK
    from_setting: bool = False
    publish_until: datetime | None = None

    def public_jwk(self) -> dict[str, Any]:
        return {"kid": self.kid, "use": "sig", "alg": self.algorithm, **self.key.export_public(as_dict=True)}


class NoSigningKeyError(ImproperlyConfigured):
    """No key can sign RS256 ID tokens: no active row can be used, and the setting may not stand in.

    Raised where the toolkit raises when it has no key (`Application.jwk_key`, at token time): the
    token request fails (the token view's transaction rolls back, nothing is issued) rather than an
    ID token being signed with a retired, perhaps leaked, key.
    """


@dataclass(frozen=True)
class KeyRing:
    signing: PublishedKey | None  # None: no key can sign (`problem` says why; logged)
    published: Mapping[str, PublishedKey]  # by kid, the signing key first
    jwks: Mapping[str, Any]
    unusable: frozenset[str] = frozenset()  # published rows left out: not decrypted, or not their kid
    problem: str | None = None


# kid, algorithm, state, publish_until, published
_IndexRow = tuple[str, str, str, datetime | None, bool]


def _is_published(state: str, publish_until: datetime | None, now: datetime) -> bool:
    """Next and active keys are published; retired ones until `publish_until`."""
    if state != SigningKey.State.RETIRED:
        return True
    return publish_until is not None and publish_until > now


class KeyRingCache:
    """One process's keys: the table's index re-read at most every `refresh_seconds()`."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ring: KeyRing | None = None
        self._fingerprint: tuple[Any, ...] | None = None
        self._checked_at = float("-inf")
        self._table_keys: dict[str, jwk.JWK] = {}  # kid -> parsed key, kept while published
        self._setting_key: tuple[str, PublishedKey] | None = None  # (PEM digest, key)

    def get(self) -> KeyRing:
        ring = self._ring
        if ring is not None and not self._stale():
            return ring
        with self._lock:
            if self._ring is not None and not self._stale():
                return self._ring
            return self._refresh()

    def invalidate(self) -> None:
        """Re-read the table on next use (parsed keys are kept: a kid names one key forever)."""
        self._checked_at = float("-inf")

    def _stale(self) -> bool:
        return self._clock() - self._checked_at >= refresh_seconds()

    def _refresh(self) -> KeyRing:
        # Every row, in one query: the table holds the published keys, at most one unpublished row
        # of the setting key (kept by prune: it was retired) and retired keys until the next prune.
        now = timezone.now()
        rows = SigningKey.objects.order_by("-created_at", "-id").values_list(
            "kid", "algorithm", "state", "publish_until"
        )
        index: tuple[_IndexRow, ...] = tuple(
            (kid, algorithm, state, until, _is_published(state, until, now))
            for kid, algorithm, state, until in rows
        )
        setting_pem = oauth2_settings.OIDC_RSA_PRIVATE_KEY or ""
        fingerprint = (index, hashlib.sha256(setting_pem.encode()).hexdigest())
        if self._ring is None or fingerprint != self._fingerprint:
            self._ring = self._build(index, setting_pem)
            self._fingerprint = fingerprint
        self._checked_at = self._clock()
        return self._ring

    def _build(self, index: tuple[_IndexRow, ...], setting_pem: str) -> KeyRing:
        published_rows = [row for row in index if row[4]]
        self._parse_table_keys([kid for kid, *_ in published_rows])
        from_table: dict[str, PublishedKey] = {}
        unusable: set[str] = set()
        signing: PublishedKey | None = None
        for kid, algorithm, state, publish_until, _published in published_rows:
            if kid not in self._table_keys:
                unusable.add(kid)  # could not be decrypted (logged): left out
                continue
            published = PublishedKey(
                kid=kid,
                algorithm=algorithm,
                state=state,
                key=self._table_keys[kid],
                publish_until=publish_until,
            )
            from_table[kid] = published
            if state == SigningKey.State.ACTIVE:
                signing = published
        problem = None
        if signing is None:
            signing, problem = self._fallback(index, setting_pem)
        published_keys = {
            **({signing.kid: signing} if signing is not None else {}),
            **{kid: key for kid, key in from_table.items() if signing is None or kid != signing.kid},
        }
        return KeyRing(
            signing=signing,
            published=published_keys,
            jwks={"keys": [key.public_jwk() for key in published_keys.values()]},
            unusable=frozenset(unusable),
            problem=problem,
        )

    def _fallback(
        self, index: tuple[_IndexRow, ...], setting_pem: str
    ) -> tuple[PublishedKey | None, str | None]:
        """The setting key when no row can sign, unless a row with its kid says it was retired."""
        if not setting_pem:
            problem = (
                "You must set OIDC_RSA_PRIVATE_KEY to use RSA algorithm"  # the toolkit's words
                if not index
                else "No key can sign ID tokens, as no active key in the table can be used and "
                "OIDC_RSA_PRIVATE_KEY is not set."
            )
            logger.error(problem)
            return None, problem
        setting = self.setting_key(setting_pem)
        if any(kid == setting.kid and state == SigningKey.State.RETIRED for kid, _, state, *_ in index):
            # Retired by a rotation or withdrawn (perhaps leaked): never signed or published again.
            problem = (
                "No key can sign ID tokens, as no active key in the table can be used and "
                f"OIDC_RSA_PRIVATE_KEY (kid {setting.kid}) was retired, so it does not stand in. "
                "Make a key of the table sign (`oidc_keys add`, then `oidc_keys activate <new kid> "
                "--force`), or configure the encryption key the active key was stored with again."
            )
            logger.error(problem)
            return None, problem
        if index:
            logger.error(
                "No usable active signing key in the table; OIDC_RSA_PRIVATE_KEY (kid %s) signs.",
                setting.kid,
            )
        return setting, None

    def _parse_table_keys(self, kids: list[str]) -> None:
        self._table_keys = {kid: key for kid, key in self._table_keys.items() if kid in kids}
        if self._setting_key is not None and self._setting_key[1].kid in kids:
            # The setting key imported by the first rotation: already parsed.
            self._table_keys.setdefault(self._setting_key[1].kid, self._setting_key[1].key)
        missing = [kid for kid in kids if kid not in self._table_keys]
        if not missing:
            return
        for kid, encrypted in SigningKey.objects.filter(kid__in=missing).values_list(
            "kid", "private_key_encrypted"
        ):
            try:
                key = private_key_parse(secret_decrypt(encrypted))
            except (InvalidToken, ValueError, TypeError):
                logger.error("Signing key %s cannot be decrypted with the configured keys; left out.", kid)
                continue
            if key.thumbprint() != kid:
                logger.error("Signing key %s does not match its kid; left out.", kid)
                continue
            self._table_keys[kid] = key

    def setting_key(self, pem: str) -> PublishedKey:
        """The `OIDC_RSA_PRIVATE_KEY` setting as a key, parsed once per PEM."""
        if not pem:
            raise ImproperlyConfigured("You must set OIDC_RSA_PRIVATE_KEY to use RSA algorithm")
        digest = hashlib.sha256(pem.encode()).hexdigest()
        if self._setting_key is None or self._setting_key[0] != digest:
            key = private_key_parse(pem)
            published = PublishedKey(
                kid=key.thumbprint(),
                algorithm=SigningKey.Algorithm.RS256,
                state=SigningKey.State.ACTIVE,
                key=key,
                from_setting=True,
            )
            self._setting_key = (digest, published)
        return self._setting_key[1]


_cache = KeyRingCache()


def key_ring() -> KeyRing:
    """This process's keys, at most `refresh_seconds()` behind the table."""
    return _cache.get()


def key_ring_invalidate() -> None:
    """Make this process re-read the table on next use (after a change it made)."""
    _cache.invalidate()


def signing_key() -> PublishedKey:
    """The key new RS256 tokens are signed with; `NoSigningKeyError` when no key can sign."""
    ring = key_ring()
    if ring.signing is None:
        raise NoSigningKeyError(ring.problem)
    return ring.signing


def jwks_document() -> Mapping[str, Any]:
    """The public JWKS: every published key (next, active, retired until `publish_until`)."""
    return key_ring().jwks


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, unverified; empty when `token` is not one."""
    unverified = jws.JWS()
    try:
        unverified.deserialize(token)
        header = unverified.jose_header
    except (JWException, ValueError):
        return {}
    return dict(header) if isinstance(header, Mapping) else {}


def token_algorithm(token: str) -> str | None:
    """The `alg` a compact JWS says it is signed with (unverified), None when it is not one."""
    alg = _unverified_header(token).get("alg")
    return alg if isinstance(alg, str) else None


def id_token_verification_key(token: str) -> jwk.JWK | None:
    """The published key an RS256 token names in its `kid` header, retired keys included.

    None for other tokens (HS256 ones are verified with their client's secret) and for a kid that
    is not published.
    """
    header = _unverified_header(token)
    kid = header.get("kid")
    if header.get("alg") != SigningKey.Algorithm.RS256 or not isinstance(kid, str):
        return None
    published = key_ring().published.get(kid)
    return published.key if published is not None else None


def setting_key_kid() -> str:
    """The kid of the `OIDC_RSA_PRIVATE_KEY` setting (parsed once)."""
    return _cache.setting_key(oauth2_settings.OIDC_RSA_PRIVATE_KEY or "").kid


def signing_key_list() -> QuerySet[SigningKey]:
    """Every key of the table, newest first (retired keys past `publish_until` included until pruned)."""
    return SigningKey.objects.order_by("-created_at", "-id")


def signing_key_activatable_at(key: SigningKey) -> datetime:
    """When a key has been published long enough to sign: every cached JWKS copy then has it.

    One JWKS lifetime (the `max-age` verifiers and HTTP caches honour), plus the time the key takes
    to reach every worker's JWKS.
    """
    return key.created_at + timedelta(seconds=jwks_max_age_seconds() + refresh_seconds())


def _invalidate_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    if setting in {
        "OAUTH2_PROVIDER",
        "OAUTH_SIGNING_KEYS_REFRESH_SECONDS",
        "SECRET_KEY",
        "MFA_ENCRYPTION_KEYS",
    }:
        key_ring_invalidate()


setting_changed.connect(_invalidate_on_setting_change)
