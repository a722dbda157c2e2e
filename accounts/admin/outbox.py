"""The outbox of background jobs in the admin, read-only: what is queued, stuck or failed.

A job's arguments are never shown (an e-mail's holds its links and codes); jobs change only
through their tasks and the relay (accounts.services.outbox).
"""

from __future__ import annotations

from django.contrib import admin

from accounts.admin.allauth_records import ReadOnlyAdmin
from accounts.models import OutboxJob


@admin.register(OutboxJob)
class OutboxJobAdmin(ReadOnlyAdmin):
    list_display = (
        "task",
        "label",
        "state",
        "attempts",
        "publications",
        "created_at",
        "due_at",
        "finished_at",
    )
    list_filter = ("state", "task")
    search_fields = ("=id", "label")
    date_hierarchy = "created_at"
    fields = (
        "id",
        "task",
        "label",
        "state",
        "attempts",
        "max_attempts",
        "publications",
        "created_at",
        "due_at",
        "published_at",
        "lease_expires_at",
        "finished_at",
        "last_error",
    )  # not `arguments`
    readonly_fields = fields
