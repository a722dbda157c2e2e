"""The outbox of background jobs (docs/decisions/0019-outbox.md).

A job is written in the transaction of the change that asks for it, so it exists exactly when the
change does; the broker only carries its ID. The row, not the broker, says whether the job still
has to run: a message lost with a Redis that restarted empty is published again, and a message
delivered twice runs once.
"""

from __future__ import annotations

import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboxJob(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending: published when due"
        PUBLISHED = "published", "Published: waiting for a worker"
        RUNNING = "running", "Running: claimed by a worker until its lease ends"
        DONE = "done", "Done"
        FAILED = "failed", "Failed: refused, or out of attempts"

    UNFINISHED = (State.PENDING, State.PUBLISHED, State.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task = models.CharField(max_length=200, help_text="The Celery task that runs the job.")
    label = models.CharField(
        max_length=200, blank=True, help_text="What the job is about, for operators (never a secret)."
    )
    arguments = models.JSONField(
        default=dict,
        blank=True,
        encoder=DjangoJSONEncoder,
        help_text="What the task needs; erased once the job is finished (an e-mail holds links and codes).",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Runs started by a worker.")
    max_attempts = models.PositiveIntegerField(default=7)
    publications = models.PositiveIntegerField(default=0, help_text="Times handed to the broker.")
    created_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(default=timezone.now, help_text="Not published before then.")
    published_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A running job whose worker is gone is taken over then."
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("created_at",)
        indexes = [
            # The relay's scan every few seconds: only unfinished jobs, a handful at any time.
            models.Index(
                fields=["due_at"],
                condition=Q(state__in=["pending", "published", "running"]),
                name="accounts_outboxjob_open_idx",
            ),
            models.Index(
                fields=["finished_at"],
                condition=Q(state__in=["done", "failed"]),
                name="accounts_outboxjob_done_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["pending", "published", "running", "done", "failed"]),
                name="accounts_outboxjob_state_valid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.task} {self.label} ({self.state})".replace("  ", " ")
