"""Liveness and readiness, including the 503 path against services that really are unreachable."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def closed_port() -> int:
    """A local TCP port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_live_answers_while_the_process_is_up(client: Client) -> None:
    response = client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_ready_reports_each_dependency(client: Client) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {
            "database": "ok",
            "cache": "ok",
            "broker": "skipped: tasks run eagerly (no broker configured)",
        },
    }


def test_ready_checks_the_real_broker(client: Client, settings: Any, require_services: None) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = os.environ["REDIS_URL"]

    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}


def test_ready_is_503_naming_an_unreachable_cache(client: Client, settings: Any, closed_port: int) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://:cache-pass-31@127.0.0.1:{closed_port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }

    response = client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["cache"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["cache"].startswith("error: ")
    assert "cache-pass-31" not in response.content.decode()


def test_ready_is_503_naming_an_unreachable_broker(client: Client, settings: Any, closed_port: int) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = f"redis://:broker-pass-32@127.0.0.1:{closed_port}/0"

    response = client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["broker"]
    assert body["checks"]["broker"].startswith("error: ")
    assert "broker-pass-32" not in response.content.decode()


def test_health_is_not_redirected_to_https(client: Client, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/health/live").status_code == 200
    assert client.get("/").status_code == 301


@pytest.mark.parametrize("path", ["/health/live", "/health/ready"])
def test_probes_by_node_address_pass_the_host_check(client: Client, settings: Any, path: str) -> None:
    settings.ALLOWED_HOSTS = ["id.example.com"]

    assert client.get(path, HTTP_HOST="10.0.3.17:8000").status_code == 200
    assert client.get("/", HTTP_HOST="10.0.3.17:8000").status_code == 400


def test_probe_answers_carry_the_request_id_and_nosniff(client: Client) -> None:
    response = client.get("/health/live", HTTP_X_REQUEST_ID="probe-1")

    assert response["X-Request-ID"] == "probe-1"
    assert response["X-Content-Type-Options"] == "nosniff"
