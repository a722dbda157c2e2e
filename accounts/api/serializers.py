"""Shapes of users in the API."""

from __future__ import annotations

from rest_framework import serializers

from accounts.models import DESCRIPTION_MAX_LENGTH, User
from accounts.validators import USERNAME_MAX_LENGTH


class UserSerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = ("id", "username", "display_name", "email", "description", "is_active", "created_at")
        read_only_fields = fields


class UserProfileUpdateSerializer(serializers.Serializer[User]):
    display_name = serializers.CharField(max_length=USERNAME_MAX_LENGTH, required=False)
    description = serializers.CharField(max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True)


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
