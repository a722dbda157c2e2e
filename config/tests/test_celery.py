"""Celery: the app's defaults, and a real worker consuming a real task from Redis."""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings

from config.celery import app, ping
from config.context import request_id_var


def test_celery_defaults_favour_safe_redelivery() -> None:
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_soft_time_limit == 240
    assert app.conf.task_time_limit == 300
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]


def test_tasks_run_eagerly_in_the_embedded_default_and_unit_tests() -> None:
    assert settings.CELERY_TASK_ALWAYS_EAGER is True
    assert ping.delay().get(timeout=1) == "pong"


def test_a_task_keeps_the_request_id_of_the_request_that_queued_it() -> None:
    headers: dict[str, str] = {}
    token = request_id_var.set("req-77")
    try:
        from config.celery import attach_request_id

        attach_request_id(headers=headers)
    finally:
        request_id_var.reset(token)

    assert headers == {"request_id": "req-77"}


def test_a_real_worker_consumes_a_task_from_redis(worker_queue: str) -> None:
    """`worker_queue` (conftest.py) is a real `celery worker` subprocess on a private queue."""
    producer = Celery(broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])

    result = producer.send_task("config.ping", queue=worker_queue)

    assert result.get(timeout=60) == "pong"
    assert result.status == "SUCCESS"
