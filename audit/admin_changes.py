"""Admin changes in the audit trail, with their field values.

Every admin action writes a `LogEntry`; a receiver (audit.receivers) mirrors each into the audit
trail in the same transaction. A `LogEntry` names the changed fields only; admins that use
`AuditedModelAdminMixin` also hand over before/after values.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django.db import models
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

# (model label, object ID) -> {field: [before, after]}, for the LogEntry about to be written.
pending_changes: ContextVar[dict[tuple[str, str], dict[str, Any]] | None] = ContextVar(
    "audit_pending_admin_changes", default=None
)


def json_value(value: Any) -> Any:
    """A form value as JSON: objects by primary key, collections as lists, the rest as text."""
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, QuerySet | list | tuple | set):
        return sorted(json_value(item) for item in value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def form_changes(form: ModelForm[Any]) -> dict[str, list[Any]]:
    return {
        name: [json_value(form.initial.get(name)), json_value(form.cleaned_data.get(name))]
        for name in form.changed_data
    }


class AuditedModelAdminMixin:
    """Pass a change form's before/after values to the audit event of the admin change."""

    def save_model(self, request: HttpRequest, obj: models.Model, form: ModelForm[Any], change: bool) -> None:
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        stash = pending_changes.get()
        if stash is None:
            stash = {}
            pending_changes.set(stash)
        stash[(obj._meta.label_lower, str(obj.pk))] = form_changes(form)


def changes_for(*, model_label: str, object_id: str) -> dict[str, Any]:
    stash = pending_changes.get()
    return stash.pop((model_label, object_id), {}) if stash else {}
