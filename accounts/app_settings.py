"""Settings of the accounts app that allauth does not own, read when used (never at import)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

DEFAULT_MFA_REQUIRED_ROLES = ("admin", "moderator")


def mfa_required_roles() -> frozenset[str]:
    """Roles whose users must have a second factor before anything else works."""
    return frozenset(getattr(settings, "ACCOUNTS_MFA_REQUIRED_ROLES", DEFAULT_MFA_REQUIRED_ROLES))


def mfa_required_for_staff() -> bool:
    """Whether the `is_staff` flag alone also makes a second factor mandatory."""
    return bool(getattr(settings, "ACCOUNTS_MFA_REQUIRED_FOR_STAFF", True))


def mfa_email_codes_enabled() -> bool:
    """Whether a code e-mailed to a verified address may stand in for the second factor."""
    return bool(getattr(settings, "ACCOUNTS_MFA_EMAIL_CODES", True))


def mfa_email_code_lifetime() -> timedelta:
    return timedelta(minutes=int(getattr(settings, "ACCOUNTS_MFA_EMAIL_CODE_MINUTES", 10)))


def mfa_email_codes_per_window() -> int:
    """E-mail codes a user may be sent in `mfa_email_code_window()`."""
    return int(getattr(settings, "ACCOUNTS_MFA_EMAIL_CODES_PER_WINDOW", 3))


def mfa_email_code_window() -> timedelta:
    return timedelta(minutes=int(getattr(settings, "ACCOUNTS_MFA_EMAIL_CODE_WINDOW_MINUTES", 15)))


def step_up_max_age() -> int:
    """Seconds a re-authentication counts as recent for sensitive actions (allauth's setting)."""
    return int(getattr(settings, "ACCOUNT_REAUTHENTICATION_TIMEOUT", 600))


def jobs_lease() -> timedelta:
    """How long a worker holds a job it claimed (accounts.services.outbox): past it, the worker is
    taken to be gone and the job runs again. Longer than the hard time limit, after which Celery
    has killed any attempt still running (docs/decisions/0019-outbox.md)."""
    seconds = getattr(settings, "ACCOUNTS_JOBS_LEASE_SECONDS", None)
    if seconds is None:
        seconds = int(getattr(settings, "CELERY_TASK_TIME_LIMIT", 300)) + 60
    return timedelta(seconds=int(seconds))


def jobs_republish_after() -> timedelta:
    """How long a published job may wait for a worker before its message is taken to be lost (a
    Redis that restarted empty) and the relay publishes it again."""
    return timedelta(seconds=int(getattr(settings, "ACCOUNTS_JOBS_REPUBLISH_SECONDS", 300)))


def jobs_publish_pause_seconds() -> float:
    """After a failed publish, how long a process leaves its next jobs to the relay instead of
    making each request try (and maybe wait for) a broker that has just failed."""
    return float(getattr(settings, "ACCOUNTS_JOBS_PUBLISH_PAUSE_SECONDS", 10))
