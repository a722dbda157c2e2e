"""The outbox of jobs (accounts.services.outbox) against a real Redis broker of the test's own:
publishing after commit, bounded when the broker is stopped or hung, and the relay that publishes
what the broker does not have. No worker runs here: the tests read the broker's queue."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.db import transaction
from django.test import Client
from django.utils import timezone

from accounts.emails import email_queue
from accounts.models import OutboxJob, Role
from accounts.services import outbox
from accounts.services.moderation import user_set_roles
from accounts.services.outbox import job_enqueue, jobs_prune, jobs_relay
from accounts.tests.factories import UserFactory, totp_enrol
from config.tests.faults import RedisServer
from conftest import LogCapture

pytestmark = pytest.mark.django_db

RESET_URL = "http://testserver/accounts/password/reset/key/1-secret-reset-key/"


def queued(server: RedisServer) -> list[dict[str, Any]]:
    """The task messages waiting in the broker's default queue, oldest first, bodies decoded."""
    client = redis.Redis.from_url(server.url)
    messages = []
    for raw in reversed(client.lrange("celery", 0, -1)):
        message = json.loads(raw)
        message["body"] = json.loads(base64.b64decode(message["body"]))
        messages.append(message)
    client.close()
    return messages


def enqueue_reset_email(capture: Callable[..., Any]) -> OutboxJob:
    with capture(execute=True):
        email_queue(
            template_prefix="account/email/password_reset_key",
            to="alice@example.com",
            context={"password_reset_url": RESET_URL},
        )
    return OutboxJob.objects.get()


def make_due(*jobs: OutboxJob) -> None:
    """Past the grace a pending job's own publish after commit gets before the relay takes it."""
    OutboxJob.objects.filter(pk__in=[job.pk for job in jobs]).update(
        due_at=timezone.now() - outbox.RELAY_GRACE - timedelta(seconds=1)
    )


# --- publishing after commit ----------------------------------------------------------------


def test_a_job_is_published_after_commit_with_only_its_id(
    broker: RedisServer, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    job = enqueue_reset_email(django_capture_on_commit_callbacks)

    [message] = queued(broker)
    assert message["headers"]["task"] == "accounts.email_send"
    assert message["headers"]["id"] == str(job.pk)
    assert message["body"][0] == [str(job.pk)]
    # The message's link and code stay in PostgreSQL.
    assert RESET_URL not in json.dumps(message)
    job.refresh_from_db()
    assert (job.state, job.publications, job.label) == (
        OutboxJob.State.PUBLISHED,
        1,
        "account/email/password_reset_key",
    )
    assert RESET_URL in job.arguments["body"]


def test_a_web_process_that_never_imported_the_task_publishes_it_by_name(
    broker: RedisServer,
    django_capture_on_commit_callbacks: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A gunicorn worker has not imported the tasks module until something uses it: the first data
    export it was asked for answered 500 (`NotRegistered`). A publisher needs only the task's name."""
    from celery import current_app

    monkeypatch.delitem(current_app.tasks, "accounts.data_export_build", raising=False)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_enqueue(task="accounts.data_export_build", arguments={"export_id": "x"})

    [message] = queued(broker)
    assert (message["headers"]["task"], message["body"][0]) == ("accounts.data_export_build", [str(job.pk)])
    job.refresh_from_db()
    assert job.state == OutboxJob.State.PUBLISHED


def test_a_publish_that_fails_unexpectedly_leaves_the_job_to_the_relay_and_the_request_answers(
    broker: RedisServer,
    django_capture_on_commit_callbacks: Callable[..., Any],
    log_capture: LogCapture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever goes wrong after the commit (here a bug of ours, not an outage), the committed
    change stands: Django's robust on_commit logs the error. It used to fail logging it, a 500,
    for a callback without a `__qualname__` (a functools.partial)."""

    def send_fails(**kwargs: Any) -> None:
        raise RuntimeError("a bug in the publish")

    monkeypatch.setattr(outbox, "_job_send", send_fails)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_enqueue(task="accounts.email_send", arguments={})

    job.refresh_from_db()
    assert job.state == OutboxJob.State.PENDING
    assert "Error calling" in log_capture.output


def test_a_job_of_a_rolled_back_transaction_is_neither_kept_nor_published(
    broker: RedisServer, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    def change_that_fails() -> None:
        with transaction.atomic():
            job_enqueue(task="accounts.email_send", arguments={"x": 1})
            raise RuntimeError("the change failed")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        change_that_fails()

    assert callbacks == []
    assert OutboxJob.objects.count() == 0
    assert queued(broker) == []


def test_a_stopped_broker_leaves_the_job_pending_at_once_and_logs_the_outage_once(
    broker: RedisServer, django_capture_on_commit_callbacks: Callable[..., Any], log_capture: LogCapture
) -> None:
    broker.stop()
    started = time.monotonic()
    job = enqueue_reset_email(django_capture_on_commit_callbacks)
    seconds = time.monotonic() - started

    assert seconds < 1, seconds  # a refused connection: milliseconds
    job.refresh_from_db()
    assert (job.state, job.publications) == (OutboxJob.State.PENDING, 0)
    assert log_capture.output.count("broker unavailable: OperationalError") == 1
    assert "Traceback" not in log_capture.output
    assert RESET_URL not in log_capture.output


def test_a_hung_broker_costs_a_publish_its_timeout_once_then_the_process_leaves_jobs_to_the_relay(
    broker: RedisServer, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    with broker.hung():
        started = time.monotonic()
        enqueue_reset_email(django_capture_on_commit_callbacks)
        first = time.monotonic() - started
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):
            job_enqueue(task="accounts.email_send", arguments={})
        second = time.monotonic() - started

    # One broker call timing out (PUBLISH_TIMEOUT_SECONDS, 0.5 s); generous for a loaded machine.
    assert outbox.PUBLISH_TIMEOUT_SECONDS <= first < 3, first
    assert second < 0.3, second
    assert set(OutboxJob.objects.values_list("state", flat=True)) == {OutboxJob.State.PENDING}


# --- the relay ---------------------------------------------------------------------------------


def test_the_relay_publishes_the_jobs_the_broker_did_not_take(
    broker: RedisServer, django_capture_on_commit_callbacks: Callable[..., Any], log_capture: LogCapture
) -> None:
    with broker.stopped():
        job = enqueue_reset_email(django_capture_on_commit_callbacks)
    just_queued = job_enqueue(task="accounts.email_send", arguments={})  # its own publish is pending
    make_due(job)

    assert jobs_relay() == {"published": 1, "republished": 0, "taken_over": 0, "failed": 0}

    assert [message["headers"]["id"] for message in queued(broker)] == [str(job.pk)]
    job.refresh_from_db()
    assert (job.state, job.publications) == (OutboxJob.State.PUBLISHED, 1)
    assert OutboxJob.objects.get(pk=just_queued.pk).state == OutboxJob.State.PENDING
    assert "Outbox relay: published 1 job(s) the broker had not taken" in log_capture.output
    assert jobs_relay() == {"published": 0, "republished": 0, "taken_over": 0, "failed": 0}
    assert len(queued(broker)) == 1


def test_the_relay_publishes_again_a_job_whose_message_a_redis_restarted_empty_lost(
    broker: RedisServer, django_capture_on_commit_callbacks: Callable[..., Any], log_capture: LogCapture
) -> None:
    job = enqueue_reset_email(django_capture_on_commit_callbacks)
    broker.restart(save=False)
    assert queued(broker) == []
    OutboxJob.objects.filter(pk=job.pk).update(published_at=timezone.now() - timedelta(seconds=299))

    assert jobs_relay()["republished"] == 0  # five minutes without a worker taking it: lost

    OutboxJob.objects.filter(pk=job.pk).update(published_at=timezone.now() - timedelta(seconds=301))
    assert jobs_relay() == {"published": 0, "republished": 1, "taken_over": 0, "failed": 0}
    assert [message["headers"]["id"] for message in queued(broker)] == [str(job.pk)]
    assert OutboxJob.objects.get(pk=job.pk).publications == 2
    assert f"1 again after their message was lost, 0 after their worker was lost: {job.pk}" in (
        log_capture.output
    )


def test_the_relay_takes_over_a_job_whose_worker_was_lost_once_its_lease_ends(broker: RedisServer) -> None:
    now = timezone.now()
    lost = OutboxJob.objects.create(
        task="accounts.email_send", state=OutboxJob.State.RUNNING, attempts=1, lease_expires_at=now
    )
    alive = OutboxJob.objects.create(
        task="accounts.email_send",
        state=OutboxJob.State.RUNNING,
        attempts=1,
        lease_expires_at=now + timedelta(minutes=5),
    )
    last = OutboxJob.objects.create(
        task="accounts.email_send",
        state=OutboxJob.State.RUNNING,
        attempts=7,
        max_attempts=7,
        lease_expires_at=now,
        arguments={"body": "a code"},
    )

    assert jobs_relay() == {"published": 0, "republished": 0, "taken_over": 1, "failed": 1}

    assert [message["headers"]["id"] for message in queued(broker)] == [str(lost.pk)]
    assert OutboxJob.objects.get(pk=lost.pk).state == OutboxJob.State.PUBLISHED
    assert OutboxJob.objects.get(pk=alive.pk).state == OutboxJob.State.RUNNING
    last.refresh_from_db()
    assert (last.state, last.arguments, last.last_error) == (
        OutboxJob.State.FAILED,
        {},
        "worker lost during the last attempt",
    )


def test_the_relay_leaves_alone_jobs_not_due_on_their_way_or_finished(broker: RedisServer) -> None:
    now = timezone.now()
    for state, fields in [
        (OutboxJob.State.PENDING, {"due_at": now + timedelta(seconds=30)}),
        (OutboxJob.State.PUBLISHED, {"published_at": now - timedelta(seconds=10)}),
        (OutboxJob.State.DONE, {"due_at": now - timedelta(days=1)}),
        (OutboxJob.State.FAILED, {"due_at": now - timedelta(days=1)}),
    ]:
        OutboxJob.objects.create(task="accounts.email_send", state=state, **fields)

    assert jobs_relay() == {"published": 0, "republished": 0, "taken_over": 0, "failed": 0}
    assert queued(broker) == []


def test_the_relay_puts_back_what_a_stopped_broker_did_not_take(
    broker: RedisServer, log_capture: LogCapture
) -> None:
    jobs = [OutboxJob.objects.create(task="accounts.email_send") for _ in range(3)]
    make_due(*jobs)

    with broker.stopped():
        assert jobs_relay() == {"published": 0, "republished": 0, "taken_over": 0, "failed": 0}

    assert set(OutboxJob.objects.values_list("state", flat=True)) == {OutboxJob.State.PENDING}
    assert log_capture.output.count("broker unavailable") == 1
    assert jobs_relay()["published"] == 3
    assert len(queued(broker)) == 3


def test_jobs_finished_a_week_ago_are_pruned() -> None:
    now = timezone.now()
    old_done = OutboxJob.objects.create(
        task="t", state=OutboxJob.State.DONE, finished_at=now - timedelta(days=7, minutes=1)
    )
    old_failed = OutboxJob.objects.create(
        task="t", state=OutboxJob.State.FAILED, finished_at=now - timedelta(days=8)
    )
    recent = OutboxJob.objects.create(
        task="t", state=OutboxJob.State.DONE, finished_at=now - timedelta(days=6)
    )
    unfinished = OutboxJob.objects.create(
        task="t", state=OutboxJob.State.PENDING, due_at=now - timedelta(days=9)
    )

    assert jobs_prune() == 2

    assert set(OutboxJob.objects.values_list("pk", flat=True)) == {recent.pk, unfinished.pk}
    assert not OutboxJob.objects.filter(pk__in=[old_done.pk, old_failed.pk]).exists()


# --- the admin ----------------------------------------------------------------------------------


def test_staff_see_jobs_in_the_admin_without_their_arguments_and_cannot_change_them(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    staff = user_set_roles(user=UserFactory.create(username="root"), roles=[Role.ADMIN])
    totp_enrol(staff)  # staff need a second factor to reach the admin
    client = Client()
    client.force_login(staff)
    job = enqueue_reset_email(django_capture_on_commit_callbacks)  # eager: sent and erased
    pending = job_enqueue(task="accounts.email_send", arguments={"body": RESET_URL}, label="a label")

    listing = client.get("/admin/accounts/outboxjob/?state__exact=pending")
    page = client.get(f"/admin/accounts/outboxjob/{pending.pk}/change/")

    assert listing.status_code == page.status_code == 200
    assert "a label" in listing.content.decode()
    assert "account/email/password_reset_key" not in listing.content.decode()  # filtered out
    assert str(pending.pk) in page.content.decode()
    assert RESET_URL not in page.content.decode()
    assert client.get("/admin/accounts/outboxjob/add/").status_code == 403
    assert client.post(f"/admin/accounts/outboxjob/{job.pk}/delete/", {"post": "yes"}).status_code == 403
    assert OutboxJob.objects.count() == 2
