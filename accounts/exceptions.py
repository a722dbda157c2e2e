"""Refusals the accounts services raise, beside Django's own (`ValidationError`, `PermissionDenied`,
`Http404`).

Each carries a machine-readable `code` and a `detail` for people, nothing of HTTP: the API error
handler (config/api/errors.py) gives each class its status and headers in one table, and the
browser pages and allauth's headless views answer them their own way.
"""

from __future__ import annotations

from typing import ClassVar

from django.http import Http404


class AccountsError(Exception):
    """A request the accounts services refuse for a reason of their own, not an input error."""

    default_code: ClassVar[str] = "error"
    default_detail: ClassVar[str] = "The request was refused."

    def __init__(self, detail: str | None = None, *, code: str | None = None) -> None:
        self.detail = detail if detail is not None else self.default_detail
        self.code = code if code is not None else self.default_code
        super().__init__(self.detail)


class RateLimited(AccountsError):
    """Asked too often: allowed again after `retry_after` seconds (a whole number, at least 1)."""

    default_code = "throttled"
    default_detail = "Request was throttled."

    def __init__(self, detail: str | None = None, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_after = retry_after


# --- signing in and sensitive actions ---------------------------------------------------------


class RefreshTokenRejected(AccountsError):
    """A refresh token that is malformed, expired, revoked, reused or raced: the caller is not
    authenticated by it."""

    default_code = "token_not_valid"
    default_detail = "The refresh token is invalid or expired."


class DeviceNotFound(Http404):
    """The caller has no signed-in device with that ID (or may not know it exists)."""


class MFAEnrollmentRequired(AccountsError):
    """The caller's role requires a second factor and they have none yet."""

    default_code = "mfa_enrollment_required"
    default_detail = (
        "Your account must have a second factor before you can do this: set one up "
        "(an authenticator app or a security key), then try again."
    )


class ReauthenticationRequired(AccountsError):
    """A sensitive action without a re-authentication in the last `max_age` seconds (the step-up
    of RFC 9470)."""

    default_code = "reauthentication_required"
    default_detail = (
        "This action needs you to confirm who you are again: re-authenticate "
        "(POST /_allauth/{client}/v1/auth/reauthenticate with your password, or "
        "…/auth/2fa/reauthenticate with a code), then retry within the time allowed."
    )

    def __init__(self, *, max_age: int) -> None:
        super().__init__()
        self.max_age = max_age


# --- data exports (docs/decisions/0009-account-deletion-and-export.md) -------------------------


class DataExportNotFound(AccountsError):
    """No export of the caller's with that ID."""

    default_code = "not_found"
    default_detail = "No such export."


class DataExportInProgress(AccountsError):
    default_code = "export_in_progress"
    default_detail = "An export of your data is already being prepared."


class DataExportLinkInvalid(AccountsError):
    default_code = "export_link_invalid"
    default_detail = "This download link is not valid."


class DataExportLinkExpired(AccountsError):
    default_code = "export_link_expired"
    default_detail = "This download link has expired. Request a new export."


# --- invitations to an organization (docs/decisions/0010-organizations.md) ---------------------


class InvitationRefused(AccountsError):
    """A well-formed invitation token that cannot be accepted (now, or by this user)."""


class InvitationClosed(InvitationRefused):
    """No one can accept the invitation any more."""


class InvitationExpired(InvitationClosed):
    default_code = "invitation_expired"
    default_detail = "This invitation has expired. Ask the organization for a new one."


class InvitationRevoked(InvitationClosed):
    default_code = "invitation_revoked"
    default_detail = "This invitation was withdrawn."


class InvitationUsed(InvitationClosed):
    default_code = "invitation_used"
    default_detail = "This invitation was already accepted."


class InvitationEmailMismatch(InvitationRefused):
    default_code = "invitation_email_mismatch"
    default_detail = (
        "This invitation was sent to an address that is not one of your account's. Sign in with the "
        "account that has that address, or add it to this account and verify it."
    )


class InvitationEmailUnverified(InvitationRefused):
    default_code = "invitation_email_unverified"
    default_detail = "Verify the e-mail address this invitation was sent to, then accept it again."
