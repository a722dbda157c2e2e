"""Organizations, their members and e-mail invitations (docs/decisions/0010-organizations.md).

Every function takes the `actor` and asks the policies of accounts/policies.py itself, so the API,
the Django admin and any later caller apply the same role rules. Each locks the organization's row
first: changes to one organization's members and invitations run one after another, which is what
keeps the last-owner rule and the one-pending-invitation rule true under concurrency.

Invitation links carry a random token; only its SHA-256 is stored, so the database alone cannot
accept an invitation, and the token is never logged, audited or returned by the API.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import RegexValidator
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from accounts.emails import email_queue
from accounts.exceptions import (
    InvitationEmailMismatch,
    InvitationEmailUnverified,
    InvitationExpired,
    InvitationRevoked,
    InvitationUsed,
)
from accounts.models import Invitation, Membership, Organization, OrganizationRole, User
from accounts.policies import organization_roles_forget, policy_allows
from accounts.selectors.organizations import InvitationState, invitation_state
from accounts.validators import email_address_canonical
from audit.services import audit_record

INVITATION_TEMPLATE_PREFIX = "account/email/organization_invitation"
# 32 random bytes: far beyond guessing, so a plain (unsalted, fast) SHA-256 is the right digest.
INVITATION_TOKEN_BYTES = 32
TOKEN_MAX_LENGTH = 128
ORGANIZATION_FIELDS = ("name", "slug", "description")

slug_validator = RegexValidator(
    r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z",
    "Use lowercase letters, digits and single hyphens between them.",
    code="invalid",
)


def _invitation_invalid() -> ValidationError:
    return ValidationError(
        {"token": ValidationError("This invitation link is not valid.", code="invitation_invalid")}
    )


# --- helpers ---------------------------------------------------------------------------------


def _require(actor: User, permission: str, target: Any) -> None:
    if not policy_allows(actor, permission, target):
        raise PermissionDenied("You do not have permission to perform this action.")


def _organization_lock(organization_id: Any) -> Organization:
    organization = Organization.objects.select_for_update().filter(pk=organization_id).first()
    if organization is None:
        raise Http404("No such organization.")
    return organization


def _membership_lock(membership: Membership) -> tuple[Organization, Membership]:
    organization = _organization_lock(membership.organization_id)
    locked = Membership.objects.select_for_update().filter(pk=membership.pk).first()
    if locked is None:
        raise Http404("No such member.")
    locked.organization = organization
    return organization, locked


def _invitation_lock(invitation: Invitation) -> tuple[Organization, Invitation]:
    organization = _organization_lock(invitation.organization_id)
    locked = Invitation.objects.select_for_update().filter(pk=invitation.pk).first()
    if locked is None:
        raise Http404("No such invitation.")
    locked.organization = organization
    return organization, locked


def _other_owner_exists(membership: Membership) -> bool:
    return (
        Membership.objects.filter(organization_id=membership.organization_id, role=OrganizationRole.OWNER)
        .exclude(pk=membership.pk)
        .exists()
    )


def _forget_roles_if_self(actor: User, user_id: Any) -> None:
    """The actor's cached organization roles are stale once their own membership changed."""
    if actor.pk == user_id:
        organization_roles_forget(actor)


def _organization_clean(organization: Organization) -> None:
    errors: dict[str, list[ValidationError]] = {}
    try:
        organization.full_clean()
    except ValidationError as error:
        errors = error.update_error_dict(errors)
    if "slug" not in errors:
        try:
            slug_validator(organization.slug)
        except ValidationError as error:
            errors["slug"] = error.error_list
    if errors:
        raise ValidationError(errors)


def _organization_save(organization: Organization, **kwargs: Any) -> None:
    try:
        with transaction.atomic():
            organization.save(**kwargs)
    except IntegrityError:  # another organization took the slug after full_clean looked
        raise ValidationError(
            {"slug": ValidationError("An organization with this slug already exists.", code="unique")}
        ) from None


# --- organizations ---------------------------------------------------------------------------


@transaction.atomic
def organization_create(
    *, actor: User, name: str, slug: str, description: str = "", owner: User | None = None
) -> Organization:
    """Create an organization whose first owner is `owner`, the actor unless a site admin names another."""
    _require(actor, "accounts.add_organization", None)
    owner = owner or actor
    if owner.pk != actor.pk:
        _require(actor, "accounts.add_membership", None)
    organization = Organization(name=name.strip(), slug=slug.strip().lower(), description=description.strip())
    _organization_clean(organization)
    _organization_save(organization)
    membership = Membership(organization=organization, user=owner, role=OrganizationRole.OWNER)
    membership.full_clean()
    membership.save()
    audit_record(
        action="accounts.organization.created",
        actor=actor,
        target=organization,
        changes={field: [None, getattr(organization, field)] for field in ORGANIZATION_FIELDS},
    )
    audit_record(
        action="accounts.membership.created",
        actor=actor,
        target=organization,
        changes={"role": [None, OrganizationRole.OWNER.value]},
        metadata={"user": str(owner.pk)},
    )
    _forget_roles_if_self(actor, owner.pk)
    return organization


@transaction.atomic
def organization_update(
    *,
    organization: Organization,
    actor: User,
    name: str | None = None,
    slug: str | None = None,
    description: str | None = None,
) -> Organization:
    """Change an organization's name, slug or description; fields left None stay as they are."""
    organization = _organization_lock(organization.pk)
    _require(actor, "accounts.change_organization", organization)
    wanted = {
        "name": None if name is None else name.strip(),
        "slug": None if slug is None else slug.strip().lower(),
        "description": None if description is None else description.strip(),
    }
    changes = {
        field: [getattr(organization, field), value]
        for field, value in wanted.items()
        if value is not None and value != getattr(organization, field)
    }
    if not changes:
        return organization
    for field, (_, value) in changes.items():
        setattr(organization, field, value)
    _organization_clean(organization)
    _organization_save(organization, update_fields=[*changes, "updated_at"])
    audit_record(action="accounts.organization.updated", actor=actor, target=organization, changes=changes)
    return organization


@transaction.atomic
def organization_delete(*, organization: Organization, actor: User) -> None:
    """Delete an organization with its memberships and invitations (their links stop working)."""
    organization = _organization_lock(organization.pk)
    _require(actor, "accounts.delete_organization", organization)
    audit_record(
        action="accounts.organization.deleted",
        actor=actor,
        target=organization,
        changes={field: [getattr(organization, field), None] for field in ORGANIZATION_FIELDS},
        metadata={
            "members": Membership.objects.filter(organization=organization).count(),
            "open_invitations": Invitation.objects.filter(
                organization=organization, accepted_at__isnull=True, revoked_at__isnull=True
            ).count(),
        },
    )
    organization.delete()
    organization_roles_forget(actor)


# --- memberships -----------------------------------------------------------------------------


@transaction.atomic
def membership_create(*, organization: Organization, user: User, role: str, actor: User) -> Membership:
    """Add a user to an organization without an invitation (site admins, in the Django admin)."""
    organization = _organization_lock(organization.pk)
    _require(actor, "accounts.add_membership", organization)
    membership = Membership(organization=organization, user=user, role=role)
    if Membership.objects.filter(organization=organization, user=user).exists():
        raise ValidationError(
            {"user": ValidationError("This user is already a member.", code="already_member")}
        )
    membership.full_clean()
    if role == OrganizationRole.OWNER:
        _require(actor, "accounts.grant_organization_owner", organization)
    membership.save()
    audit_record(
        action="accounts.membership.created",
        actor=actor,
        target=organization,
        changes={"role": [None, role]},
        metadata={"user": str(user.pk)},
    )
    _forget_roles_if_self(actor, user.pk)
    return membership


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str, actor: User) -> Membership:
    """Change a member's role. Only owners grant `owner`; the last owner cannot be demoted."""
    organization, membership = _membership_lock(membership)
    _require(actor, "accounts.change_membership", membership)
    previous = membership.role
    membership.role = role
    membership.full_clean()
    if role == previous:
        return membership
    if role == OrganizationRole.OWNER:
        _require(actor, "accounts.grant_organization_owner", organization)
    if previous == OrganizationRole.OWNER and not _other_owner_exists(membership):
        raise ValidationError(
            {
                "role": ValidationError(
                    "The organization's last owner cannot be demoted: make another member an owner first.",
                    code="last_owner",
                )
            }
        )
    membership.save(update_fields=["role"])
    audit_record(
        action="accounts.membership.role_changed",
        actor=actor,
        target=organization,
        changes={"role": [previous, role]},
        metadata={"user": str(membership.user_id)},
    )
    _forget_roles_if_self(actor, membership.user_id)
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: User) -> None:
    """Remove a member, or let members leave. The last owner can neither leave nor be removed."""
    organization, membership = _membership_lock(membership)
    _require(actor, "accounts.delete_membership", membership)
    if membership.role == OrganizationRole.OWNER and not _other_owner_exists(membership):
        raise ValidationError(
            "The organization's last owner cannot leave: make another member an owner first, "
            "or delete the organization.",
            code="last_owner",
        )
    leaving = membership.user_id == actor.pk
    membership.delete()
    audit_record(
        action="accounts.membership.left" if leaving else "accounts.membership.removed",
        actor=actor,
        target=organization,
        changes={"role": [membership.role, None]},
        metadata={"user": str(membership.user_id)},
    )
    _forget_roles_if_self(actor, membership.user_id)


# --- invitations -----------------------------------------------------------------------------


def invitation_lifetime() -> timedelta:
    return timedelta(days=settings.ORGANIZATION_INVITATION_DAYS)


def invitation_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_accept_url(*, token: str) -> str:
    return f"{settings.SITE_URL}{reverse('organization_invitation_accept')}?{urlencode({'token': token})}"


def _invitation_token_new(invitation: Invitation) -> str:
    """Give the invitation a fresh token and expiry; returns the token, which is never stored."""
    token = secrets.token_urlsafe(INVITATION_TOKEN_BYTES)
    invitation.token_hash = invitation_token_hash(token)
    invitation.expires_at = timezone.now() + invitation_lifetime()
    return token


def _invitation_email(*, invitation: Invitation, token: str, sender: User) -> None:
    email_queue(
        template_prefix=INVITATION_TEMPLATE_PREFIX,
        to=invitation.email,
        context={
            "organization": invitation.organization,
            "inviter": sender,
            "role": invitation.get_role_display(),
            "accept_url": invitation_accept_url(token=token),
            "expires_at": invitation.expires_at,
        },
    )


def _invitation_audit(action: str, *, invitation: Invitation, actor: User | None, **extra: Any) -> None:
    audit_record(
        action=action,
        actor=actor,
        target=invitation.organization,
        metadata={
            "invitation": str(invitation.pk),
            "email": invitation.email,
            "role": invitation.role,
            **extra.pop("metadata", {}),
        },
        **extra,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _invitation_require_open(invitation: Invitation) -> None:
    """Revoking or resending needs an invitation that is neither accepted nor revoked."""
    state = invitation_state(invitation)
    if state == InvitationState.ACCEPTED:
        raise ValidationError("This invitation was already accepted.", code="invitation_used")
    if state == InvitationState.REVOKED:
        raise ValidationError("This invitation was already revoked.", code="invitation_revoked")


def _is_member_address(organization: Organization, email: str) -> bool:
    """A member has verified this address. An unverified copy proves nothing: anyone may add any
    address to their own account, and would otherwise block every invitation to it."""
    addresses = EmailAddress.objects.filter(user_id=OuterRef("user_id"), email__iexact=email, verified=True)
    return Membership.objects.filter(organization=organization).filter(Exists(addresses)).exists()


@transaction.atomic
def invitation_create(
    *, organization: Organization, email: str, actor: User, role: str = OrganizationRole.MEMBER
) -> Invitation:
    """Invite an address to join with `role`, and e-mail it a link with a fresh token.

    An expired invitation of the same address is replaced (revoked); a pending one is refused.
    """
    organization = _organization_lock(organization.pk)
    _require(actor, "accounts.manage_organization_members", organization)
    try:
        email = email_address_canonical(email).lower()
    except ValidationError as error:
        raise ValidationError({"email": error}) from None
    invitation = Invitation(organization=organization, email=email, role=role, invited_by=actor)
    token = _invitation_token_new(invitation)
    invitation.full_clean(validate_constraints=False)
    if role == OrganizationRole.OWNER:
        _require(actor, "accounts.grant_organization_owner", organization)
    if _is_member_address(organization, invitation.email):
        raise ValidationError(
            {"email": ValidationError("This address belongs to a member already.", code="already_member")}
        )
    previous = (
        Invitation.objects.select_for_update()
        .filter(
            organization=organization,
            email__iexact=invitation.email,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
        )
        .first()
    )
    if previous is not None:
        if invitation_state(previous) == InvitationState.PENDING:
            raise ValidationError(
                {
                    "email": ValidationError(
                        "This address already has a pending invitation: resend it instead.",
                        code="invitation_pending",
                    )
                }
            )
        previous.revoked_at = timezone.now()
        previous.save(update_fields=["revoked_at"])
        _invitation_audit(
            "accounts.invitation.revoked",
            invitation=previous,
            actor=actor,
            changes={"revoked_at": [None, _iso(previous.revoked_at)]},
            metadata={"reason": "expired_and_replaced"},
        )
    invitation.full_clean()
    invitation.save()
    _invitation_audit(
        "accounts.invitation.created",
        invitation=invitation,
        actor=actor,
        changes={"role": [None, invitation.role], "expires_at": [None, _iso(invitation.expires_at)]},
    )
    _invitation_email(invitation=invitation, token=token, sender=actor)
    return invitation


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor: User) -> Invitation:
    """Withdraw an invitation: its link stops working."""
    _, invitation = _invitation_lock(invitation)
    _require(actor, "accounts.manage_organization_invitation", invitation)
    _invitation_require_open(invitation)
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    _invitation_audit(
        "accounts.invitation.revoked",
        invitation=invitation,
        actor=actor,
        changes={"revoked_at": [None, _iso(invitation.revoked_at)]},
    )
    return invitation


@transaction.atomic
def invitation_resend(*, invitation: Invitation, actor: User) -> Invitation:
    """E-mail a new link with a new token and a full lifetime; the previous link stops working."""
    _, invitation = _invitation_lock(invitation)
    _require(actor, "accounts.manage_organization_invitation", invitation)
    _invitation_require_open(invitation)
    previous_expiry = invitation.expires_at
    token = _invitation_token_new(invitation)
    invitation.full_clean()
    invitation.save(update_fields=["token_hash", "expires_at"])
    _invitation_audit(
        "accounts.invitation.resent",
        invitation=invitation,
        actor=actor,
        changes={"expires_at": [_iso(previous_expiry), _iso(invitation.expires_at)]},
    )
    _invitation_email(invitation=invitation, token=token, sender=actor)
    return invitation


def _invitation_by_token(token: str) -> Invitation:
    if not token or len(token) > TOKEN_MAX_LENGTH:
        raise _invitation_invalid()
    invitation = (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(token_hash=invitation_token_hash(token))
        .first()
    )
    if invitation is None:
        raise _invitation_invalid()
    return invitation


def _invitation_require_acceptable(invitation: Invitation) -> None:
    state = invitation_state(invitation)
    if state == InvitationState.ACCEPTED:
        raise InvitationUsed()
    if state == InvitationState.REVOKED:
        raise InvitationRevoked()
    if state == InvitationState.EXPIRED:
        raise InvitationExpired()


def invitation_for_token(*, token: str) -> Invitation:
    """The pending invitation a link's token names (with its organization), to show before accepting.

    Raises `ValidationError` (`invitation_invalid`: unknown, tampered or replaced by a resend) or an
    `InvitationRefused` (`invitation_used`, `invitation_revoked`, `invitation_expired`).
    """
    invitation = _invitation_by_token(token)
    _invitation_require_acceptable(invitation)
    return invitation


def invitation_addressed_to(*, invitation: Invitation, user: User) -> bool:
    """The user has verified the address the invitation was sent to."""
    return EmailAddress.objects.filter(user=user, email__iexact=invitation.email, verified=True).exists()


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    """Join the organization as the invitation says, if `user` verified the invited address.

    Accepting again an invitation the same user accepted returns their membership (a retried or
    double-submitted request); anyone else gets `invitation_used`.
    """
    found = _invitation_by_token(token)
    try:
        organization = _organization_lock(found.organization_id)
    except Http404:
        raise _invitation_invalid() from None
    invitation = (
        Invitation.objects.select_for_update().filter(pk=found.pk, token_hash=found.token_hash).first()
    )
    if invitation is None:  # resent (a new token) or deleted since it was read
        raise _invitation_invalid()
    invitation.organization = organization
    membership = Membership.objects.filter(organization=organization, user=user).first()
    if invitation.accepted_at is not None and invitation.accepted_by_id == user.pk and membership is not None:
        membership.organization = organization
        return membership
    _invitation_require_acceptable(invitation)
    _require(user, "accounts.accept_organization_invitation", invitation)
    if not invitation_addressed_to(invitation=invitation, user=user):
        if EmailAddress.objects.filter(user=user, email__iexact=invitation.email).exists():
            raise InvitationEmailUnverified()
        raise InvitationEmailMismatch()
    already_member = membership is not None
    if membership is None:
        membership = Membership(organization=organization, user=user, role=invitation.role)
        membership.full_clean()
        membership.save()
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    _invitation_audit(
        "accounts.invitation.accepted",
        invitation=invitation,
        actor=user,
        changes={"accepted_at": [None, _iso(invitation.accepted_at)]},
        metadata={"already_member": already_member},
    )
    if not already_member:
        audit_record(
            action="accounts.membership.created",
            actor=user,
            target=organization,
            changes={"role": [None, invitation.role]},
            metadata={"user": str(user.pk), "invitation": str(invitation.pk)},
        )
    organization_roles_forget(user)
    return membership
