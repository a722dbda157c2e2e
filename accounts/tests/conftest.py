"""Fixtures of the accounts app's tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from celery import current_app

from accounts.services import outbox
from config.outages import outage_log
from config.tests.faults import RedisServer, scratch_folder


@pytest.fixture(scope="module")
def broker_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed (CI installs it)")
    folder = scratch_folder("outbox-broker-")
    server = RedisServer(folder).start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def broker(broker_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """Tasks published to a private Redis instead of run eagerly; nothing consumes them."""
    monkeypatch.setenv("CELERY_BROKER_URL", broker_server.url)
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
    monkeypatch.setattr(outbox, "_publish_paused_until", 0.0)
    eager = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = False
    outage_log.reset()
    broker_server.command("FLUSHALL")
    yield broker_server
    current_app.conf.task_always_eager = eager
    broker_server.resume()
    if broker_server.process is None:
        broker_server.start()
    outage_log.reset()
