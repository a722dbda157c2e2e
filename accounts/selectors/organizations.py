"""Reads of organizations, memberships and invitations (docs/decisions/0010-organizations.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Count, Exists, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Invitation, Membership, Organization
from accounts.policies import staff


class InvitationState(models.TextChoices):
    PENDING = "pending", "Pending"
    EXPIRED = "expired", "Expired"
    ACCEPTED = "accepted", "Accepted"
    REVOKED = "revoked", "Revoked"


def invitation_state(invitation: Invitation, *, now: datetime | None = None) -> InvitationState:
    """Where an invitation stands; an expired one can still be resent or revoked."""
    if invitation.accepted_at is not None:
        return InvitationState.ACCEPTED
    if invitation.revoked_at is not None:
        return InvitationState.REVOKED
    if invitation.expires_at <= (now or timezone.now()):
        return InvitationState.EXPIRED
    return InvitationState.PENDING


def organizations_with_member_count(queryset: QuerySet[Organization]) -> QuerySet[Organization]:
    """Annotate `member_count`, computed for the rows of the page only (a correlated subquery)."""
    counts = (
        Membership.objects.filter(organization=OuterRef("pk"))
        .order_by()
        .values("organization")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return queryset.annotate(member_count=Coalesce(Subquery(counts), Value(0)))


def organization_list_visible(*, user: Any) -> QuerySet[Organization]:
    """The organizations the user may know exist: their own; every one for site staff."""
    organizations = Organization.objects.all()
    if staff.test(user):  # site admins and moderators
        return organizations
    return organizations.filter(
        Exists(Membership.objects.filter(organization=OuterRef("pk"), user_id=user.pk))
    )


def organization_list_for(*, user: Any) -> QuerySet[Organization]:
    """The visible organizations with `member_count` and the user's own `role` (null if none)."""
    own_role = Membership.objects.filter(organization=OuterRef("pk"), user_id=user.pk).values("role")[:1]
    return organizations_with_member_count(
        organization_list_visible(user=user).annotate(role=Subquery(own_role))
    ).order_by("name", "pk")


def organization_memberships_of(*, user: Any) -> QuerySet[Membership]:
    """The user's memberships with their organizations, by organization name (for `me`)."""
    return (
        Membership.objects.filter(user_id=user.pk)
        .select_related("organization")
        .order_by("organization__name", "organization_id")
    )


def membership_list(*, organization: Organization) -> QuerySet[Membership]:
    """An organization's members with their users, longest-standing first."""
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .order_by("created_at", "pk")
    )


def invitation_list_open(*, organization: Organization) -> QuerySet[Invitation]:
    """Invitations neither accepted nor revoked: pending, or expired and waiting to be resent."""
    return (
        Invitation.objects.filter(
            organization=organization, accepted_at__isnull=True, revoked_at__isnull=True
        )
        .select_related("invited_by")
        .order_by("-created_at", "pk")
    )
