"""Per-account lockout with escalating back-off after repeated sign-in failures.

After `ACCOUNTS_LOCKOUT_THRESHOLD` consecutive failures (default 5) an account is locked for the
next step of LOCKOUT_STEPS (1, 5, 15, 30, then 60 minutes for every further lockout); a successful
sign-in clears the counters. The state of real accounts lives in the database (AccountLockout):
it survives a cache outage or flush and every node sees it. Identifiers that match no account
keep the same counters in the cache under a keyed hash, so a caller cannot tell a locked account
from one that does not exist (docs/decisions/0006-brute-force-protection.md).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError

from accounts.models import AccountLockout, User
from audit.models import AuditEvent
from audit.services import audit_record

logger = logging.getLogger(__name__)

LOCKOUT_STEPS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(minutes=60),
)
# Failures this old are forgotten, so a user who mistypes now and then never climbs the steps.
FORGET_FAILURES_AFTER = timedelta(hours=24)
# AccountLockout.lockout_count is a PositiveSmallIntegerField.
LOCKOUT_COUNT_MAX = 32767
# Fields of the credentials given to authenticate() that name the account: allauth passes `email`
# and/or `username` (the same text when its sign-in page passes both), the admin `username`.
CREDENTIAL_IDENTIFIER_FIELDS = ("email", "username")
UNKNOWN_IDENTIFIER_CACHE_PREFIX = "accounts:lockout:"
UNKNOWN_IDENTIFIER_MUTEX_WAIT_SECONDS = 1
UNKNOWN_IDENTIFIER_MUTEX_TIMEOUT_SECONDS = 5
# What a django-redis cache raises when Redis is unreachable: the redis-py error that caused the
# ConnectionInterrupted (re-raised unless IGNORE_EXCEPTIONS is on), or a raw socket error.
CACHE_UNAVAILABLE_ERRORS = (ConnectionInterrupted, RedisError, OSError)
# Marks a request whose failed sign-in has been counted, so one attempt counts once.
FAILURE_RECORDED_ATTRIBUTE = "_accounts_lockout_failure_recorded"


def lockout_threshold() -> int:
    return int(getattr(settings, "ACCOUNTS_LOCKOUT_THRESHOLD", 5))


@dataclass(frozen=True)
class LockoutState:
    """The counters of one account or unknown identifier, wherever they are stored."""

    failed_attempts: int = 0
    lockout_count: int = 0
    locked_until: datetime | None = None
    last_failure_at: datetime | None = None

    def seconds_remaining(self, *, now: datetime) -> int:
        if self.locked_until is None or self.locked_until <= now:
            return 0
        return math.ceil((self.locked_until - now).total_seconds())


def lockout_state_after_failure(state: LockoutState, *, now: datetime) -> LockoutState:
    """The counters after one more failed sign-in at `now`."""
    if state.seconds_remaining(now=now):
        # The gate refuses sign-ins while locked: a failure that got past it (in flight when the
        # lock began) does not escalate the lockout.
        return replace(state, last_failure_at=now)
    if state.last_failure_at is not None and now - state.last_failure_at >= FORGET_FAILURES_AFTER:
        state = LockoutState()
    failed_attempts = state.failed_attempts + 1
    if failed_attempts < lockout_threshold():
        return replace(state, failed_attempts=failed_attempts, last_failure_at=now)
    lockout_count = min(state.lockout_count + 1, LOCKOUT_COUNT_MAX)
    step = LOCKOUT_STEPS[min(lockout_count, len(LOCKOUT_STEPS)) - 1]
    return LockoutState(
        failed_attempts=0, lockout_count=lockout_count, locked_until=now + step, last_failure_at=now
    )


def sign_in_identifier(
    values: Mapping[str, Any], *, fields: tuple[str, ...] = CREDENTIAL_IDENTIFIER_FIELDS
) -> str:
    """The account that sign-in credentials (or a request body's `fields`) name, normalized; "" if none."""
    for field in fields:
        value = values.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return ""


def user_get_by_identifier(identifier: str) -> User | None:
    """The account that owns an identifier: its username, or an address it has verified.

    An address only counts once verified: anyone may add any address to their own account
    unverified (enumeration prevention lets them), and it must not let them take the failures,
    the lockout and the audit trail of the address's real owner. An address nobody has verified
    names no account: its failures are counted against the address itself.
    """
    if "@" in identifier:
        # ACCOUNT_UNIQUE_EMAIL: at most one account has verified an address (in any letter case).
        users = User.objects.filter(
            Exists(EmailAddress.objects.filter(user=OuterRef("pk"), email__iexact=identifier, verified=True))
        )
    else:
        users = User.objects.filter(username=identifier.lower())
    return users.order_by("pk").first()


# --- accounts (database) --------------------------------------------------------------------


@transaction.atomic
def lockout_record_failure(*, user: User) -> AccountLockout:
    """Count a failed sign-in of `user`; at the threshold, lock the account for the next step."""
    lockout, _ = AccountLockout.objects.select_for_update().get_or_create(user=user)
    now = timezone.now()
    state = lockout_state_after_failure(
        LockoutState(
            failed_attempts=lockout.failed_attempts,
            lockout_count=lockout.lockout_count,
            locked_until=lockout.locked_until,
            last_failure_at=lockout.last_failure_at,
        ),
        now=now,
    )
    newly_locked = state.locked_until != lockout.locked_until
    lockout.failed_attempts = state.failed_attempts
    lockout.lockout_count = state.lockout_count
    lockout.locked_until = state.locked_until
    lockout.last_failure_at = state.last_failure_at
    lockout.full_clean()
    lockout.save()
    if newly_locked:
        logger.warning(
            "account %s locked for %s seconds (lockout %s in a row)",
            user.pk,
            state.seconds_remaining(now=now),
            state.lockout_count,
        )
        audit_record(
            action="accounts.user.locked_out",
            outcome=AuditEvent.Outcome.FAILURE,
            target=user,
            metadata={"seconds": state.seconds_remaining(now=now), "lockout_count": state.lockout_count},
        )
    return lockout


@transaction.atomic
def lockout_record_success(*, user: User) -> None:
    """Forget the failed sign-ins and past lockouts of `user`, who has just signed in."""
    AccountLockout.objects.filter(user=user).exclude(
        failed_attempts=0, lockout_count=0, locked_until__isnull=True
    ).update(failed_attempts=0, lockout_count=0, locked_until=None)


def lockout_seconds_remaining(*, user: User) -> int:
    """Seconds until `user` may try to sign in again; 0 when the account is not locked."""
    locked_until = AccountLockout.objects.filter(user=user).values_list("locked_until", flat=True).first()
    return LockoutState(locked_until=locked_until).seconds_remaining(now=timezone.now())


# --- identifiers that match no account (cache) ------------------------------------------------


def unknown_identifier_cache_key(identifier: str) -> str:
    # Keyed with SECRET_KEY: the cache never holds the identifiers people typed, not even hashed
    # in a way that could be checked against a list of addresses.
    digest = salted_hmac("accounts.lockout.unknown-identifier", identifier, algorithm="sha256").hexdigest()
    return f"{UNKNOWN_IDENTIFIER_CACHE_PREFIX}{digest}"


@contextmanager
def unknown_identifier_mutex(key: str) -> Iterator[None]:
    """Serialize updates of one identifier's counters, as the row lock does for an account.

    Without it a burst of parallel failures would count less than it does for an account, and
    tell the two apart. Past the wait (a holder that died), update anyway.
    """
    mutex_key = f"{key}:mutex"
    deadline = time.monotonic() + UNKNOWN_IDENTIFIER_MUTEX_WAIT_SECONDS
    acquired = cache.add(mutex_key, 1, UNKNOWN_IDENTIFIER_MUTEX_TIMEOUT_SECONDS)
    while not acquired and time.monotonic() < deadline:
        time.sleep(0.01)
        acquired = cache.add(mutex_key, 1, UNKNOWN_IDENTIFIER_MUTEX_TIMEOUT_SECONDS)
    try:
        yield
    finally:
        if acquired:
            cache.delete(mutex_key)


def unknown_identifier_state(identifier: str) -> LockoutState:
    try:
        stored = cache.get(unknown_identifier_cache_key(identifier))
    except CACHE_UNAVAILABLE_ERRORS as error:
        logger.warning("cache unavailable: unknown sign-in identifiers are not locked (%s)", error)
        return LockoutState()
    return LockoutState(**stored) if isinstance(stored, dict) else LockoutState()


def unknown_identifier_record_failure(*, identifier: str) -> LockoutState:
    """Count a failed sign-in with an identifier that matches no account, exactly as for an account."""
    key = unknown_identifier_cache_key(identifier)
    # Kept as long as an account's counters are: FORGET_FAILURES_AFTER past the last failure.
    timeout = int((FORGET_FAILURES_AFTER + LOCKOUT_STEPS[-1]).total_seconds())
    try:
        with unknown_identifier_mutex(key):
            stored = cache.get(key)
            state = LockoutState(**stored) if isinstance(stored, dict) else LockoutState()
            state = lockout_state_after_failure(state, now=timezone.now())
            cache.set(key, asdict(state), timeout)
    except CACHE_UNAVAILABLE_ERRORS as error:
        logger.warning("cache unavailable: unknown sign-in identifiers are not locked (%s)", error)
        return LockoutState()
    return state


# --- sign-in attempts -------------------------------------------------------------------------


def lockout_record_failed_sign_in(*, credentials: Mapping[str, Any], request: HttpRequest | None) -> None:
    """Count one failed sign-in attempt against the account (or unknown identifier) it named.

    A request counts once, however many times a sign-in flow calls `authenticate()` for it.
    """
    identifier = sign_in_identifier(credentials)
    if not identifier:
        return
    if request is not None:
        if getattr(request, FAILURE_RECORDED_ATTRIBUTE, False):
            return
        setattr(request, FAILURE_RECORDED_ATTRIBUTE, True)
    user = user_get_by_identifier(identifier)
    audit_record(
        action="accounts.user.sign_in_failed",
        outcome=AuditEvent.Outcome.FAILURE,
        target=user,
        request=request,
        metadata={"reason": "invalid_credentials" if user else "unknown_account", "identifier": identifier},
    )
    if user is None:
        unknown_identifier_record_failure(identifier=identifier)
    else:
        lockout_record_failure(user=user)


def lockout_check_current_password(*, user: User, password: str, request: HttpRequest | None) -> bool:
    """Check the password a signed-in user typed to confirm a change of it.

    A wrong one is a guess at the password by whoever holds the session: it is audited and counted
    toward the lockout exactly like a failed sign-in (the sign-in gate refuses the change form
    while the account is locked).
    """
    if user.check_password(password):
        return True
    if request is not None:
        if getattr(request, FAILURE_RECORDED_ATTRIBUTE, False):
            return False
        setattr(request, FAILURE_RECORDED_ATTRIBUTE, True)
    audit_record(
        action="accounts.user.sign_in_failed",
        outcome=AuditEvent.Outcome.FAILURE,
        actor=user,
        target=user,
        request=request,
        metadata={"reason": "invalid_current_password", "via": "password_change"},
    )
    lockout_record_failure(user=user)
    return False


def lockout_seconds_remaining_for_identifier(*, identifier: str) -> int:
    """Seconds until a sign-in naming `identifier` is allowed again; 0 when it is not locked."""
    user = user_get_by_identifier(identifier)
    if user is None:
        return unknown_identifier_state(identifier).seconds_remaining(now=timezone.now())
    return lockout_seconds_remaining(user=user)


# --- second factors and re-authentication: the account is the session's ---------------------

# Where allauth keeps the sign-in waiting for its second factor (allauth.account.internal.stagekit).
PENDING_LOGIN_SESSION_KEY = "account_login"


def session_account_id(session: Mapping[str, Any] | None) -> str | None:
    """The account a session acts for: its signed-in user, or the user of a pending sign-in."""
    if session is None:
        return None
    signed_in = session.get(SESSION_KEY)
    if signed_in:
        return str(signed_in)
    pending = session.get(PENDING_LOGIN_SESSION_KEY)
    user_pk = pending.get("user_pk") if isinstance(pending, dict) else None
    return str(user_pk) if user_pk else None


def lockout_seconds_remaining_for_session(*, session: Mapping[str, Any] | None) -> int:
    """Seconds until the session's account may try a code or password again; 0 when not locked."""
    account_id = session_account_id(session)
    if not account_id:
        return 0
    user = User.objects.filter(pk=account_id).first() if _is_uuid(account_id) else None
    return lockout_seconds_remaining(user=user) if user is not None else 0


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
