"""API-wide request throttles.

DRF's throttles read their rates once, at import; these read them per request so a rate changed
in settings (or by a test) applies at once. A Redis outage lets requests through: django-redis
answers cache misses then (DJANGO_REDIS_IGNORE_EXCEPTIONS).
"""

from __future__ import annotations

from rest_framework import throttling
from rest_framework.settings import api_settings


def current_rate(scope: str | None) -> str | None:
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope or "")
    return None if rate is None else str(rate)


class CurrentRateMixin:
    def get_rate(self) -> str | None:
        return current_rate(self.scope)  # type: ignore[attr-defined]


class AnonymousRateThrottle(CurrentRateMixin, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(CurrentRateMixin, throttling.UserRateThrottle):
    pass


class InvitationEmailThrottle(CurrentRateMixin, throttling.UserRateThrottle):
    """Invitation e-mails (sent or resent) per inviting user, across organizations: each one is
    mail to an address nobody there has verified, so it must not become a way to send spam."""

    scope = "invitation_emails"
