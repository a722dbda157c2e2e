"""The accounts app's models (docs/decisions/0001-user-model.md)."""

from accounts.models.exports import DataExport
from accounts.models.mfa import EmailCode
from accounts.models.organizations import Invitation, Membership, Organization, OrganizationRole
from accounts.models.outbox import OutboxJob
from accounts.models.sessions import AccountLockout, DeviceSession, DeviceSessionQuerySet
from accounts.models.users import (
    DESCRIPTION_MAX_LENGTH,
    REASON_MAX_LENGTH,
    STAFF_ROLES,
    Role,
    User,
    UserBlock,
    UserManager,
    UserQuerySet,
)

__all__ = [
    "DESCRIPTION_MAX_LENGTH",
    "REASON_MAX_LENGTH",
    "STAFF_ROLES",
    "AccountLockout",
    "DataExport",
    "DeviceSession",
    "DeviceSessionQuerySet",
    "EmailCode",
    "Invitation",
    "Membership",
    "Organization",
    "OrganizationRole",
    "OutboxJob",
    "Role",
    "User",
    "UserBlock",
    "UserManager",
    "UserQuerySet",
]
