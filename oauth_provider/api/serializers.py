"""Shapes of the OAuth data the API shows."""

from __future__ import annotations

from rest_framework import serializers

from oauth_provider.models import Consent


class AuthorizedApplicationSerializer(serializers.ModelSerializer[Consent]):
    """An application the user authorized, and what they let it do."""

    client_id = serializers.CharField(source="application.client_id")
    name = serializers.CharField(source="application.name")
    logo_uri = serializers.CharField(source="application.logo_uri", help_text="Empty when it has none.")
    client_uri = serializers.CharField(source="application.client_uri", help_text="Empty when it has none.")
    scopes = serializers.ListField(
        child=serializers.CharField(), source="scope_list", help_text="Scopes consented to, sorted."
    )
    first_authorized_at = serializers.DateTimeField(source="created_at")
    last_authorized_at = serializers.DateTimeField()
    has_active_tokens = serializers.BooleanField(
        help_text="The application holds an unexpired access token or a refresh token for the user."
    )

    class Meta:
        model = Consent
        fields = (
            "client_id",
            "name",
            "logo_uri",
            "client_uri",
            "scopes",
            "first_authorized_at",
            "last_authorized_at",
            "has_active_tokens",
        )
        read_only_fields = fields
