"""The audit trail: append-only, hash-chained events (docs/decisions/0007-audit-trail.md)."""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

from django.db import models
from django.utils import timezone

from audit.exceptions import AuditTrailIsAppendOnly


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AuditTrailIsAppendOnly("Audit events cannot be changed.")

    def delete(self) -> NoReturn:
        raise AuditTrailIsAppendOnly("Audit events are removed only by the retention job.")

    def about_user(self, user_id: object) -> AuditEventQuerySet:
        """Events a user did or that were done to them."""
        return self.filter(
            models.Q(actor_type=AuditEvent.ActorType.USER, actor_id=str(user_id))
            | models.Q(target_type=AuditEvent.USER_TARGET_TYPE, target_id=str(user_id))
        )


class AuditEvent(models.Model):
    """Who did what, to whom, when, from where — and whether it worked."""

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"

    class ActorType(models.TextChoices):
        USER = "user", "User"
        CLIENT = "client", "OAuth client"
        SYSTEM = "system", "System"
        ANONYMOUS = "anonymous", "Anonymous"

    USER_TARGET_TYPE = "accounts.user"
    GENESIS_HASH = "0" * 64

    # The primary key orders the chain; the event ID is what the API shows.
    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    occurred_at = models.DateTimeField(default=timezone.now)
    action = models.CharField(
        max_length=100, help_text='A stable dotted name, e.g. "accounts.user.signed_in".'
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=150, blank=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=150, blank=True, help_text="Kept after the target is deleted.")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    changes = models.JSONField(default=dict, blank=True, help_text="Field: [before, after]; never secrets.")
    metadata = models.JSONField(default=dict, blank=True)
    previous_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["occurred_at"], name="audit_occurred_idx"),
            models.Index(fields=["action", "-id"], name="audit_action_idx"),
            models.Index(fields=["actor_type", "actor_id", "-id"], name="audit_actor_idx"),
            models.Index(fields=["target_type", "target_id", "-id"], name="audit_target_idx"),
            models.Index(fields=["outcome", "-id"], name="audit_outcome_idx"),
            models.Index(fields=["request_id"], name="audit_request_idx"),
            models.Index(fields=["ip_address", "-id"], name="audit_ip_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.action} ({self.outcome})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditTrailIsAppendOnly("Audit events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AuditTrailIsAppendOnly("Audit events are removed only by the retention job.")

    def chained_fields(self) -> dict[str, Any]:
        """The content the hash covers, in a stable JSON-ready form."""
        return {
            "event_id": str(self.event_id),
            "occurred_at": self.occurred_at.isoformat(),
            "action": self.action,
            "outcome": self.outcome,
            "actor": [self.actor_type, self.actor_id, self.actor_label],
            "target": [self.target_type, self.target_id, self.target_label],
            "ip_address": self.ip_address or "",
            "user_agent": self.user_agent,
            "request_id": self.request_id,
            "changes": self.changes,
            "metadata": self.metadata,
        }
