"""One-time codes e-mailed as a fallback second factor (docs/decisions/0012-mfa-and-step-up.md)."""

from __future__ import annotations

import uuid

from django.db import models

from accounts.models.users import User


class EmailCode(models.Model):
    """A 6-digit code e-mailed to the user; only its keyed hash is stored, and it works once."""

    class Purpose(models.TextChoices):
        SIGN_IN = "sign_in", "Second factor of a sign-in"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="email_codes")
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.SIGN_IN)
    code_hash = models.CharField(max_length=64, help_text="HMAC-SHA256 of the code, keyed with SECRET_KEY.")
    sent_to = models.EmailField(max_length=254)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    failed_attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ("-created_at",)
        indexes = [
            models.Index(
                fields=["user", "purpose", "created_at"],
                name="accounts_emailcode_user_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"e-mail code for {self.user_id} ({self.purpose})"
