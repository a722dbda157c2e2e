"""Re-encrypt every stored secret under the first encryption key (exit status 1 if any is unreadable).

manage.py secrets_reencrypt [--batch-size N]

Run it once every process has the new key (after rolling), and before removing an old key from
`DJANGO_SECRET_KEY_FALLBACKS` or `MFA_ENCRYPTION_KEYS` (docs/operations.md). Idempotent.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services.secrets import DEFAULT_BATCH_SIZE, ReencryptionCounts, secrets_reencrypt

ALL_UNDER_FIRST_KEY = "Every stored secret is under the first key: older keys are no longer needed for them."


def _ids(counts: ReencryptionCounts) -> str:
    return ", ".join(counts.failed)


def _summary(label: str, counts: ReencryptionCounts) -> str:
    return (
        f"{label}: {counts.reencrypted} re-encrypted, {counts.current} already under the first key, "
        f"{len(counts.failed)} could not be decrypted."
    )


class Command(BaseCommand):
    help = (
        "Re-encrypt the stored second-factor secrets and OIDC signing keys under the first key of "
        "MFA_ENCRYPTION_KEYS (or DJANGO_SECRET_KEY), so that older keys can be removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Authenticators locked and rewritten per transaction (default {DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        try:
            result = secrets_reencrypt(batch_size=batch_size)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        self.stdout.write(_summary("Authenticators", result.authenticators))
        self.stdout.write(_summary("Signing keys", result.signing_keys))
        if result.authenticators.failed:
            self.stderr.write(f"Authenticators not decrypted (ids): {_ids(result.authenticators)}")
        if result.signing_keys.failed:
            self.stderr.write(f"Signing keys not decrypted (kids): {_ids(result.signing_keys)}")
        if result.failed_count:
            raise CommandError(
                f"{result.failed_count} stored values cannot be decrypted with any configured key and were "
                "left as they are. Keep the old keys configured; if the key they were encrypted with was "
                "removed, add it back and run this again. Without it they are lost: the user enrols that "
                "factor again, and a signing key is replaced with `oidc_keys`.",
                returncode=1,
            )
        self.stdout.write(ALL_UNDER_FIRST_KEY)
