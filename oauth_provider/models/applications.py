"""Our swapped django-oauth-toolkit Application (see docs/decisions/0002-oauth-application-model.md)."""

from __future__ import annotations

from django.db import models
from oauth2_provider.models import AbstractApplication


class Application(AbstractApplication):
    """An OAuth client, with the RFC 7591 metadata and the per-client policy the toolkit lacks."""

    # RFC 7591 §2 client metadata shown on the consent page and in the admin.
    client_uri: models.URLField[str, str] = models.URLField(
        blank=True, help_text="Home page of the application."
    )
    logo_uri: models.URLField[str, str] = models.URLField(
        blank=True, help_text="Logo shown on the consent page."
    )
    policy_uri: models.URLField[str, str] = models.URLField(
        blank=True, help_text="Privacy policy of the application."
    )
    tos_uri: models.URLField[str, str] = models.URLField(
        blank=True, help_text="Terms of service of the application."
    )
    contacts = models.JSONField(
        default=list, blank=True, help_text="E-mail addresses of the people responsible."
    )
    software_id: models.CharField[str, str] = models.CharField(max_length=255, blank=True)
    software_version: models.CharField[str, str] = models.CharField(max_length=64, blank=True)
    # Per-client policy.
    allowed_scopes: models.TextField[str, str] = models.TextField(
        blank=True,
        help_text="Space-separated scopes this client may request; empty means the default scopes.",
    )
    require_pkce: models.BooleanField[bool, bool] = models.BooleanField(
        default=True, help_text="Require PKCE (S256). Always required for public clients."
    )

    class Meta(AbstractApplication.Meta):
        verbose_name = "application"
        indexes = [models.Index(fields=["created"], name="oauth_app_created_idx")]
