"""Who may do what: every object-level rule of the service, written once with `rules`.

The API (`accounts.api.permissions.PolicyPermission`) and the Django admin both ask
`user.has_perm(permission, obj)`, so a rule changed here changes both. A permission not
registered here is denied (`policy_allows`), whatever the caller's role.
Decisions and the full matrix: docs/decisions/0008-roles-and-policies.md.
"""

from __future__ import annotations

from typing import Any

import rules

from accounts.models import Membership, OrganizationRole, Role, UserBlock


def _active(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


@rules.predicate
def is_signed_in(user: Any) -> bool:
    return _active(user)


@rules.predicate
def is_admin(user: Any) -> bool:
    return _active(user) and (user.is_superuser or user.has_role(Role.ADMIN))


@rules.predicate
def is_moderator(user: Any) -> bool:
    return _active(user) and user.has_role(Role.MODERATOR)


@rules.predicate
def is_self(user: Any, target: Any) -> bool:
    return target is not None and _active(user) and user.pk == target.pk


@rules.predicate
def target_is_plain_user(user: Any, target: Any) -> bool:
    """The target holds no staff role. With no target (a model-level check), any user could be one."""
    if target is None:
        return True
    return not (target.is_superuser or target.has_role(Role.ADMIN) or target.has_role(Role.MODERATOR))


@rules.predicate
def is_blocked_by_target(user: Any, target: Any) -> bool:
    return target is not None and UserBlock.objects.filter(blocker_id=target.pk, blocked_id=user.pk).exists()


staff = is_admin | is_moderator
moderates_target = is_admin | (is_moderator & target_is_plain_user)

# Users.
rules.add_perm("accounts", staff)  # the app in the Django admin
rules.add_perm("accounts.list_users", staff)
rules.add_perm("accounts.view_user", staff | is_self)
rules.add_perm("accounts.view_user_profile", is_signed_in & (staff | is_self | ~is_blocked_by_target))
rules.add_perm("accounts.change_user", moderates_target | is_self)
rules.add_perm("accounts.block_user", is_signed_in)  # yourself: the service refuses, `block_self`
rules.add_perm("accounts.add_user", is_admin)
rules.add_perm("accounts.delete_user", is_admin)
rules.add_perm("accounts.assign_roles", is_admin)
for staff_action in (
    "deactivate_user",
    "reactivate_user",
    "lock_down_user",
    "sign_out_user",
    "send_password_reset",
    "resend_verification",
    "verify_email",
):
    rules.add_perm(f"accounts.{staff_action}", moderates_target)


# Organizations: site admins manage all; otherwise the caller's membership role decides.
def _membership_role(user: Any, organization: Any) -> str | None:
    if organization is None or not _active(user):
        return None
    cache: dict[Any, str | None] = user.__dict__.setdefault("_organization_roles", {})
    if organization.pk not in cache:
        cache[organization.pk] = (
            Membership.objects.filter(organization_id=organization.pk, user_id=user.pk)
            .values_list("role", flat=True)
            .first()
        )
    return cache[organization.pk]


@rules.predicate
def is_organization_member(user: Any, organization: Any) -> bool:
    return _membership_role(user, organization) is not None


@rules.predicate
def is_organization_admin(user: Any, organization: Any) -> bool:
    return _membership_role(user, organization) in {OrganizationRole.OWNER, OrganizationRole.ADMIN}


@rules.predicate
def is_organization_owner(user: Any, organization: Any) -> bool:
    return _membership_role(user, organization) == OrganizationRole.OWNER


rules.add_perm("accounts.add_organization", is_signed_in)
rules.add_perm("accounts.view_organization", staff | is_organization_member)
rules.add_perm("accounts.change_organization", is_admin | is_organization_admin)
rules.add_perm("accounts.delete_organization", is_admin | is_organization_owner)
rules.add_perm("accounts.manage_organization_members", is_admin | is_organization_admin)

# The audit trail: staff read it in the admin (the API has its own staff check).
rules.add_perm("audit", staff)
rules.add_perm("audit.view_auditevent", staff)


def policy_allows(user: Any, permission: str, obj: Any = None) -> bool:
    """The one question every caller asks. Unknown permissions are denied, even to superusers."""
    return rules.perm_exists(permission) and bool(user.has_perm(permission, obj))
