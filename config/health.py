"""Liveness and readiness probes for load balancers and orchestrators.

Liveness touches no dependency. Readiness checks each dependency within a bound a probe can wait
for (docs/decisions/0004): the cache and the broker fail within REDIS_TIMEOUT each (the cache at once
while its circuit is open, config/cache.py); a failure goes to the outage log (one line per
dependency and interval, config.outages), not a line per probe.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache

from config.outages import BROKER, CACHE, DATABASE, outage_report
from config.views import error_response

# Seconds the readiness probe's own database connection may take (the probe answers within 2 s).
DATABASE_CONNECT_TIMEOUT_SECONDS = 1


def check_database() -> str:
    """A connection of the probe's own, never the thread's pooled one: against a server that
    accepts connections and never answers (hung), a pooled connection's query would wait for ever,
    and a new one fails within its connect timeout."""
    probe = connections.create_connection(DEFAULT_DB_ALIAS)
    if probe.vendor == "postgresql":
        options = {
            **probe.settings_dict.get("OPTIONS", {}),
            "connect_timeout": DATABASE_CONNECT_TIMEOUT_SECONDS,
        }
        probe.settings_dict = {**probe.settings_dict, "OPTIONS": options}
    try:
        with probe.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        probe.close()
    return "ok"


def check_cache() -> str:
    key = f"health:{uuid.uuid4().hex}"
    # django-redis answers a miss when Redis fails (DJANGO_REDIS_IGNORE_EXCEPTIONS); its client
    # raises instead, so the first failed call ends the check rather than each waiting its timeout.
    store: Any = getattr(cache, "client", cache)
    store.set(key, "1", timeout=5)
    if store.get(key) != "1":
        raise RuntimeError("value written to the cache could not be read back")
    store.delete(key)
    return "ok"


def check_broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "skipped: tasks run eagerly (no broker configured)"
    from config.celery import app

    # One attempt, bounded by the transport's socket timeouts (CELERY_BROKER_TRANSPORT_OPTIONS):
    # kombu's retries would sleep 2 s between attempts, past what a probe waits.
    with app.connection_for_write(settings.CELERY_BROKER_URL) as broker:
        broker.ensure_connection(max_retries=0)
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
}
DEPENDENCIES = {"database": DATABASE, "cache": CACHE, "broker": BROKER}


SAFE_METHODS = ("GET", "HEAD")


def method_not_allowed(request: HttpRequest) -> HttpResponse:
    return error_response(
        request,
        status=405,
        code="method_not_allowed",
        detail=f'Method "{request.method}" not allowed.',
        headers={"Allow": ", ".join(SAFE_METHODS)},
    )


@never_cache
def live(request: HttpRequest) -> HttpResponse:
    if request.method not in SAFE_METHODS:
        return method_not_allowed(request)
    return JsonResponse({"status": "ok"})


@never_cache
def ready(request: HttpRequest) -> HttpResponse:
    if request.method not in SAFE_METHODS:
        return method_not_allowed(request)
    results: dict[str, str] = {}
    failed: list[str] = []
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as error:
            # The error class only: connection errors can carry URLs with credentials.
            results[name] = f"error: {type(error).__name__}"
            failed.append(name)
            outage_report(DEPENDENCIES[name], error)
    if failed:
        response = JsonResponse({"status": "unavailable", "failed": failed, "checks": results}, status=503)
        # The outage log has it (once per interval): without this Django logs every failed probe
        # again at ERROR ("Service Unavailable"), a line per probe per node for the whole outage.
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response
    return JsonResponse({"status": "ok", "checks": results})
