"""Browser requests of a user whose role requires a second factor they have not set up yet."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from accounts.models import User
from accounts.selectors.mfa import user_mfa_missing
from audit.services import audit_record

# What such a user may still reach: setting up the factor (allauth's MFA pages, which may first
# ask for the password again), signing out (allauth's page and the admin's), static files and
# probes. The JSON APIs answer for themselves: allauth's headless endpoints are how app clients
# enrol, and the DRF API refuses with 403 `mfa_enrollment_required` (accounts.authentication).
ENROLMENT_PATH_PREFIXES = (
    "/accounts/2fa/",
    "/accounts/reauthenticate/",
    "/accounts/logout/",
    "/admin/logout/",
    "/_allauth/",
    "/api/",
    "/static/",
    "/health/",
    # The authorization endpoint checks the request first (a bad client or redirect URI is an
    # error page, never this redirect), and answers `prompt=none` with `interaction_required`:
    # oauth_provider.views.authorize calls `mfa_enrolment_redirect` itself.
    "/o/authorize/",
)
AUDITED_SESSION_KEY = "accounts_mfa_enrolment_required_audited"
# The authorization request that was interrupted to set up a factor: the MFA pages offer to go
# back to it once one is set up (accounts.context_processors.mfa_enrolment_resume).
RESUME_SESSION_KEY = "accounts_mfa_enrolment_resume"
RESUMABLE_PATHS = ("/o/authorize/",)


class MFAEnrolmentMiddleware:
    """Send a signed-in user who must have a second factor, and has none, to set one up first.

    After AuthenticationMiddleware and MessageMiddleware. The first redirect of a session is
    recorded in the audit trail (`accounts.mfa.enrolment_required`).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # The path first: the API's requests never load the session's user here.
        if request.path_info.startswith(ENROLMENT_PATH_PREFIXES):
            return self.get_response(request)
        user = getattr(request, "user", None)
        if isinstance(user, User) and user_mfa_missing(user):
            return mfa_enrolment_redirect(request, user)
        return self.get_response(request)


def mfa_enrolment_redirect(request: HttpRequest, user: User) -> HttpResponse:
    """To the second-factor setup, with a message; the session's first one is audited.

    An interrupted authorization request is kept in the session, to be offered back afterwards.
    """
    if request.method == "GET" and request.path_info in RESUMABLE_PATHS:
        request.session[RESUME_SESSION_KEY] = request.get_full_path()
    if not request.session.get(AUDITED_SESSION_KEY):
        request.session[AUDITED_SESSION_KEY] = True
        audit_record(
            action="accounts.mfa.enrolment_required",
            actor=user,
            target=user,
            request=request,
            metadata={"path": request.path_info[:200], "roles": user.roles},
        )
    messages.warning(
        request,
        "Your account must be protected by a second factor. Set up an authenticator app or a "
        "security key to continue.",
        fail_silently=True,
    )
    return HttpResponseRedirect(reverse("mfa_index"))
