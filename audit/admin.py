"""The audit trail in the Django admin: read-only, filterable, and light on a table of millions."""

from __future__ import annotations

from functools import cached_property
from typing import Any, cast

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from audit.models import AuditChainCheckpoint, AuditEvent, AuditEventQuerySet, AuditVerification
from audit.selectors import audit_event_search, audit_event_values

COUNT_CAP = 10_000
# Query-string lookups the changelist takes: the sidebar's and the API's filters, each on an index.
# Anything else (`?user_agent__icontains=`) would read the whole table, and is refused with a 400.
INDEXED_LOOKUPS = frozenset(
    {
        "about_user",
        "action",
        "actor_type",
        "actor_type__exact",
        "actor_id",
        "target_type",
        "target_id",
        "request_id",
        "ip_address",
        "outcome",
        "outcome__exact",
        "occurred_at__gte",
        "occurred_at__lt",
    }
)


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP matching events (100 pages of 100).

    An exact COUNT(*) reads every matching row — a million for the unfiltered list; past the cap,
    staff narrow the list with the filters or the search rather than page through it.
    """

    @cached_property
    def count(self) -> int:
        return cast(QuerySet[Any], self.object_list)[:COUNT_CAP].count()


class ActionListFilter(admin.SimpleListFilter):
    """The recorded actions, read from the action index (not SELECT DISTINCT over the table)."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(action, action) for action in audit_event_values("action")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        return queryset.filter(action=self.value()) if self.value() else queryset


class AboutUserFilter(admin.SimpleListFilter):
    """A user's timeline: what they did and what was done to them (the user admin links here)."""

    title = "user"
    parameter_name = "about_user"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # Shown only while a timeline is open, with "All" to leave it.
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if not self.value():
            return queryset
        return cast(AuditEventQuerySet, queryset).about_user(self.value())


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit rows and the evidence about their chain: staff read them; only the audit services write them."""

    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = (
        "occurred_at",
        "action",
        "outcome",
        "actor_label",
        "target_label",
        "ip_address",
        "request_id",
    )
    # Any other column would sort the whole table; the chain order is the order.
    sortable_by = ()
    ordering = ("-id",)
    list_filter = ("outcome", "actor_type", ActionListFilter, "occurred_at", AboutUserFilter)
    # Exact matches only, each on an index: see get_search_results.
    search_fields = ("=actor_id", "=target_id", "=request_id", "=action")
    search_help_text = "Exact actor ID, target ID, request ID or action."
    readonly_fields = (
        "event_id",
        "occurred_at",
        "action",
        "outcome",
        "actor_type",
        "actor_id",
        "actor_label",
        "target_type",
        "target_id",
        "target_label",
        "ip_address",
        "user_agent",
        "request_id",
        "changes",
        "metadata",
        "previous_hash",
        "hash",
        "key_id",
    )
    fields = readonly_fields
    paginator = CappedCountPaginator
    show_full_result_count = False  # no COUNT(*) of the whole table on every page
    show_facets = admin.ShowFacets.NEVER  # facet counts would be one COUNT per filter choice

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return lookup in INDEXED_LOOKUPS

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent], search_term: str
    ) -> tuple[QuerySet[AuditEvent], bool]:
        return audit_event_search(cast(AuditEventQuerySet, queryset), search_term), False


@admin.register(AuditVerification)
class AuditVerificationAdmin(ReadOnlyAdmin):
    list_display = (
        "verified_at",
        "intact",
        "full",
        "source",
        "checked",
        "checked_to",
        "broken_seq",
        "reason",
    )
    list_filter = ("intact", "full", "source")
    date_hierarchy = "verified_at"
    show_full_result_count = False
    readonly_fields = (
        "verified_at",
        "intact",
        "full",
        "source",
        "requested_by",
        "checked",
        "checked_from",
        "checked_to",
        "checked_to_hash",
        "broken_seq",
        "broken_event_id",
        "reason",
        "anchor",
        "head_seq",
        "head_hash",
        "head_key_id",
    )
    fields = readonly_fields


@admin.register(AuditChainCheckpoint)
class AuditChainCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "through_id", "deleted", "key_id")
    list_filter = ("kind",)
    readonly_fields = (
        "created_at",
        "kind",
        "through_id",
        "through_hash",
        "deleted",
        "key_id",
        "mac",
        "transaction_id",
    )
    fields = readonly_fields
