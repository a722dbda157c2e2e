"""Shapes of users, devices and tokens in the API.

Three views of a user: the public profile (anyone signed in), the caller's own record (`me`) and
the staff record. Input serializers are strict: a field the caller may not write is a 400, never
silently ignored, so a client learns at once that `is_staff` or `roles` cannot be set that way.
"""

from __future__ import annotations

from typing import Any, cast

from rest_framework import serializers

from accounts.models import DESCRIPTION_MAX_LENGTH, REASON_MAX_LENGTH, Membership, Role, User, UserBlock
from accounts.validators import USERNAME_MAX_LENGTH


class StrictInputSerializer(serializers.Serializer[Any]):
    """Refuse fields the serializer does not declare: `read_only_field` for the resource's own
    fields (`read_only_names`), `unknown_field` for anything else."""

    read_only_names: frozenset[str] = frozenset()

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            errors: dict[str, list[serializers.ErrorDetail]] = {}
            for name in sorted(set(data.keys()) - set(self.fields)):
                if name in self.read_only_names:
                    errors[name] = [
                        serializers.ErrorDetail("This field cannot be changed here.", "read_only_field")
                    ]
                else:
                    errors[name] = [serializers.ErrorDetail("Unknown field.", code="unknown_field")]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


MFA_FACTOR_CHOICES = (("totp", "Authenticator app"), ("webauthn", "Security key or passkey"))

# Every field any view of a user shows: writing one that is not writable is `read_only_field`.
USER_FIELD_NAMES = frozenset(
    {
        "id",
        "username",
        "display_name",
        "email",
        "email_verified",
        "description",
        "roles",
        "is_active",
        "is_staff",
        "is_superuser",
        "has_mfa",
        "mfa_factors",
        "mfa_required",
        "social_providers",
        "organizations",
        "deactivation_reason",
        "last_login",
        "created_at",
        "deleted_at",
        "password",
        "groups",
        "user_permissions",
    }
)


class UserProfileSerializer(serializers.ModelSerializer[User]):
    """The public profile: what anyone signed in may see of another user."""

    class Meta:
        model = User
        fields = ("id", "username", "display_name", "description", "created_at")
        read_only_fields = fields


class BlockedUserSerializer(serializers.ModelSerializer[UserBlock]):
    user = UserProfileSerializer(source="blocked", read_only=True)
    blocked_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = UserBlock
        fields = ("user", "blocked_at")
        read_only_fields = fields


class MembershipSummarySerializer(serializers.ModelSerializer[Membership]):
    id = serializers.UUIDField(source="organization.id", read_only=True)
    name = serializers.CharField(source="organization.name", read_only=True)
    slug = serializers.CharField(source="organization.slug", read_only=True)

    class Meta:
        model = Membership
        fields = ("id", "name", "slug", "role")
        read_only_fields = fields


class MeSerializer(serializers.ModelSerializer[User]):
    """The caller's own record."""

    email_verified = serializers.BooleanField(read_only=True)
    has_mfa = serializers.BooleanField(read_only=True)
    mfa_factors = serializers.ListField(
        source="mfa_factor_types",
        child=serializers.ChoiceField(choices=MFA_FACTOR_CHOICES),
        read_only=True,
        help_text="Second factors set up (recovery codes only back them up).",
    )
    mfa_required = serializers.BooleanField(
        source="requires_mfa", read_only=True, help_text="The account's role requires a second factor."
    )
    roles = serializers.ListField(child=serializers.ChoiceField(choices=Role.choices), read_only=True)
    organizations = MembershipSummarySerializer(source="memberships", many=True, read_only=True)

    class Meta:
        model = User
        fields = (
            "id",
            "username",
            "display_name",
            "email",
            "email_verified",
            "description",
            "roles",
            "has_mfa",
            "mfa_factors",
            "mfa_required",
            "organizations",
            "is_active",
            "last_login",
            "created_at",
        )
        read_only_fields = fields


class StaffUserSerializer(serializers.ModelSerializer[User]):
    """The staff record of a user (list and detail)."""

    email_verified = serializers.BooleanField(read_only=True)
    has_mfa = serializers.BooleanField(read_only=True)
    mfa_factors = serializers.ListField(
        source="mfa_factor_types",
        child=serializers.ChoiceField(choices=MFA_FACTOR_CHOICES),
        read_only=True,
        help_text="Second factors set up (recovery codes only back them up).",
    )
    roles = serializers.ListField(child=serializers.ChoiceField(choices=Role.choices), read_only=True)
    social_providers = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = (
            "id",
            "username",
            "display_name",
            "email",
            "email_verified",
            "description",
            "roles",
            "is_active",
            "deactivation_reason",
            "has_mfa",
            "mfa_factors",
            "social_providers",
            "last_login",
            "created_at",
            "deleted_at",
        )
        read_only_fields = fields

    def get_social_providers(self, user: User) -> list[str]:
        accounts = cast(Any, user).socialaccount_set.all()  # allauth's reverse relation, prefetched
        return sorted({account.provider for account in accounts})


class UserProfileUpdateSerializer(StrictInputSerializer):
    """What a user changes of themselves at `me`, and staff of a user they may change."""

    read_only_names = USER_FIELD_NAMES
    username = serializers.CharField(max_length=USERNAME_MAX_LENGTH, required=False)
    display_name = serializers.CharField(max_length=USERNAME_MAX_LENGTH, required=False)
    description = serializers.CharField(max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True)


class UserRolesSerializer(StrictInputSerializer):
    roles = serializers.ListField(
        child=serializers.ChoiceField(choices=Role.choices),
        allow_empty=True,
        max_length=len(Role.values),
        help_text="The complete set of roles; `user` is always kept.",
    )


class ReasonSerializer(StrictInputSerializer):
    reason = serializers.CharField(
        max_length=REASON_MAX_LENGTH,
        required=False,
        allow_blank=True,
        default="",
        help_text="Why, for the audit trail.",
    )


class EmailChangeSerializer(ReasonSerializer):
    email = serializers.EmailField(max_length=254, help_text="The user's new and only address.")
    verified = serializers.BooleanField(
        required=False,
        default=False,
        help_text="True only once you have confirmed the user owns it; otherwise it is sent a "
        "verification link.",
    )


class RevokedTokensSerializer(serializers.Serializer[dict[str, int]]):
    device_sessions = serializers.IntegerField()
    browser_sessions = serializers.IntegerField()
    oauth_access_tokens = serializers.IntegerField()
    oauth_refresh_tokens = serializers.IntegerField()
    oauth_authorization_codes = serializers.IntegerField()


class SignOutEverywhereSerializer(serializers.Serializer[dict[str, Any]]):
    revoked = RevokedTokensSerializer()


class LockDownSerializer(serializers.Serializer[dict[str, Any]]):
    user = StaffUserSerializer()
    revoked = RevokedTokensSerializer()


class MFAResetSerializer(serializers.Serializer[dict[str, Any]]):
    user = StaffUserSerializer()
    removed = serializers.ListField(
        child=serializers.CharField(),
        help_text="Authenticator types removed (`totp`, `recovery_codes`, `webauthn`).",
    )
    revoked = RevokedTokensSerializer()


class TokenRefreshSerializer(serializers.Serializer[dict[str, str]]):
    refresh_token = serializers.CharField(trim_whitespace=True)


class TokenPairSerializer(serializers.Serializer[dict[str, object]]):
    access_token = serializers.CharField()
    refresh_token = serializers.CharField()
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="Seconds until the access token expires.")


class SignedInDeviceSerializer(serializers.Serializer[object]):
    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=["app", "browser"])
    name = serializers.CharField(source="label", help_text='The device, e.g. "Firefox on Linux".')
    ip_address = serializers.IPAddressField(allow_null=True)
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField()
    is_current = serializers.BooleanField()


class RevokedCountSerializer(serializers.Serializer[dict[str, int]]):
    revoked = serializers.IntegerField()
