"""The browser page of the applications a user authorized, with a Revoke button per application
(docs/decisions/0014-oauth-authorize-and-consent.md)."""

from __future__ import annotations

from typing import cast
from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe
from oauth2_provider.scopes import get_scopes_backend

from accounts.models import User
from oauth_provider.models import Application, Consent
from oauth_provider.services.consents import ConsentNotFound, consent_revoke


@require_safe
@login_required
def authorized_applications_page(request: HttpRequest) -> HttpResponse:
    consents = list(Consent.objects.authorized_by(cast(User, request.user)))
    descriptions = get_scopes_backend().get_all_scopes()
    applications = []
    logo_origins = set()
    for consent in consents:
        logo = urlsplit(consent.application.logo_uri)
        has_logo = logo.scheme == "https"
        if has_logo:
            logo_origins.add(f"{logo.scheme}://{logo.netloc}")
        applications.append(
            {
                "consent": consent,
                "application": consent.application,
                "logo_uri": consent.application.logo_uri if has_logo else "",
                "scopes": [descriptions.get(scope, scope) for scope in consent.scope_list],
            }
        )
    response = render(request, "oauth_provider/applications.html", {"applications": applications})
    if logo_origins:  # the CSP allows images from our own origin only; the logos are the exception
        response._csp_update = {"img-src": sorted(logo_origins)}  # type: ignore[attr-defined]
    return response


@require_POST
@login_required
def authorized_application_revoke(request: HttpRequest, client_id: str) -> HttpResponse:
    application = Application.objects.filter(client_id=client_id).first()
    if application is None:
        raise Http404("You have not authorized this application.")
    try:
        consent_revoke(user=cast(User, request.user), application=application)
    except ConsentNotFound as error:
        raise Http404(str(error)) from error
    messages.success(request, f"{application.name or application.client_id} can no longer use your account.")
    return redirect("oauth_applications")
