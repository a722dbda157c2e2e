"""Dynamic client registration (RFC 7591/7592): initial access tokens and what each registration left.

Both credentials here are random, high-entropy bearer values: only their SHA-256 checksum is
stored (a password-strength hash would add nothing but latency), and a short prefix to recognise
one in a list. See docs/decisions/0016-oauth-client-registration-and-admin.md.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from oauth_provider.models.applications import Application

# RFC 7591 grant type names that a registration may ask for; implicit and password never
# (RFC 9700 §2.1.2, §2.4).
GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_REFRESH_TOKEN = "refresh_token"  # noqa: S105 (a grant type name)
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
REGISTRABLE_GRANT_TYPES = (
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE,
)


def default_registration_grant_types() -> list[str]:
    return [GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN]


class InitialAccessTokenState(models.TextChoices):
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    USED_UP = "used_up", "Used up"


class InitialAccessTokenQuerySet(models.QuerySet["InitialAccessToken"]):
    def in_state(self, state: str) -> InitialAccessTokenQuerySet:
        now = timezone.now()
        exhausted = models.Q(max_uses__isnull=False, uses__gte=models.F("max_uses"))
        if state == InitialAccessTokenState.REVOKED:
            return self.filter(revoked_at__isnull=False)
        live = self.filter(revoked_at__isnull=True)
        if state == InitialAccessTokenState.USED_UP:
            return live.filter(exhausted)
        if state == InitialAccessTokenState.EXPIRED:
            return live.exclude(exhausted).filter(expires_at__lte=now)
        return live.exclude(exhausted).filter(expires_at__gt=now)


class InitialAccessToken(models.Model):
    """A credential that lets a client register itself at `/o/register/` (RFC 7591 §3)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    label = models.CharField(max_length=150, help_text="Who or what the token was given to.")
    token_checksum = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(max_length=16, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField(
        null=True, blank=True, help_text="How many clients it may register; empty for no limit."
    )
    uses = models.PositiveIntegerField(default=0, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    allowed_scopes = models.TextField(
        blank=True,
        help_text="Space-separated scopes its clients may have; empty for OAUTH_REGISTRATION_SCOPES.",
    )
    allowed_grant_types = models.JSONField(
        default=default_registration_grant_types,
        help_text="RFC 7591 grant types its clients may use.",
    )

    objects = InitialAccessTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "initial access token"
        ordering = ("-created_at",)
        indexes = [models.Index(fields=["created_at"], name="oauth_iat_created_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_uses__isnull=True) | models.Q(max_uses__gte=1),
                name="oauth_iat_max_uses_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.token_prefix}…)"

    @property
    def state(self) -> InitialAccessTokenState:
        if self.revoked_at is not None:
            return InitialAccessTokenState.REVOKED
        if self.max_uses is not None and self.uses >= self.max_uses:
            return InitialAccessTokenState.USED_UP
        if self.expires_at <= timezone.now():
            return InitialAccessTokenState.EXPIRED
        return InitialAccessTokenState.ACTIVE


class ClientRegistration(models.Model):
    """How a dynamically registered client came to be, and the hash of its registration access token.

    RFC 7592's registration access token is kept here rather than as a toolkit `AccessToken`
    (as the toolkit's own views do): it is a credential for `/o/register/<client_id>/` alone, so it
    must never pass as a bearer token at the API, userinfo or introspection.
    """

    class AuthMethod(models.TextChoices):
        CLIENT_SECRET_BASIC = "client_secret_basic", "client_secret_basic"
        CLIENT_SECRET_POST = "client_secret_post", "client_secret_post"
        NONE = "none", "none (public client, PKCE)"

    application = models.OneToOneField(
        Application, primary_key=True, on_delete=models.CASCADE, related_name="registration"
    )
    initial_access_token = models.ForeignKey(
        InitialAccessToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="registrations"
    )
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The staff member who registered it with their session, if one did.",
    )
    token_endpoint_auth_method = models.CharField(max_length=32, choices=AuthMethod.choices)
    registration_token_checksum = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "client registration"

    def __str__(self) -> str:
        return f"Registration of {self.application}"
