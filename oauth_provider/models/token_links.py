"""What the toolkit's tokens do not remember: where a refresh-token family came from, and when.

The toolkit groups every refresh token rotated from one grant under a `token_family` UUID, but
keeps neither the authorization code the family was issued for nor the moment it started. Both
are needed: a code redeemed twice must revoke every token issued from it (RFC 6749 §4.1.2), and
a family must end a fixed time after it started, however often it rotates
(docs/decisions/0015-oauth-tokens-and-grants.md).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class TokenFamily(models.Model):
    """One refresh-token family: its start, and the SHA-256 of the code it was issued for."""

    family = models.UUIDField(primary_key=True, help_text="The toolkit's RefreshToken.token_family.")
    application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    grant_type = models.CharField(max_length=64)
    # Only a checksum: the code itself is a credential until it expires.
    authorization_code_checksum = models.CharField(max_length=64, null=True, blank=True, unique=True)
    started_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "token family"
        verbose_name_plural = "token families"
        indexes = [models.Index(fields=["started_at"], name="oauth_token_family_started_idx")]

    def __str__(self) -> str:
        return f"Token family {self.family}"
