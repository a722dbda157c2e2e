"""The keys that sign ID tokens, and their rotation (docs/decisions/0013-oauth-keys-and-discovery.md)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class SigningKey(models.Model):
    """An RSA key published in the JWKS from the moment it is added; at most one signs.

    `next` keys are published but do not sign yet, so verifiers have fetched them before the
    first token they sign exists; the `active` key signs; `retired` keys no longer sign but stay
    published until `publish_until`, when every token they signed has expired.
    """

    class State(models.TextChoices):
        NEXT = "next", "next: published, not signing yet"
        ACTIVE = "active", "active: signs new tokens"
        RETIRED = "retired", "retired: published until publish_until"

    class Algorithm(models.TextChoices):
        RS256 = "RS256", "RS256"

    kid: models.CharField[str, str] = models.CharField(
        max_length=64, unique=True, help_text="RFC 7638 JWK thumbprint (SHA-256, base64url)."
    )
    algorithm: models.CharField[str, str] = models.CharField(
        max_length=8, choices=Algorithm.choices, default=Algorithm.RS256
    )
    state: models.CharField[str, str] = models.CharField(
        max_length=8, choices=State.choices, default=State.NEXT
    )
    private_key_encrypted: models.TextField[str, str] = models.TextField(
        editable=False, help_text="The PEM private key, Fernet-encrypted (accounts.encryption)."
    )
    created_at = models.DateTimeField(default=timezone.now, help_text="Published since.")
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    publish_until = models.DateTimeField(
        null=True, blank=True, help_text="A retired key leaves the JWKS after this moment."
    )

    class Meta:
        verbose_name = "signing key"
        constraints = [
            models.UniqueConstraint(
                fields=["state"], condition=Q(state="active"), name="oauth_signing_key_one_active"
            ),
            models.CheckConstraint(
                condition=~Q(state="active") | Q(activated_at__isnull=False),
                name="oauth_signing_key_active_has_activated_at",
            ),
            models.CheckConstraint(
                condition=~Q(state="retired") | Q(retired_at__isnull=False, publish_until__isnull=False),
                name="oauth_signing_key_retired_has_publish_until",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kid} ({self.state})"
