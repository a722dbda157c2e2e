"""Who may do what: every object-level rule of the service, written once with `rules`.

The API (`accounts.api.permissions.PolicyPermission`) and the Django admin both ask
`user.has_perm(permission, obj)`, so a rule changed here changes both. A permission not
registered here is denied (`policy_allows`), whatever the caller's role.
Decisions and the full matrix: docs/decisions/0008-roles-and-policies.md.
"""

from __future__ import annotations

from typing import Any

import rules

from accounts.models import Membership, Organization, OrganizationRole, Role, UserBlock


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
    "change_user_email",
    "reset_mfa",
):
    rules.add_perm(f"accounts.{staff_action}", moderates_target)


# Organizations: site admins manage all; otherwise the caller's membership role decides.
# The target is an organization, or a membership or invitation, which stands for its organization.
# Decisions and the matrix: docs/decisions/0010-organizations.md.
def _organization_id(target: Any) -> Any:
    if target is None:
        return None
    if isinstance(target, Organization):
        return target.pk
    return getattr(target, "organization_id", None)


def _membership_role(user: Any, target: Any) -> str | None:
    organization_id = _organization_id(target)
    if organization_id is None or not _active(user):
        return None
    cache: dict[Any, str | None] = user.__dict__.setdefault("_organization_roles", {})
    if organization_id not in cache:
        cache[organization_id] = (
            Membership.objects.filter(organization_id=organization_id, user_id=user.pk)
            .values_list("role", flat=True)
            .first()
        )
    return cache[organization_id]


def organization_roles_forget(user: Any) -> None:
    """Drop the organization roles cached on this user object, after their memberships changed."""
    user.__dict__.pop("_organization_roles", None)


@rules.predicate
def is_organization_member(user: Any, organization: Any) -> bool:
    return _membership_role(user, organization) is not None


@rules.predicate
def is_organization_admin(user: Any, organization: Any) -> bool:
    return _membership_role(user, organization) in {OrganizationRole.OWNER, OrganizationRole.ADMIN}


@rules.predicate
def is_organization_owner(user: Any, organization: Any) -> bool:
    return _membership_role(user, organization) == OrganizationRole.OWNER


@rules.predicate
def is_own_membership(user: Any, membership: Any) -> bool:
    return isinstance(membership, Membership) and _active(user) and membership.user_id == user.pk


@rules.predicate
def target_is_plain_member(user: Any, target: Any) -> bool:
    """The membership (or invitation) carries the `member` role."""
    return target is not None and getattr(target, "role", None) == OrganizationRole.MEMBER


@rules.predicate
def target_grants_owner(user: Any, target: Any) -> bool:
    """The invitation (or membership) carries the `owner` role."""
    return target is not None and getattr(target, "role", None) == OrganizationRole.OWNER


rules.add_perm("accounts.list_organizations", is_signed_in)
rules.add_perm("accounts.add_organization", is_signed_in)
rules.add_perm("accounts.accept_organization_invitation", is_signed_in)
rules.add_perm("accounts.view_organization", staff | is_organization_member)
rules.add_perm("accounts.change_organization", is_admin | is_organization_admin)
rules.add_perm("accounts.delete_organization", is_admin | is_organization_owner)
rules.add_perm("accounts.manage_organization_members", is_admin | is_organization_admin)
# Owners alone make owners (a role change to `owner`, an invitation as `owner`).
rules.add_perm("accounts.grant_organization_owner", is_admin | is_organization_owner)
# Adding a member without an invitation: site admins, in the Django admin.
rules.add_perm("accounts.add_membership", is_admin)
# Organization admins change plain members, and step down themselves; never owners or other admins.
rules.add_perm(
    "accounts.change_membership",
    is_admin | is_organization_owner | (is_organization_admin & (target_is_plain_member | is_own_membership)),
)
# ... and anyone may leave.
rules.add_perm(
    "accounts.delete_membership",
    is_admin | is_organization_owner | (is_organization_admin & target_is_plain_member) | is_own_membership,
)
# Revoke or resend an invitation: organization admins, except invitations as `owner`.
rules.add_perm(
    "accounts.manage_organization_invitation",
    is_admin | is_organization_owner | (is_organization_admin & ~target_grants_owner),
)

# The audit trail: staff read it in the admin (the API has its own staff check).
rules.add_perm("audit", staff)
rules.add_perm("audit.view_auditevent", staff)


def policy_allows(user: Any, permission: str, obj: Any = None) -> bool:
    """The one question every caller asks. Unknown permissions are denied, even to superusers."""
    return rules.perm_exists(permission) and bool(user.has_perm(permission, obj))


# --- Django admin: related records ---
# The user change page shows these records inline whenever the user may be viewed; these rules only
# open the records' own admin pages (allauth's), linked from the inlines. Staff may read a user's
# social accounts there. E-mail addresses stay with Django's permissions (admins): allauth's page
# offers "mark verified" to anyone who can open it. Second factors and browser sessions have no
# rule: their pages show secrets (TOTP seeds, session keys).
rules.add_perm("socialaccount.view_socialaccount", staff)


# --- OAuth clients ---
# Clients, initial access tokens, grants and tokens in the Django admin, and registration at
# /o/register/ with a staff session (docs/decisions/0016-oauth-client-registration-and-admin.md).
# Staff see them all; only admins change clients (a client is a credential to every user's data),
# rotate their secrets, issue or revoke initial access tokens and revoke grants and tokens.
rules.add_perm("oauth_provider", staff)  # the app in the Django admin
rules.add_perm("oauth_provider.view_application", staff)
rules.add_perm("oauth_provider.add_application", is_admin)
rules.add_perm("oauth_provider.change_application", is_admin)
rules.add_perm("oauth_provider.delete_application", is_admin)
rules.add_perm("oauth_provider.rotate_client_secret", is_admin)
rules.add_perm("oauth_provider.register_client", is_admin)
rules.add_perm("oauth_provider.view_initialaccesstoken", staff)
rules.add_perm("oauth_provider.add_initialaccesstoken", is_admin)
rules.add_perm("oauth_provider.revoke_initialaccesstoken", is_admin)
rules.add_perm("oauth2_provider", staff)  # the toolkit's grants and tokens in the Django admin
for token_model in ("accesstoken", "refreshtoken", "idtoken", "grant", "devicegrant"):
    rules.add_perm(f"oauth2_provider.view_{token_model}", staff)
    rules.add_perm(f"oauth2_provider.revoke_{token_model}", is_admin)
# --- end of OAuth clients ---
