"""Pages of our own in the Django admin: forms, confirmations, one-time secrets."""

from __future__ import annotations

from typing import Any

from django.contrib.admin import ModelAdmin
from django.db.models import Model
from django.http import HttpRequest
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
