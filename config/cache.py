"""The Redis cache when Redis fails: every call bounded, a failing server skipped for a while, and an
outage that reads as an empty cache.

A hung Redis (issue 13, finding 2) made each cache call wait its whole socket timeout; with a few
calls per request every gunicorn thread was soon waiting and the node stopped answering, health
probes included. Three things keep the web tier answering instead:

- short socket timeouts (settings: REDIS_TIMEOUT, well under a second), so no call waits long;
- a circuit breaker per Redis server and process (`CircuitBreaker`): after a few consecutive
  failures calls are refused at once for a few seconds, then one trial call goes through; its
  success closes the circuit. While it is open a request pays nothing for the cache;
- django-redis's DJANGO_REDIS_IGNORE_EXCEPTIONS turns a failed or refused call into a miss, and
  `CacheClient.add` answers True like an empty cache that keeps nothing (Django's DummyCache does
  the same): locks and "first one wins" marks taken with `add` open up during an outage instead of
  never being acquired (allauth's rate-limit lock answered 429 for the whole outage, finding 5).

Each failed or refused call goes to the outage log (config.outages): one "cache unavailable" line
per interval and process, with a count, not a line per call (finding 8); the breaker adds one line
when it opens and one when the server answers again.

Not pybreaker: its `CircuitBreaker.call` holds one lock for the whole guarded call, which would
serialize every cache call of a process (and queue all threads behind a hung one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from django_redis.client import DefaultClient
from django_redis.exceptions import ConnectionInterrupted
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.outages import CACHE, outage_report

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Consecutive failed calls that open the circuit: one slow answer under load does not, a server
# that stopped answering does within the first few calls of the threads waiting on it.
FAILURES_TO_OPEN = 3
# The errors that mean the server is not answering (redis-py wraps socket errors in the first two).
UNAVAILABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class CircuitOpenError(RedisConnectionError):
    """A call refused without going to Redis: its circuit is open. A ConnectionError, so that
    django-redis treats it as the outage it stands for."""


class CircuitBreaker:
    """Closed, open for `open_seconds` after `failures_to_open` consecutive failures, then half-open:
    one trial call at a time goes through while the others are refused; a success closes it, a
    failure opens it again. Thread-safe; the closed path takes no lock."""

    def __init__(self, name: str, *, open_seconds: float, failures_to_open: int = FAILURES_TO_OPEN) -> None:
        self.name = name
        self.open_seconds = open_seconds
        self.failures_to_open = failures_to_open
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        # 0.0 while closed; else when the next trial call may go through.
        self._retry_at = 0.0

    @property
    def is_closed(self) -> bool:
        return self._retry_at == 0.0

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call `function` unless the circuit is open (CircuitOpenError), and count its outcome."""
        trial = self._before_call()
        try:
            result = function(*args, **kwargs)
        except UNAVAILABLE_ERRORS:
            self._failed()
            raise
        except DataError:
            # Refused before anything was sent (a value redis-py cannot encode): no verdict.
            if trial:
                self._release_trial()
            raise
        except RedisError:
            self._succeeded()  # the server answered: an error reply is still an answer
            raise
        except BaseException:
            if trial:
                self._release_trial()
            raise
        self._succeeded()
        return result

    def _before_call(self) -> bool:
        """Raise CircuitOpenError while the circuit is open; True when this call is the trial."""
        if self._retry_at == 0.0:
            return False
        now = time.monotonic()
        with self._lock:
            if self._retry_at == 0.0:
                return False
            if now < self._retry_at:
                raise CircuitOpenError(f"{self.name} is failing: call skipped (circuit open)")
            # This call is the trial: until it ends (at most a socket timeout) the others are
            # refused. Were it never to report, the next trial would come after open_seconds.
            self._retry_at = now + self.open_seconds
            return True

    def _succeeded(self) -> None:
        if self._retry_at == 0.0 and self._failures == 0:
            return
        with self._lock:
            was_open = self._retry_at != 0.0
            self._failures = 0
            self._retry_at = 0.0
            outage_seconds = time.monotonic() - self._opened_at
        if was_open:
            logger.info("%s answers again after %.1f s: circuit closed", self.name, outage_seconds)

    def _failed(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            opens = self._retry_at == 0.0 and self._failures >= self.failures_to_open
            if opens:
                self._opened_at = now
            if opens or self._retry_at != 0.0:
                # Opened now, or a trial (or a call started before it opened) failed: wait again.
                self._retry_at = now + self.open_seconds
        if opens:
            logger.warning(
                "%s is not answering (%d failed calls in a row): calls skipped, one trial every %.1f s",
                self.name,
                self.failures_to_open,
                self.open_seconds,
            )

    def _release_trial(self) -> None:
        """The trial ended without a verdict (no Redis answer, no Redis error): the next call tries."""
        with self._lock:
            if self._retry_at != 0.0:
                self._retry_at = time.monotonic()


_breakers: dict[tuple[Any, ...], CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def circuit_breaker_for(pool: redis.ConnectionPool, *, open_seconds: float) -> CircuitBreaker:
    """The process's breaker for the server `pool` connects to (shared by every client and thread)."""
    connection = pool.connection_kwargs
    server = (connection.get("host"), connection.get("port"), connection.get("path"))
    with _breakers_lock:
        breaker = _breakers.get(server)
        if breaker is None:
            where = connection.get("path") or f"{connection.get('host')}:{connection.get('port')}"
            breaker = _breakers[server] = CircuitBreaker(f"Redis at {where}", open_seconds=open_seconds)
        return breaker


def cache_call(breaker: CircuitBreaker, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A cache round trip through `breaker`; a failed or refused one goes to the outage log (one
    "cache unavailable" line per interval and process, with a count), never a line of its own."""
    try:
        return breaker.call(function, *args, **kwargs)
    except UNAVAILABLE_ERRORS as error:
        outage_report(CACHE, error)
        raise


class CircuitBreakerPipeline(Pipeline):
    """A pipeline whose round trips go through its client's breaker (set_many, delete_many)."""

    circuit_breaker: CircuitBreaker

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        if not self.command_stack and not self.watching:
            return []  # nothing to send: not a call to count
        return cache_call(self.circuit_breaker, super().execute, raise_on_error)

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        return cache_call(self.circuit_breaker, super().immediate_execute_command, *args, **options)


class CircuitBreakerRedis(redis.Redis):
    """redis-py's client with every command through the circuit breaker of its server
    (django-redis's REDIS_CLIENT_CLASS; REDIS_CLIENT_KWARGS gives `circuit_open_seconds`)."""

    def __init__(self, *args: Any, circuit_open_seconds: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.circuit_breaker = circuit_breaker_for(self.connection_pool, open_seconds=circuit_open_seconds)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return cache_call(self.circuit_breaker, super().execute_command, *args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        pipeline = CircuitBreakerPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )
        pipeline.circuit_breaker = self.circuit_breaker
        return pipeline


class CacheClient(DefaultClient):
    """django-redis's client (its CLIENT_CLASS), where `add` during an outage answers like an empty
    cache that keeps nothing, when the backend ignores outages (DJANGO_REDIS_IGNORE_EXCEPTIONS)."""

    def add(self, *args: Any, **kwargs: Any) -> bool:
        try:
            return super().add(*args, **kwargs)
        except ConnectionInterrupted:
            if not getattr(self._backend, "_ignore_exceptions", False):
                raise
            # Nothing is stored and nothing was there: the value "was added" to a cache that keeps
            # nothing. Guards that must hold through an outage live in PostgreSQL, not here.
            return True
