"""The audit trail: append-only events in a keyed chain (docs/decisions/0007-audit-trail.md)."""

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
    # The chain: `hash` is the HMAC-SHA256 of the previous event's `hash` and this event's content
    # under the key `key_id` names (audit.chain); empty `key_id`: an unkeyed SHA-256 from before.
    previous_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # The database default lets the previous release's processes keep recording during an upgrade;
    # their unkeyed events need `audit_verify --checkpoint-unkeyed` afterwards (decision 0007).
    key_id = models.CharField(
        max_length=16, blank=True, default="", db_default="", help_text="Which AUDIT_CHAIN_KEYS key MACed it."
    )

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


class AuditChainCheckpoint(models.Model):
    """A keyed statement about where the chain legitimately starts or stops being unkeyed.

    `pruned`: retention deleted every event up to `through_id`, the last of which had the MAC
    `through_hash`; the oldest remaining event must link to it. `legacy`: events up to `through_id`
    were chained before keys existed (unkeyed SHA-256); no later event may be unkeyed.
    """

    class Kind(models.TextChoices):
        PRUNED = "pruned", "Pruned"
        LEGACY = "legacy", "Unkeyed before this point"

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    through_id = models.BigIntegerField()
    through_hash = models.CharField(max_length=64)
    deleted = models.PositiveIntegerField(default=0, help_text="Events this pruning deleted.")
    key_id = models.CharField(max_length=16)
    mac = models.CharField(max_length=64)
    # Set by the database (PostgreSQL): the transaction that wrote it, the only one its pruning
    # may delete events in (migration 0004).
    transaction_id = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.get_kind_display()} through #{self.through_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditTrailIsAppendOnly("Audit chain checkpoints cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AuditTrailIsAppendOnly("Audit chain checkpoints cannot be deleted.")

    def signed_fields(self) -> dict[str, Any]:
        """The content the MAC covers."""
        return {
            "kind": self.kind,
            "created_at": self.created_at.isoformat(),
            "through_id": self.through_id,
            "through_hash": self.through_hash,
            "deleted": self.deleted,
        }


class AuditVerification(models.Model):
    """One verification of the chain: what was checked, and whether it held."""

    class Source(models.TextChoices):
        SCHEDULE = "schedule", "Scheduled job"
        STAFF = "staff", "Staff (API)"
        COMMAND = "command", "manage.py audit_verify"

    id = models.BigAutoField(primary_key=True)
    verified_at = models.DateTimeField(default=timezone.now)
    full = models.BooleanField(help_text="The whole chain, or only the events since the last verification.")
    source = models.CharField(max_length=16, choices=Source.choices)
    requested_by = models.CharField(max_length=64, blank=True, help_text="The staff user's ID.")
    intact = models.BooleanField()
    checked = models.PositiveBigIntegerField(default=0)
    # Chain positions (event primary keys): the first event checked, and the last found intact.
    checked_from = models.BigIntegerField(null=True, blank=True)
    checked_to = models.BigIntegerField(null=True, blank=True)
    checked_to_hash = models.CharField(max_length=64, blank=True)
    broken_seq = models.BigIntegerField(null=True, blank=True)
    broken_event_id = models.UUIDField(null=True, blank=True)
    reason = models.TextField(blank=True)
    anchor = models.CharField(max_length=96, blank=True, help_text='"seq:mac", when one was checked.')
    head_seq = models.BigIntegerField(null=True, blank=True)
    head_hash = models.CharField(max_length=64, blank=True)
    head_key_id = models.CharField(max_length=16, blank=True)

    class Meta:
        ordering = ("-id",)
        indexes = [models.Index(fields=["verified_at"], name="audit_verified_idx")]

    def __str__(self) -> str:
        return f"{self.verified_at:%Y-%m-%d %H:%M:%S} {'intact' if self.intact else 'BROKEN'}"
