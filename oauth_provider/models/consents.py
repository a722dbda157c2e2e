"""Remembered consent, and how the user signed in for an ID token
(docs/decisions/0014-oauth-authorize-and-consent.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from oauth2_provider.settings import oauth2_settings


class ConsentQuerySet(models.QuerySet["Consent"]):
    def live(self) -> ConsentQuerySet:
        """Consents still in force: not revoked."""
        return self.filter(revoked_at__isnull=True)

    def authorized_by(self, user: Any) -> ConsentQuerySet:
        """The applications `user` authorized, most recent first, each with `has_active_tokens`:
        an unexpired access token, or a refresh token the token endpoint would still take."""
        from oauth2_provider.models import (
            get_access_token_model,
            get_refresh_token_model,
            refresh_token_expire_timedelta,
        )

        now = timezone.now()
        live_access = get_access_token_model().objects.filter(
            user=OuterRef("user"), application=OuterRef("application"), expires__gt=now
        )
        # The toolkit refuses a refresh token without its access token, or past its lifetime
        # counted from that access token's expiry.
        live_refresh = get_refresh_token_model().objects.filter(
            user=OuterRef("user"),
            application=OuterRef("application"),
            revoked__isnull=True,
            access_token__isnull=False,
        )
        lifetime = refresh_token_expire_timedelta()
        if lifetime:
            live_refresh = live_refresh.filter(access_token__expires__gt=now - lifetime)
        return (
            self.live()
            .filter(user=user)
            .select_related("application")
            .annotate(has_active_tokens=Exists(live_access) | Exists(live_refresh))
            .order_by("-last_authorized_at", "-id")
        )


class Consent(models.Model):
    """A user's standing agreement that an application may have the listed scopes.

    At most one live consent per user and application; revoking keeps the row (with
    `revoked_at`) as history, and a later agreement starts a new one.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_consents"
    )
    application = models.ForeignKey(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, related_name="consents"
    )
    scopes: models.TextField[str, str] = models.TextField(
        help_text="Space-separated scopes the user agreed to, sorted."
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="First authorized.")
    updated_at = models.DateTimeField(auto_now=True)
    last_authorized_at = models.DateTimeField(help_text="Last time the application was authorized.")
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ConsentQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "application"],
                condition=Q(revoked_at__isnull=True),
                name="oauth_consent_live_unique",
                violation_error_code="consent_exists",
                violation_error_message="This user already has a live consent for this application.",
            ),
        ]
        indexes = [
            # The user's list of authorized applications, most recent first.
            models.Index(
                fields=["user", "-last_authorized_at"],
                condition=Q(revoked_at__isnull=True),
                name="oauth_consent_user_live_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} → {self.application_id}: {self.scopes}"

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    def covers(self, scopes: list[str] | set[str]) -> bool:
        """Every scope asked for is already agreed to."""
        return set(scopes) <= set(self.scope_list)


class IDTokenAuthentication(models.Model):
    """How the user had authenticated when an ID token was issued (OIDC Core §2: `auth_time`,
    `amr`, `acr`), so an ID token refreshed from it (§12.2) carries the same sign-in rather than
    the refresh time."""

    id_token = models.OneToOneField(
        oauth2_settings.ID_TOKEN_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="authentication",
    )
    auth_time = models.DateTimeField()
    amr = models.JSONField(default=list, blank=True, help_text="RFC 8176 method references.")
    acr: models.CharField[str, str] = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"ID token {self.id_token_id} at {self.auth_time:%Y-%m-%d %H:%M:%S}"
