"""Fixtures shared by every app's tests."""

from __future__ import annotations

import copy
import io
import logging.config
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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


PROJECT_ROOT = Path(__file__).resolve().parent
# Written next to a worker's log: a settings module that wraps the one asked for and keeps every
# task the worker itself queues (an e-mail after building an export, say) on the private queue.
_WORKER_SETTINGS = """\
import os

from {settings_module} import *  # noqa: F403

CELERY_TASK_DEFAULT_QUEUE = os.environ["TEST_CELERY_QUEUE"]
"""


@dataclass
class CeleryWorker:
    """A real `celery worker` process consuming one private queue of the CI Redis."""

    queue: str
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def log(self) -> str:
        """What the worker has logged so far (for assertion messages)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # warm shutdown: finish the task at hand
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


StartCeleryWorker = Callable[..., CeleryWorker]


@pytest.fixture
def celery_worker_start(
    require_services: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartCeleryWorker]:
    """Start real workers, each on a private queue of the CI Redis; stop them after the test.

    `start(env={...}, settings_module="config.settings")`: `env` is added to this process's
    environment (which holds the secret and signing keys config.test_settings made, so the worker
    signs and verifies exactly as the tests do); the worker runs `settings_module` (production
    settings by default: the test settings force eager tasks and the in-memory mailbox) with its
    default queue set to the private one. The worker's output goes to a log file, never to a pipe
    nobody reads, which would stall it once full.
    """
    workers: list[CeleryWorker] = []

    def start(
        *, env: Mapping[str, str] | None = None, settings_module: str = "config.settings"
    ) -> CeleryWorker:
        queue = f"test-{uuid.uuid4().hex}"
        folder = tmp_path_factory.mktemp("celery-worker")
        shim = f"celery_worker_settings_{uuid.uuid4().hex}"
        (folder / f"{shim}.py").write_text(_WORKER_SETTINGS.format(settings_module=settings_module))
        environment = {
            **os.environ,
            "CELERY_BROKER_URL": os.environ["REDIS_URL"],
            "CELERY_RESULT_BACKEND": os.environ["REDIS_URL"],
            "CELERY_TASK_ALWAYS_EAGER": "false",
            **(env or {}),
            "DJANGO_SETTINGS_MODULE": shim,
            "TEST_CELERY_QUEUE": queue,
            "PYTHONPATH": os.pathsep.join(
                [str(folder), str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "-Q", queue]
        log_path = folder / "worker.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [*command, "-l", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=PROJECT_ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        worker = CeleryWorker(queue=queue, log_path=log_path, process=process)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def worker_queue(celery_worker_start: StartCeleryWorker) -> str:
    """The private queue of a real worker on the production settings."""
    return celery_worker_start().queue
