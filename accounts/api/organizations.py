"""Organizations, their members and invitations over the API (docs/decisions/0010-organizations.md).

- `/api/v1/organizations/`: the caller's organizations (every one for site staff); create, read,
  update, delete. An organization the caller may not know exists is a 404, never a 403.
- `/api/v1/organizations/{organization_id}/members/`: members and their roles; `members/me/` is the
  caller's own membership (`DELETE` leaves).
- `/api/v1/organizations/{organization_id}/invitations/`: open invitations; invite, revoke, resend.
- `/api/v1/organizations/invitations/accept/`: join with the token of an e-mailed invitation.

Views only parse and shape; the rules are in accounts/policies.py and accounts/services/organizations.py.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from accounts.api.permissions import PolicyPermission
from accounts.api.schema import error_response
from accounts.models import Invitation, Membership, Organization, OrganizationRole, User
from accounts.policies import policy_allows
from accounts.selectors.organizations import (
    InvitationState,
    invitation_list_open,
    invitation_state,
    membership_list,
    organization_list_for,
    organization_list_visible,
)
from accounts.services.organizations import (
    TOKEN_MAX_LENGTH,
    invitation_accept,
    invitation_create,
    invitation_resend,
    invitation_revoke,
    membership_remove,
    membership_set_role,
    organization_create,
    organization_delete,
    organization_update,
)
from config.api.throttling import InvitationEmailThrottle

UUID_PATTERN = "[0-9a-f-]{36}"
ME = "me"

# --- serializers -------------------------------------------------------------------------------


class OrganizationSerializer(serializers.ModelSerializer[Organization]):
    role = serializers.ChoiceField(
        choices=OrganizationRole.choices,
        allow_null=True,
        read_only=True,
        help_text="The caller's role in the organization; null for site staff who are not members.",
    )
    member_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Organization
        fields = ("id", "name", "slug", "description", "role", "member_count", "created_at", "updated_at")
        read_only_fields = fields


class OrganizationCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100)
    slug = serializers.CharField(
        max_length=50, help_text="Unique; lowercase letters, digits and single hyphens (`acme-labs`)."
    )
    description = serializers.CharField(max_length=256, allow_blank=True, required=False, default="")


class OrganizationUpdateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100, required=False)
    slug = serializers.CharField(max_length=50, required=False)
    description = serializers.CharField(max_length=256, allow_blank=True, required=False)


class OrganizationSummarySerializer(serializers.ModelSerializer[Organization]):
    class Meta:
        model = Organization
        fields = ("id", "name", "slug")
        read_only_fields = fields


class OrganizationMemberUserSerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = ("id", "username", "display_name")
        read_only_fields = fields


class OrganizationMemberSerializer(serializers.ModelSerializer[Membership]):
    user = OrganizationMemberUserSerializer(read_only=True)
    joined_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Membership
        fields = ("user", "role", "joined_at")
        read_only_fields = fields


class OrganizationMemberRoleSerializer(serializers.Serializer[Any]):
    role = serializers.ChoiceField(choices=OrganizationRole.choices)


class OrganizationMembershipSerializer(serializers.ModelSerializer[Membership]):
    """One of the caller's memberships, with its organization (the answer to accepting)."""

    organization = OrganizationSummarySerializer(read_only=True)
    joined_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Membership
        fields = ("organization", "role", "joined_at")
        read_only_fields = fields


class OrganizationInvitationSerializer(serializers.ModelSerializer[Invitation]):
    state = serializers.SerializerMethodField()
    invited_by = OrganizationMemberUserSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Invitation
        fields = ("id", "email", "role", "state", "invited_by", "created_at", "expires_at")
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=InvitationState.choices))
    def get_state(self, invitation: Invitation) -> str:
        return invitation_state(invitation).value


class OrganizationInvitationCreateSerializer(serializers.Serializer[Any]):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=OrganizationRole.choices, default=OrganizationRole.MEMBER)


class OrganizationInvitationAcceptSerializer(serializers.Serializer[Any]):
    token = serializers.CharField(max_length=TOKEN_MAX_LENGTH, help_text="The `token` of the e-mailed link.")


# --- permissions and parameters ----------------------------------------------------------------


class OrganizationPolicyPermission(PolicyPermission):
    """`PolicyPermission` for resources nested under an organization: their list and create
    actions are decided on that organization (the view's `organization`)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if getattr(view, "detail", False):
            return super().has_permission(request, view)
        if not (request.user and request.user.is_authenticated):
            return False
        permission = self._permission(view)
        organization = cast(Any, view).organization
        return permission is not None and policy_allows(request.user, permission, organization)


ORGANIZATION_ID_PARAMETER = OpenApiParameter(
    "organization_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The organization's ID."
)
MEMBER_USER_ID_PARAMETER = OpenApiParameter(
    "user_id",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="The member's user ID (a UUID), or `me` for the caller's own membership.",
)
INVITATION_GONE = error_response(
    "OrganizationInvitationGone",
    "invitation_expired",
    "invitation_revoked",
    "invitation_used",
    description="The invitation can no longer be accepted: `invitation_expired`, `invitation_revoked`, "
    "`invitation_used` (by someone else, or after leaving).",
)
INVITATION_REFUSED = error_response(
    "OrganizationInvitationRefused",
    "invitation_email_mismatch",
    "invitation_email_unverified",
    "permission_denied",
    description="`invitation_email_mismatch`: none of the caller's addresses is the invited one; "
    "`invitation_email_unverified`: it is, but not verified yet.",
)


class MethodCheckedFirst:
    """A method the viewset does not route is a 405, before `PolicyPermission` (which knows no
    policy for it) would call it a 403."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if getattr(self, "action", None) is None and request.method != "OPTIONS":
            raise exceptions.MethodNotAllowed(request.method or "")
        super().initial(request, *args, **kwargs)  # type: ignore[misc]


def _caller(request: Request) -> User:
    return cast(User, request.user)


# --- views -------------------------------------------------------------------------------------


@extend_validation_errors(["unique", "invalid"], field_name="slug", actions=["create", "partial_update"])
@extend_validation_errors(["invitation_invalid"], field_name="token", actions=["accept_invitation"])
class OrganizationViewSet(
    MethodCheckedFirst,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Organization],
):
    serializer_class = OrganizationSerializer
    permission_classes = [PolicyPermission]
    policy_permissions = {
        "list": "accounts.list_organizations",
        "create": "accounts.add_organization",
        "retrieve": "accounts.view_organization",
        "partial_update": "accounts.change_organization",
        "destroy": "accounts.delete_organization",
        "accept_invitation": "accounts.accept_organization_invitation",
    }
    required_scopes = {
        "list": ["organizations:read"],
        "retrieve": ["organizations:read"],
        "create": ["organizations:write"],
        "partial_update": ["organizations:write"],
        "destroy": ["organizations:write"],
        "accept_invitation": ["organizations:write"],
    }
    lookup_value_regex = UUID_PATTERN

    def get_queryset(self) -> QuerySet[Organization]:
        if getattr(self, "swagger_fake_view", False):
            return Organization.objects.none()
        return organization_list_for(user=self.request.user)

    def _present(self, organization: Organization) -> dict[str, Any]:
        return dict(OrganizationSerializer(self.get_queryset().get(pk=organization.pk)).data)

    @extend_schema(
        summary="My organizations",
        description="The organizations the caller belongs to, by name; site staff see every organization.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=OrganizationCreateSerializer,
        responses={201: OrganizationSerializer},
        summary="Create an organization",
        description="Anyone signed in can; the caller becomes its first owner.",
    )
    def create(self, request: Request) -> Response:
        serializer = OrganizationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        organization = organization_create(actor=_caller(request), **serializer.validated_data)
        return Response(self._present(organization), status=status.HTTP_201_CREATED)

    @extend_schema(summary="An organization")
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        request=OrganizationUpdateSerializer,
        responses=OrganizationSerializer,
        summary="Update an organization",
        description="Owners and organization admins (and site admins).",
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        organization = self.get_object()
        serializer = OrganizationUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        organization_update(organization=organization, actor=_caller(request), **serializer.validated_data)
        return Response(self._present(organization))

    @extend_schema(
        responses={204: None},
        summary="Delete an organization",
        description="Owners (and site admins). Its memberships and invitations go with it.",
    )
    def destroy(self, request: Request, pk: str) -> Response:
        organization_delete(organization=self.get_object(), actor=_caller(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=OrganizationInvitationAcceptSerializer,
        responses={200: OrganizationMembershipSerializer, 403: INVITATION_REFUSED, 410: INVITATION_GONE},
        summary="Accept an invitation",
        description=(
            "Join the organization of an e-mailed invitation with the `token` of its link. The caller "
            "must have verified the invited address. Accepting again an invitation the caller already "
            "accepted returns the same membership. 400 `invitation_invalid` on `token`: unknown, "
            "tampered, or replaced by a resend."
        ),
    )
    @action(detail=False, methods=["post"], url_path="invitations/accept", url_name="invitation-accept")
    def accept_invitation(self, request: Request) -> Response:
        serializer = OrganizationInvitationAcceptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = invitation_accept(token=serializer.validated_data["token"], user=_caller(request))
        return Response(OrganizationMembershipSerializer(membership).data)


class OrganizationChildViewSet(MethodCheckedFirst, viewsets.GenericViewSet[Any]):
    """A resource of one organization, named by the `organization_id` of the URL."""

    permission_classes = [OrganizationPolicyPermission]

    @cached_property
    def organization(self) -> Organization:
        """The organization of the URL; a 404 for one the caller may not know exists."""
        return get_object_or_404(
            organization_list_visible(user=self.request.user), pk=self.kwargs["organization_id"]
        )


@extend_schema(parameters=[ORGANIZATION_ID_PARAMETER])
@extend_validation_errors(["last_owner"], field_name="role", actions=["partial_update"])
@extend_validation_errors(["last_owner"], actions=["destroy"])
class MembershipViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationChildViewSet):
    serializer_class = OrganizationMemberSerializer
    policy_permissions = {
        "list": "accounts.view_organization",
        "retrieve": "accounts.view_organization",
        "partial_update": "accounts.change_membership",
        "destroy": "accounts.delete_membership",
    }
    required_scopes = {
        "list": ["organizations:read"],
        "retrieve": ["organizations:read"],
        "partial_update": ["organizations:write"],
        "destroy": ["organizations:write"],
    }
    lookup_field = "user_id"
    lookup_value_regex = f"{UUID_PATTERN}|{ME}"

    def get_queryset(self) -> QuerySet[Membership]:
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.none()
        return membership_list(organization=self.organization)

    def get_object(self) -> Membership:
        user_id = self.kwargs["user_id"]
        membership = get_object_or_404(
            self.get_queryset(), user_id=self.request.user.pk if user_id == ME else user_id
        )
        self.check_object_permissions(self.request, membership)
        return membership

    @extend_schema(summary="Members of an organization", description="Longest-standing first.")
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(parameters=[MEMBER_USER_ID_PARAMETER], summary="A member")
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        parameters=[MEMBER_USER_ID_PARAMETER],
        request=OrganizationMemberRoleSerializer,
        responses=OrganizationMemberSerializer,
        summary="Change a member's role",
        description=(
            "Owners change anyone's role and alone grant `owner`; organization admins change plain "
            "members (to `member` or `admin`) and their own role. The last owner cannot be demoted "
            "(400 `last_owner`)."
        ),
    )
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        membership = self.get_object()
        serializer = OrganizationMemberRoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership_set_role(
            membership=membership, role=serializer.validated_data["role"], actor=_caller(request)
        )
        return Response(OrganizationMemberSerializer(self.get_queryset().get(pk=membership.pk)).data)

    @extend_schema(
        parameters=[MEMBER_USER_ID_PARAMETER],
        responses={204: None},
        summary="Remove a member, or leave",
        description=(
            "`DELETE .../members/me/` leaves the organization. Owners remove anyone, organization admins "
            "plain members. The last owner can neither leave nor be removed (400 `last_owner`)."
        ),
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        membership_remove(membership=self.get_object(), actor=_caller(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(parameters=[ORGANIZATION_ID_PARAMETER])
@extend_validation_errors(["already_member", "invitation_pending"], field_name="email", actions=["create"])
@extend_validation_errors(["invitation_used", "invitation_revoked"], actions=["destroy", "resend"])
class InvitationViewSet(mixins.ListModelMixin, OrganizationChildViewSet):
    serializer_class = OrganizationInvitationSerializer
    policy_permissions = {
        "list": "accounts.manage_organization_members",
        "create": "accounts.manage_organization_members",
        "destroy": "accounts.manage_organization_invitation",
        "resend": "accounts.manage_organization_invitation",
    }
    required_scopes = {
        "list": ["organizations:read"],
        "create": ["organizations:write"],
        "destroy": ["organizations:write"],
        "resend": ["organizations:write"],
    }
    lookup_value_regex = UUID_PATTERN

    def get_throttles(self) -> list[BaseThrottle]:
        throttles = list(super().get_throttles())
        if self.action in {"create", "resend"}:
            throttles.append(InvitationEmailThrottle())
        return throttles

    def get_queryset(self) -> QuerySet[Invitation]:
        if getattr(self, "swagger_fake_view", False):
            return Invitation.objects.none()
        if self.action == "list":
            return invitation_list_open(organization=self.organization)
        return Invitation.objects.filter(organization=self.organization).select_related("invited_by")

    @extend_schema(
        summary="Open invitations of an organization",
        description=(
            "Neither accepted nor revoked: `pending`, or `expired` (resend or revoke those). Newest first."
        ),
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=OrganizationInvitationCreateSerializer,
        responses={201: OrganizationInvitationSerializer},
        summary="Invite someone by e-mail",
        description=(
            "E-mails a link that works for `ORGANIZATION_INVITATION_DAYS` (7 by default). Owners and "
            "organization admins; only owners invite as `owner`. Errors on `email`: `already_member`, "
            "`invitation_pending` (resend that one instead). An expired invitation of the same address "
            "is replaced. The link's token is never returned."
        ),
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = OrganizationInvitationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation = invitation_create(
            organization=self.organization, actor=_caller(request), **serializer.validated_data
        )
        return Response(OrganizationInvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        responses={204: None},
        summary="Revoke an invitation",
        description=(
            "Its link stops working. 400 `invitation_used` or `invitation_revoked` when it is closed."
        ),
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        invitation_revoke(invitation=self.get_object(), actor=_caller(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=None,
        responses=OrganizationInvitationSerializer,
        summary="Resend an invitation",
        description="E-mails a new link with a full lifetime; the previous link stops working.",
    )
    @action(detail=True, methods=["post"])
    def resend(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        invitation = invitation_resend(invitation=self.get_object(), actor=_caller(request))
        return Response(OrganizationInvitationSerializer(invitation).data)
