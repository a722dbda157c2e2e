"""Reads of users with rules: who may see whom, blocks, a user with their details."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from accounts.models import Membership, User, UserBlock, UserQuerySet


def users_visible_to(*, viewer: User) -> UserQuerySet:
    """The users `viewer` may know exist: staff see everyone; others see active users who have not
    blocked them (a block hides the blocker: a 404, never a 403), and themselves."""
    from accounts.policies import policy_allows

    if policy_allows(viewer, "accounts.list_users"):
        return User.objects.all()
    blocked_viewer = UserBlock.objects.filter(blocker=OuterRef("pk"), blocked_id=viewer.pk)
    return User.objects.filter(Q(is_active=True) & ~Exists(blocked_viewer) | Q(pk=viewer.pk))


def users_blocked_by(*, user: User) -> QuerySet[UserBlock]:
    """The caller's blocks, newest first, with the blocked users' profiles."""
    return UserBlock.objects.filter(blocker=user).select_related("blocked").order_by("-created_at", "-pk")


def user_with_details(*, user_id: object) -> User:
    """A user with what `me` and the staff record show, in a constant number of queries."""
    memberships = Membership.objects.select_related("organization").order_by("organization__name")
    return (
        User.objects.for_staff_list()
        .prefetch_related(Prefetch("memberships", queryset=memberships))
        .get(pk=user_id)
    )
