"""The audit trail's list filters: each one lands on an index of `AuditEvent` (see its Meta)."""

from __future__ import annotations

from django import forms
from django_filters import rest_framework as filters

from audit.models import AuditEvent, AuditEventQuerySet
from audit.selectors import audit_event_values


class IPAddressFilter(filters.Filter):
    field_class = forms.GenericIPAddressField


class AuditEventFilter(filters.FilterSet):
    actor_type = filters.ChoiceFilter(choices=AuditEvent.ActorType.choices, help_text="Who acted: kind.")
    actor_id = filters.CharFilter(
        max_length=64, help_text="Who acted: user UUID or OAuth client ID (any actor type if none given)."
    )
    target_type = filters.CharFilter(max_length=64, help_text='What was acted on, e.g. "accounts.user".')
    target_id = filters.CharFilter(
        max_length=64, help_text="ID of the target (any target type if none given)."
    )
    action = filters.CharFilter(
        max_length=100, help_text='Exact dotted action, e.g. "accounts.user.signed_in".'
    )
    outcome = filters.ChoiceFilter(choices=AuditEvent.Outcome.choices)
    occurred_after = filters.IsoDateTimeFilter(
        field_name="occurred_at", lookup_expr="gte", help_text="ISO 8601; events at or after this instant."
    )
    occurred_before = filters.IsoDateTimeFilter(
        field_name="occurred_at", lookup_expr="lt", help_text="ISO 8601; events strictly before this instant."
    )
    request_id = filters.CharFilter(max_length=128, help_text="The X-Request-ID of the request that acted.")
    ip_address = IPAddressFilter(help_text="Client IP address (IPv4 or IPv6), exact.")

    class Meta:
        model = AuditEvent
        fields = (
            "actor_type",
            "actor_id",
            "target_type",
            "target_id",
            "action",
            "outcome",
            "occurred_after",
            "occurred_before",
            "request_id",
            "ip_address",
        )

    def filter_queryset(self, queryset: AuditEventQuerySet) -> AuditEventQuerySet:
        queryset = super().filter_queryset(queryset)
        data = self.form.cleaned_data
        # The actor and target indexes lead with the type: an ID given alone names every type it
        # could have, so the database still probes the index (once per type) instead of the table.
        if data.get("actor_id") and not data.get("actor_type"):
            queryset = queryset.filter(actor_type__in=AuditEvent.ActorType.values)
        if data.get("target_id") and not data.get("target_type"):
            queryset = queryset.filter(target_type__in=audit_event_values("target_type"))
        return queryset
