"""Dependency outages: which errors mean "PostgreSQL, Redis or the broker is not answering", and
a log of them that says so once per interval with a count, not a traceback per request.

While a dependency is down every request that needs it fails the same way; thousands of identical
tracebacks a second bury the one line an operator needs and fill disks (issue 13, finding 8). The
first failure of an interval is logged at ERROR with its error (class and first line, never a
traceback); the rest are counted and the count is logged with the next line.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError

logger = logging.getLogger("config.outages")

REPORT_INTERVAL_SECONDS = 30.0
DATABASE = "database"
CACHE = "cache"
BROKER = "broker"


def outage_dependency(error: BaseException | None) -> str | None:
    """The dependency an error says is unreachable (or failing), or None for any other error."""
    if isinstance(error, DatabaseOperationalError | DatabaseInterfaceError):
        return DATABASE
    # Imported here: the settings module imports this one's neighbours before the apps load.
    from django_redis.exceptions import ConnectionInterrupted
    from kombu.exceptions import OperationalError as BrokerOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(error, ConnectionInterrupted | RedisConnectionError | RedisTimeoutError):
        return CACHE
    if isinstance(error, BrokerOperationalError):
        return BROKER
    return None


class OutageLog:
    """Per dependency: when its last line was logged and how many failures were not logged since."""

    def __init__(self, interval: float = REPORT_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def report(self, dependency: str, error: BaseException) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(dependency)
            if last is not None and now - last < self.interval:
                self._unlogged[dependency] = self._unlogged.get(dependency, 0) + 1
                return
            self._last[dependency] = now
            unlogged = self._unlogged.pop(dependency, 0)
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        logger.error(
            "%s unavailable: %s: %s (%d more failures in the last %d s not logged one by one)",
            dependency,
            type(error).__name__,
            first_line,
            unlogged,
            int(self.interval),
            extra={"dependency": dependency, "unlogged_failures": unlogged},
        )

    def reset(self) -> None:
        with self._lock:
            self._last.clear()
            self._unlogged.clear()


outage_log = OutageLog()


def outage_report(dependency: str, error: BaseException) -> None:
    """Log a failure of `dependency`: the first of each interval, the others counted."""
    outage_log.report(dependency, error)
