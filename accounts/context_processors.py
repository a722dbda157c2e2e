"""Template context of the account pages."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.middleware import RESUMABLE_PATHS, RESUME_SESSION_KEY
from accounts.models import User
from accounts.selectors.mfa import user_mfa_missing

MFA_PAGES_PREFIX = "/accounts/2fa/"


def mfa_enrolment_resume(request: HttpRequest) -> dict[str, str]:
    """`mfa_resume_url`: on the second-factor pages, once a factor is set up, the authorization
    request the enrolment interrupted (accounts.middleware.mfa_enrolment_redirect)."""
    if not request.path_info.startswith(MFA_PAGES_PREFIX) or not hasattr(request, "session"):
        return {}
    resume = request.session.get(RESUME_SESSION_KEY)
    user = getattr(request, "user", None)
    if not isinstance(resume, str) or not resume.startswith(RESUMABLE_PATHS) or not isinstance(user, User):
        return {}
    if user_mfa_missing(user):
        return {}
    return {"mfa_resume_url": resume}
