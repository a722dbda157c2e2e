"""Pages of our own in the Django admin (forms, confirmations, one-time secrets), services'
refusals shown as messages, and inlines that show only their first rows."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import ValidationError
from django.db.models import Model
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse


def admin_change_url(model_admin: ModelAdmin[Any], object_id: Any) -> str:
    """The admin change page of one object of `model_admin`'s model."""
    opts = model_admin.opts
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id])


def admin_page(
    model_admin: ModelAdmin[Any],
    request: HttpRequest,
    template: str,
    *,
    title: str,
    original: Model | None = None,
    **context: Any,
) -> TemplateResponse:
    """Render `template` with what the admin's own pages have: the site's context, the model's
    options and media, and for a page about one object (`original`) the object's change page as
    `change_url`, which the breadcrumbs link. `context` adds to it or replaces it."""
    request.current_app = model_admin.admin_site.name
    opts = model_admin.opts
    page: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": opts,
        "media": model_admin.media,
    }
    if original is not None:
        page["original"] = original
        page["change_url"] = admin_change_url(model_admin, original.pk)
    page.update(context)
    return TemplateResponse(request, template, page)


class RefusalsShownAdmin(ModelAdmin):
    """A service's refusal (a `ValidationError`: a rule the forms could not check, a race, a forged
    selection) is shown as a message instead of an error page: on the page it came from, or after a
    refused deletion on the object's page. The view's transaction rolled back: nothing changed."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as error:
            return _refusal_shown(request, error, request.get_full_path())

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> Any:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as error:
            return _refusal_shown(request, error, admin_change_url(self, object_id))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        try:
            return super().changelist_view(request, extra_context)
        except ValidationError as error:
            return _refusal_shown(request, error, request.get_full_path())


def _refusal_shown(request: HttpRequest, error: ValidationError, url: str) -> HttpResponseRedirect:
    messages.error(request, " ".join(error.messages))
    return HttpResponseRedirect(url)


class FirstRowsFormSet(BaseInlineFormSet):
    """An inline's first `rows_shown` rows, in `rows_ordering` (else the inline's ordering), read
    in the one query the list costs anyway; `rows_total` (one COUNT more) when there are more.

    Every row is a form field or more, and Django refuses to save a page of more than
    DATA_UPLOAD_MAX_NUMBER_FIELDS fields: with every row shown, a long list made its page unsavable.
    """

    rows_shown = 50
    rows_ordering: tuple[Any, ...] = ()
    rows_total: int | None = None

    def get_queryset(self) -> Any:
        if not hasattr(self, "_queryset"):
            queryset = super().get_queryset()
            if self.rows_ordering:
                queryset = queryset.order_by(*self.rows_ordering)
            rows = list(queryset[: self.rows_shown + 1])
            if len(rows) > self.rows_shown:
                self.rows_total = queryset.count()
                rows = rows[: self.rows_shown]
            self._queryset = rows  # the formset only counts, indexes and iterates it
        return self._queryset


def first_rows_headings(context: dict[str, Any]) -> None:
    """Say in the heading of each inline of a change page that shows only its first rows how many
    there are: the inline's `rows_heading` (keys `plural`, `shown`, `total`), or a plain one."""
    for inline_formset in context.get("inline_admin_formsets", []):
        inline, formset = inline_formset.opts, inline_formset.formset
        formset.get_queryset()  # the list's one query, run now rather than while rendering
        total = getattr(formset, "rows_total", None)
        if total is not None:
            heading = getattr(inline, "rows_heading", "{plural}: the first {shown} of {total}")
            inline.verbose_name_plural = heading.format(
                plural=inline.verbose_name_plural, shown=formset.rows_shown, total=total
            )
