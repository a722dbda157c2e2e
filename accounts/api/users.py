"""The users resource: staff list and manage users; everyone manages themselves at `me`, reads other
users' public profiles and blocks them.

Who may do what is decided by accounts/policies.py through `PolicyPermission`, exactly as in the
Django admin; each action calls one service.
"""

from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer, ModelSerializer

from accounts.api.deletion import DELETE_ME_SCHEMA, delete_me
from accounts.api.filters import UserFilter
from accounts.api.permissions import PolicyPermission, RecentReauthentication
from accounts.api.schema import REAUTHENTICATION_REQUIRED_RESPONSE, error_response
from accounts.api.serializers import (
    BlockedUserSerializer,
    EmailChangeSerializer,
    LockDownSerializer,
    MeSerializer,
    MFAResetSerializer,
    ReasonSerializer,
    SignOutEverywhereSerializer,
    StaffUserSerializer,
    UserProfileSerializer,
    UserProfileUpdateSerializer,
    UserRolesSerializer,
)
from accounts.models import User, UserBlock, UserQuerySet
from accounts.policies import policy_allows
from accounts.selectors.users import user_with_details, users_blocked_by, users_visible_to
from accounts.services import user_update_profile
from accounts.services.mfa import user_mfa_reset
from accounts.services.moderation import (
    user_block,
    user_change_email,
    user_deactivate,
    user_lock_down,
    user_mark_email_verified,
    user_reactivate,
    user_resend_verification,
    user_send_password_reset,
    user_set_roles,
    user_sign_out_everywhere,
    user_unblock,
)

USER_DETAIL = PolymorphicProxySerializer(
    component_name="UserDetail",
    serializers=[StaffUserSerializer, MeSerializer, UserProfileSerializer],
    resource_type_field_name=None,
    many=False,
)
MASS_ASSIGNMENT = error_response(
    "UserUpdate",
    "read_only_field",
    "unknown_field",
    "username_too_short",
    "username_invalid_characters",
    "unique",
    "display_name_mismatch",
    "max_length",
    validation=True,
)


def _user_representation(*, viewer: User, user: User) -> dict[str, Any]:
    """The richest view of `user` that `viewer` may see."""
    serializer: ModelSerializer[User]
    if policy_allows(viewer, "accounts.list_users"):
        serializer = StaffUserSerializer(user)
    elif viewer.pk == user.pk:
        serializer = MeSerializer(user)
    else:
        serializer = UserProfileSerializer(user)
    return dict(serializer.data)


class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[User]):
    serializer_class = StaffUserSerializer
    permission_classes = [PolicyPermission]
    filter_backends = [DjangoFilterBackend]
    filterset_class = UserFilter
    lookup_value_regex = "[0-9a-f-]{36}"
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    # One permission per action: anything not listed is denied (accounts.api.permissions).
    policy_permissions = {
        "list": "accounts.list_users",
        "retrieve": "accounts.view_user_profile",
        "partial_update": "accounts.change_user",
        "roles": "accounts.assign_roles",
        "deactivate": "accounts.deactivate_user",
        "reactivate": "accounts.reactivate_user",
        "lock_down": "accounts.lock_down_user",
        "sign_out_everywhere": "accounts.sign_out_user",
        "send_password_reset": "accounts.send_password_reset",
        "resend_verification": "accounts.resend_verification",
        "verify_email": "accounts.verify_email",
        "change_email": "accounts.change_user_email",
        "reset_mfa": "accounts.reset_mfa",
        "block": "accounts.block_user",
        "unblock": "accounts.block_user",
    }
    # The scopes an OAuth access token needs per action (accounts.authentication); the policies
    # above still decide whose data. Step-up actions and `delete_me` refuse OAuth tokens anyway.
    required_scopes = {
        "list": ["users:read"],
        "retrieve": ["users:read"],
        "me": ["users:read"],
        "blocked_users": ["users:read"],
        "partial_update": ["users:write"],
        "update_me": ["users:write"],
        "delete_me": ["users:write"],
        "roles": ["users:write"],
        "deactivate": ["users:write"],
        "reactivate": ["users:write"],
        "lock_down": ["users:write"],
        "sign_out_everywhere": ["users:write"],
        "send_password_reset": ["users:write"],
        "resend_verification": ["users:write"],
        "verify_email": ["users:write"],
        "change_email": ["users:write"],
        "reset_mfa": ["users:write"],
        "block": ["users:write"],
        "unblock": ["users:write"],
    }

    def get_queryset(self) -> UserQuerySet:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular inspecting the view
            return User.objects.none()
        viewer = cast(User, self.request.user)
        if self.action == "list":
            return User.objects.for_staff_list().order_by("username")
        visible = users_visible_to(viewer=viewer)
        if self.action == "unblock":
            # Unblocking someone who has since blocked you back must still work.
            visible = visible | User.objects.filter(blocks_received__blocker=viewer)
        return visible.for_staff_list().order_by("username")

    def _viewer(self) -> User:
        return cast(User, self.request.user)

    def _staff_record(self, user: User) -> Response:
        return Response(StaffUserSerializer(user_with_details(user_id=user.pk)).data)

    # --- reading ---------------------------------------------------------------------------------

    @extend_schema(
        summary="List users (staff)",
        description=(
            "Every user, with search and filters; admins and moderators only. Page-number pagination "
            "(`page`, `page_size` up to 200)."
        ),
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        responses={200: USER_DETAIL},
        summary="Read a user",
        description=(
            "Staff get the full staff record; the caller gets their own record; anyone else signed in "
            "gets the public profile. A user who blocked the caller, or is deactivated, is a 404."
        ),
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        user = self.get_object()
        return Response(_user_representation(viewer=self._viewer(), user=user))

    # --- staff changes ---------------------------------------------------------------------------

    @extend_schema(
        request=UserProfileUpdateSerializer,
        responses={200: USER_DETAIL, 400: MASS_ASSIGNMENT},
        summary="Change a user's username or profile",
        description=(
            "Staff (moderators only for plain users) and the user themselves. Other fields, such as "
            "`is_staff`, `roles` or `email`, are refused with `read_only_field`."
        ),
    )
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        user = self.get_object()
        serializer = UserProfileUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_update_profile(user=user, actor=self._viewer(), **serializer.validated_data)
        return Response(_user_representation(viewer=self._viewer(), user=user_with_details(user_id=user.pk)))

    @extend_schema(
        request=UserRolesSerializer,
        responses={
            200: StaffUserSerializer,
            400: error_response("UserRoles", "invalid_choice", "cannot_demote_self", validation=True),
            401: REAUTHENTICATION_REQUIRED_RESPONSE,
        },
        summary="Set a user's roles (admins)",
        description=(
            "Replaces the roles; `user` is always kept. Admins cannot remove their own `admin` role. "
            "Needs a recent re-authentication of the caller (401 `reauthentication_required`)."
        ),
    )
    @action(detail=True, methods=["put"], permission_classes=[PolicyPermission, RecentReauthentication])
    def roles(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        serializer = UserRolesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user_set_roles(user=user, roles=serializer.validated_data["roles"], actor=self._viewer())
        return self._staff_record(user)

    @extend_schema(
        request=ReasonSerializer,
        responses={
            200: StaffUserSerializer,
            400: error_response("UserDeactivate", "cannot_target_self", "max_length", validation=True),
        },
        summary="Deactivate a user",
        description="They can no longer sign in, and their tokens stop working on the next request.",
    )
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        serializer = ReasonSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user_deactivate(user=user, reason=serializer.validated_data["reason"], actor=self._viewer())
        return self._staff_record(user)

    @extend_schema(
        request=None,
        responses={
            200: StaffUserSerializer,
            400: error_response("UserReactivate", "account_purged", validation=True),
        },
        summary="Reactivate a user",
    )
    @action(detail=True, methods=["post"])
    def reactivate(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        user_reactivate(user=user, actor=self._viewer())
        return self._staff_record(user)

    @extend_schema(
        request=ReasonSerializer,
        responses={
            200: LockDownSerializer,
            400: error_response("UserLockDown", "cannot_target_self", "max_length", validation=True),
            401: REAUTHENTICATION_REQUIRED_RESPONSE,
        },
        summary="Lock a user down",
        description=(
            "Deactivates the user and revokes every device session, browser session, JWT and OAuth "
            "token, with one audit event, in one transaction. Needs a recent re-authentication of "
            "the caller (401 `reauthentication_required`)."
        ),
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="lock-down",
        permission_classes=[PolicyPermission, RecentReauthentication],
    )
    def lock_down(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        serializer = ReasonSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = user_lock_down(user=user, reason=serializer.validated_data["reason"], actor=self._viewer())
        staff_record = StaffUserSerializer(user_with_details(user_id=user.pk)).data
        return Response({"user": staff_record, "revoked": result["revoked"]})

    @extend_schema(
        request=None,
        responses={200: SignOutEverywhereSerializer},
        summary="Sign a user out everywhere",
        description="Revokes every session and token of the user, who stays active.",
    )
    @action(detail=True, methods=["post"], url_path="sign-out-everywhere")
    def sign_out_everywhere(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        revoked = user_sign_out_everywhere(user=user, actor=self._viewer())
        return Response({"revoked": revoked})

    @extend_schema(
        request=None,
        responses={
            202: None,
            400: error_response("PasswordReset", "user_inactive", "no_email_address", validation=True),
        },
        summary="E-mail a user a password reset link",
    )
    @action(detail=True, methods=["post"], url_path="send-password-reset")
    def send_password_reset(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        user_send_password_reset(user=user, actor=self._viewer())
        return Response(status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses={
            202: None,
            400: error_response(
                "ResendVerification", "email_already_verified", "no_email_address", validation=True
            ),
        },
        summary="Resend the verification e-mail",
    )
    @action(detail=True, methods=["post"], url_path="resend-verification")
    def resend_verification(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        user_resend_verification(user=user, actor=self._viewer())
        return Response(status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses={
            200: StaffUserSerializer,
            400: error_response(
                "VerifyEmail", "email_verified_elsewhere", "no_email_address", validation=True
            ),
        },
        summary="Mark the user's primary e-mail address verified",
    )
    @action(detail=True, methods=["post"], url_path="verify-email")
    def verify_email(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        user_mark_email_verified(user=user, actor=self._viewer())
        return self._staff_record(user)

    @extend_schema(
        request=EmailChangeSerializer,
        responses={
            200: StaffUserSerializer,
            400: error_response(
                "EmailChange",
                "invalid",
                "required",
                "max_length",
                "email_taken",
                "email_unchanged",
                "cannot_target_self",
                "account_purged",
                validation=True,
            ),
            401: REAUTHENTICATION_REQUIRED_RESPONSE,
        },
        summary="Change a user's e-mail address",
        description=(
            "For a user who lost their mailbox: the new address replaces every address of the "
            "account and becomes primary, verified only with `verified: true` (otherwise it is sent "
            "a verification link). The old address is told; reset and verification links sent "
            "before stop working. Not for the caller's own account. Needs a recent "
            "re-authentication of the caller."
        ),
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="change-email",
        permission_classes=[PolicyPermission, RecentReauthentication],
    )
    def change_email(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        serializer = EmailChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user_change_email(user=user, actor=self._viewer(), **serializer.validated_data)
        return self._staff_record(user)

    @extend_schema(
        request=None,
        responses={
            200: MFAResetSerializer,
            400: error_response("MFAReset", "cannot_target_self", validation=True),
            401: REAUTHENTICATION_REQUIRED_RESPONSE,
        },
        summary="Reset a user's second factors",
        description=(
            "For a user who lost their authenticator: removes every second factor (TOTP, recovery "
            "codes, security keys) and signs them out everywhere. A user whose role requires MFA "
            "sets one up again at their next sign-in. Needs a recent re-authentication of the caller."
        ),
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="reset-mfa",
        permission_classes=[PolicyPermission, RecentReauthentication],
    )
    def reset_mfa(self, request: Request, pk: str | None = None) -> Response:
        user = self.get_object()
        result = user_mfa_reset(user=user, actor=self._viewer())
        staff_record = StaffUserSerializer(user_with_details(user_id=user.pk)).data
        return Response({"user": staff_record, "removed": result["removed"], "revoked": result["revoked"]})

    # --- blocking --------------------------------------------------------------------------------

    @extend_schema(
        request=None,
        responses={204: None, 400: error_response("Block", "block_self", validation=True)},
        summary="Block a user",
        description="They no longer see the caller's profile (a 404 for them). Idempotent.",
    )
    @action(detail=True, methods=["post"])
    def block(self, request: Request, pk: str | None = None) -> Response:
        user_block(blocker=self._viewer(), blocked=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={204: None}, summary="Unblock a user")
    @block.mapping.delete
    def unblock(self, request: Request, pk: str | None = None) -> Response:
        user_unblock(blocker=self._viewer(), blocked=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    # --- the caller ------------------------------------------------------------------------------

    @extend_schema(responses=MeSerializer, summary="Read my account")
    @action(detail=False, methods=["get"], permission_classes=[permissions.IsAuthenticated])
    def me(self, request: Request) -> Response:
        return Response(MeSerializer(user_with_details(user_id=request.user.pk)).data)

    @extend_schema(
        request=UserProfileUpdateSerializer,
        responses={200: MeSerializer, 400: MASS_ASSIGNMENT},
        summary="Change my username or profile",
        description=(
            "`username` (3 to 32 lowercase letters, digits, underscores; the display name follows it "
            "unless given too), `display_name` (the username with other letter case or spaces), "
            "`description`. Anything else is refused with `read_only_field` or `unknown_field`; the "
            "e-mail address changes through the account flows (`/_allauth/`)."
        ),
    )
    @me.mapping.patch
    def update_me(self, request: Request) -> Response:
        serializer = UserProfileUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_update_profile(user=self._viewer(), **serializer.validated_data)
        return Response(MeSerializer(user_with_details(user_id=user.pk)).data)

    @DELETE_ME_SCHEMA
    @me.mapping.delete
    def delete_me(self, request: Request) -> Response:
        return delete_me(request)

    @extend_schema(responses=BlockedUserSerializer(many=True), summary="Users I blocked", filters=False)
    @action(
        detail=False,
        methods=["get"],
        url_path="me/blocked-users",
        permission_classes=[permissions.IsAuthenticated],
        filter_backends=[],
    )
    def blocked_users(self, request: Request) -> Response:
        blocks: QuerySet[UserBlock] = users_blocked_by(user=self._viewer())
        page = self.paginate_queryset(cast(Any, blocks))
        serializer: BaseSerializer[Any] = BlockedUserSerializer(page, many=True)
        return self.get_paginated_response(serializer.data)
