"""Fixtures shared by every app's tests."""

from __future__ import annotations

import copy
import io
import logging.config
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    """Rate-limit counters and revocation marks never leak from one test into another."""
    yield
    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")  # django-redis: only keys under this run's prefix
    else:
        cache.clear()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def user() -> User:
    return UserFactory.create()


@pytest.fixture
def staff_user() -> User:
    return UserFactory.create(is_staff=True)


@pytest.fixture
def user_client(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def staff_client(staff_user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


@pytest.fixture
def require_services() -> None:
    """Tests that need the real Redis/broker: skipped locally without REDIS_URL, never in CI."""
    if not os.environ.get("REDIS_URL"):
        if os.environ.get("REQUIRE_SERVICES"):
            pytest.fail("REQUIRE_SERVICES is set but REDIS_URL is not")
        pytest.skip("needs REDIS_URL (CI sets it)")


class LogCapture:
    """The project's real logging configuration, with the console handler writing to a buffer.

    The handler keeps its configured filters (request ID, redaction) and formatter; only its
    stream changes.
    """

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.use("text")

    def use(self, log_format: str) -> None:
        self.stream = io.StringIO()
        logging_config: dict[str, Any] = copy.deepcopy(settings.LOGGING)
        logging_config["handlers"]["console"].update(formatter=log_format, stream=self.stream)
        logging.config.dictConfig(logging_config)

    @property
    def output(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def log_capture() -> Iterator[LogCapture]:
    yield LogCapture()
    logging.config.dictConfig(settings.LOGGING)


@pytest.fixture
def closed_cache() -> dict[str, Any]:
    """A CACHES setting pointing at a Redis that is not there (a closed local port)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }


@pytest.fixture
def require_postgresql() -> None:
    """Tests of row locking under real concurrency: SQLite has no row locks. CI runs PostgreSQL."""
    from django.db import connection

    if connection.vendor != "postgresql":
        if os.environ.get("REQUIRE_SERVICES"):
            pytest.fail("REQUIRE_SERVICES is set but the database is not PostgreSQL")
        pytest.skip("needs PostgreSQL (CI sets DATABASE_URL)")
