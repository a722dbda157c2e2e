"""The outbox: background jobs recorded with the change that asks for them, delivered whatever the
broker does (docs/decisions/0019-outbox.md).

- `job_enqueue` writes the job in the caller's transaction. Once that commits, one publish is tried
  at once, bounded (`PUBLISH_TIMEOUT_SECONDS` per broker call, no retries) and never raising: the
  request that caused the job never fails or waits on the broker.
- `jobs_relay` (a beat job every few seconds) publishes what is due and not published (the broker
  was down), publishes again what was published long ago but never started (a Redis that restarted
  empty lost it), and what a worker claimed and then disappeared with (its lease ended).
- A task claims its job with one conditional UPDATE (`job_claim`) before doing anything, so a
  message delivered twice (the relay's and the broker's own redelivery) runs once; it then marks
  the job done, failed, or due again later (`job_finish`, `job_retry_later`).

The broker only carries the job's ID: e-mail bodies (links, codes) stay in PostgreSQL, and only
until the job is finished.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from importlib import import_module
from typing import Any

from celery import current_app
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu import Connection
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from accounts.app_settings import jobs_lease, jobs_publish_pause_seconds, jobs_republish_after
from accounts.models import OutboxJob
from config.batches import delete_in_batches
from config.outages import BROKER, outage_dependency, outage_report

logger = logging.getLogger(__name__)

# Every broker call of a publish (connect, then each command) gives up after this: a hung Redis
# costs the request that queued a job about this much, once (see jobs_publish_pause_seconds).
PUBLISH_TIMEOUT_SECONDS = 0.5
# What a failed publish raises: kombu wraps the transport's errors, but a connection that fails
# while being set up can surface as the Redis client's or the socket's own error.
PUBLISH_ERRORS = (KombuError, RedisError, OSError)
# A pending job younger than this is left to the publish its own commit makes.
RELAY_GRACE = timedelta(seconds=2)
RELAY_BATCH = 100
# One relay pass stops taking new batches after this, well before the next pass is due.
RELAY_PASS_SECONDS = 4.0
# Finished jobs are kept this long for operators, without their arguments.
FINISHED_JOB_RETENTION = timedelta(days=7)
ERROR_MAX_LENGTH = 200

_publish_paused_until = 0.0


def job_enqueue(
    *,
    task: str,
    arguments: dict[str, Any],
    label: str = "",
    job_id: uuid.UUID | None = None,
    max_attempts: int = 7,
) -> OutboxJob:
    """Record a job in the current transaction; publish it once that commits (at once outside one)."""
    job = OutboxJob(
        id=job_id or uuid.uuid4(), task=task, arguments=arguments, label=label, max_attempts=max_attempts
    )
    # The key is new and the state is ours: only the fields need checking, without a query.
    job.full_clean(validate_unique=False, validate_constraints=False)
    job.save(force_insert=True)
    job_id_text = str(job.pk)

    def publish_after_commit() -> None:
        _job_publish_after_commit(job_id_text, task, label)

    # robust: whatever happens to the publish, the committed change stands and the request answers
    # (the relay publishes the job). A named function: Django logs a failed one by its __qualname__.
    transaction.on_commit(publish_after_commit, robust=True)
    return job


def job_adopt(*, job_id: uuid.UUID, task: str, arguments: dict[str, Any], label: str = "") -> OutboxJob:
    """The job of a message queued before the outbox existed (its arguments in the message): the
    same message delivered again finds the same job."""
    job, _ = OutboxJob.objects.get_or_create(
        pk=job_id,
        defaults={
            "task": task,
            "arguments": arguments,
            "label": label,
            "state": OutboxJob.State.PUBLISHED,
            "published_at": timezone.now(),
            "publications": 1,
        },
    )
    return job


# --- publishing -------------------------------------------------------------------------------


def _eager() -> bool:
    return bool(current_app.conf.task_always_eager)


@contextlib.contextmanager
def _broker_connection() -> Iterator[Connection | None]:
    """A connection of its own, every call bounded, nothing retried: the app's pooled connections
    would retry and wait as the broker settings say, which suits a worker, not a request."""
    if _eager():
        yield None
        return
    with current_app.connection_for_write(
        connect_timeout=PUBLISH_TIMEOUT_SECONDS,
        transport_options={
            "socket_connect_timeout": PUBLISH_TIMEOUT_SECONDS,
            "socket_timeout": PUBLISH_TIMEOUT_SECONDS,
            "max_retries": 0,
        },
    ) as connection:
        yield connection


def _job_send(*, job_id: str, task: str, connection: Connection | None) -> None:
    """Hand a job to the broker (run it, with eager tasks). The message is the job's ID, also its
    task ID; no result is stored (the result backend would be one more Redis call to wait on).

    Published by name: a web process need not have imported the module that defines the task
    (gunicorn workers import tasks modules only when something uses them)."""
    if connection is None:
        # Eager tasks (the embedded default): run it here, which needs the task itself, defined in
        # the tasks module of the app its name starts with ("accounts.email_send": accounts.tasks).
        if task not in current_app.tasks:
            import_module(f"{task.split('.', 1)[0]}.tasks")
        current_app.tasks[task].apply_async(args=(job_id,), task_id=job_id, ignore_result=True)
        return
    current_app.send_task(
        task, args=(job_id,), task_id=job_id, ignore_result=True, connection=connection, retry=False
    )


def _job_publish_after_commit(job_id: str, task: str, label: str) -> None:
    global _publish_paused_until
    if _eager():
        _job_send(job_id=job_id, task=task, connection=None)
        # The task ran here and then. Had it asked to run again later, nothing would: no worker
        # and no relay run with eager tasks (the embedded default).
        if OutboxJob.objects.filter(pk=job_id, state=OutboxJob.State.PENDING).update(
            state=OutboxJob.State.FAILED, finished_at=timezone.now(), arguments={}
        ):
            logger.error("Job %s (%s %s) not done; eager tasks cannot retry later", job_id, task, label)
        return
    if time.monotonic() < _publish_paused_until:
        return  # the broker failed a moment ago: the relay publishes this job
    try:
        with _broker_connection() as connection:
            _job_send(job_id=job_id, task=task, connection=connection)
    except PUBLISH_ERRORS as error:
        _publish_paused_until = time.monotonic() + jobs_publish_pause_seconds()
        outage_report(outage_dependency(error) or BROKER, error)
        return
    # A worker may have claimed it already: then the claim stands.
    OutboxJob.objects.filter(pk=job_id, state=OutboxJob.State.PENDING).update(
        state=OutboxJob.State.PUBLISHED, published_at=timezone.now(), publications=F("publications") + 1
    )


# --- the relay --------------------------------------------------------------------------------


def _jobs_take(*, now: Any) -> tuple[list[OutboxJob], dict[str, int]]:
    """Mark one batch of due jobs published (rows locked, others' batches skipped); fail the ones
    whose worker was lost on their last attempt."""
    due = (
        Q(state=OutboxJob.State.PENDING, due_at__lte=now - RELAY_GRACE)
        | Q(state=OutboxJob.State.PUBLISHED, published_at__lte=now - jobs_republish_after())
        | Q(state=OutboxJob.State.RUNNING, lease_expires_at__lte=now)
    )
    counts = {"published": 0, "republished": 0, "taken_over": 0, "failed": 0}
    with transaction.atomic():
        jobs = list(
            OutboxJob.objects.select_for_update(skip_locked=True)
            .filter(due)
            .order_by("due_at")
            .only("id", "task", "label", "state", "attempts", "max_attempts")[:RELAY_BATCH]
        )
        exhausted = [
            job for job in jobs if job.state == OutboxJob.State.RUNNING and job.attempts >= job.max_attempts
        ]
        if exhausted:
            OutboxJob.objects.filter(pk__in=[job.pk for job in exhausted]).update(
                state=OutboxJob.State.FAILED,
                finished_at=now,
                arguments={},
                last_error="worker lost during the last attempt",
            )
            for job in exhausted:
                logger.error(
                    "Job %s (%s %s) failed: its worker was lost during attempt %s of %s",
                    job.pk,
                    job.task,
                    job.label,
                    job.attempts,
                    job.max_attempts,
                )
        counts["failed"] = len(exhausted)
        publish = [job for job in jobs if job not in exhausted]
        OutboxJob.objects.filter(pk__in=[job.pk for job in publish]).update(
            state=OutboxJob.State.PUBLISHED, published_at=now, publications=F("publications") + 1
        )
    for job in publish:
        key = {
            OutboxJob.State.PENDING: "published",
            OutboxJob.State.PUBLISHED: "republished",
            OutboxJob.State.RUNNING: "taken_over",
        }[OutboxJob.State(job.state)]
        counts[key] += 1
    return publish, counts


def jobs_relay() -> dict[str, int]:
    """Publish every job that is due and not on its way to a worker (beat job, every few seconds)."""
    started = time.monotonic()
    now = timezone.now()
    totals = {"published": 0, "republished": 0, "taken_over": 0, "failed": 0}
    while True:
        jobs, counts = _jobs_take(now=now)
        totals["failed"] += counts["failed"]
        if not jobs:
            return totals
        sent = 0
        try:
            with _broker_connection() as connection:
                for job in jobs:
                    _job_send(job_id=str(job.pk), task=job.task, connection=connection)
                    sent += 1
        except PUBLISH_ERRORS as error:
            # Back to pending, unless a worker got an older message of one meanwhile.
            OutboxJob.objects.filter(
                pk__in=[job.pk for job in jobs[sent:]], state=OutboxJob.State.PUBLISHED, published_at=now
            ).update(state=OutboxJob.State.PENDING)
            outage_report(outage_dependency(error) or BROKER, error)
            return totals
        for key in ("published", "republished", "taken_over"):
            totals[key] += counts[key]
        _jobs_relay_log(jobs, counts)
        if len(jobs) + counts["failed"] < RELAY_BATCH or time.monotonic() - started > RELAY_PASS_SECONDS:
            return totals


def _jobs_relay_log(jobs: list[OutboxJob], counts: dict[str, int]) -> None:
    if counts["republished"] or counts["taken_over"]:
        logger.warning(
            "Outbox relay: published %s new, %s again after their message was lost, %s after their "
            "worker was lost: %s",
            counts["published"],
            counts["republished"],
            counts["taken_over"],
            ", ".join(f"{job.pk} ({job.task} {job.label})" for job in jobs if job.state != "pending"),
        )
    elif counts["published"]:
        logger.info("Outbox relay: published %s job(s) the broker had not taken", counts["published"])


def jobs_prune(*, now: Any = None) -> int:
    """Delete jobs finished more than FINISHED_JOB_RETENTION ago."""
    cutoff = (now or timezone.now()) - FINISHED_JOB_RETENTION
    finished = Q(state__in=[OutboxJob.State.DONE, OutboxJob.State.FAILED], finished_at__lte=cutoff)
    return delete_in_batches(OutboxJob, finished, batch_size=1000)


# --- running a job (its task) --------------------------------------------------------------------


def job_claim(*, job_id: str) -> OutboxJob | None:
    """Take a job for one attempt, under a lease; None when it is finished, claimed by a live
    worker, not due yet, or unknown.

    One conditional UPDATE, committed at once: of two deliveries of the same message, one claims
    and the other finds it claimed, whatever the cache or the broker did.
    """
    now = timezone.now()
    claimable = (
        Q(state=OutboxJob.State.PUBLISHED)
        | Q(state=OutboxJob.State.PENDING, due_at__lte=now)
        | Q(state=OutboxJob.State.RUNNING, lease_expires_at__lte=now)
    )
    claimed = (
        OutboxJob.objects.filter(pk=job_id)
        .filter(claimable)
        .update(
            state=OutboxJob.State.RUNNING,
            attempts=F("attempts") + 1,
            lease_expires_at=now + jobs_lease(),
        )
    )
    if not claimed:
        return None
    return OutboxJob.objects.get(pk=job_id)


def job_finish(*, job: OutboxJob, error: str = "") -> None:
    """Mark a job done (failed, with `error`) and erase its arguments.

    Done by whichever attempt finishes, even one whose lease ended meanwhile: a message still on
    its way then finds the job done instead of running it again.
    """
    state = OutboxJob.State.FAILED if error else OutboxJob.State.DONE
    OutboxJob.objects.filter(pk=job.pk).exclude(
        state__in=[OutboxJob.State.DONE, OutboxJob.State.FAILED]
    ).update(state=state, finished_at=timezone.now(), arguments={}, last_error=error[:ERROR_MAX_LENGTH])


def job_retry_later(*, job: OutboxJob, countdown: float, error: str) -> bool:
    """Make a job due again in `countdown` seconds (the relay publishes it then); False, and the
    job failed, when this was its last attempt."""
    if job.attempts >= job.max_attempts:
        job_finish(job=job, error=error)
        return False
    OutboxJob.objects.filter(pk=job.pk, state=OutboxJob.State.RUNNING, attempts=job.attempts).update(
        state=OutboxJob.State.PENDING,
        due_at=timezone.now() + timedelta(seconds=countdown),
        lease_expires_at=None,
        last_error=error[:ERROR_MAX_LENGTH],
    )
    return True
