"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache

from config.views import error_response

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 2


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def check_cache() -> str:
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("value written to the cache could not be read back")
    cache.delete(key)
    return "ok"


def check_broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "skipped: tasks run eagerly (no broker configured)"
    from config.celery import app

    with app.connection_for_write(settings.CELERY_BROKER_URL) as broker:
        broker.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
}


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
            logger.warning("readiness check %s failed: %s", name, error)
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed, "checks": results}, status=503)
    return JsonResponse({"status": "ok", "checks": results})
