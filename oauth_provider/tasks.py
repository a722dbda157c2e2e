"""Celery tasks of the oauth_provider app: small adapters around services."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="oauth_provider.signing_keys_prune")
def signing_keys_prune() -> list[str]:
    """Delete retired signing keys past `publish_until` (idempotent: a second run finds none)."""
    from oauth_provider.services.signing_keys import signing_keys_prune as prune

    return prune()


@shared_task(name="oauth_provider.tokens_clear_expired")
def tokens_clear_expired() -> dict[str, int]:
    """Delete expired OAuth tokens, codes and device codes in short batches (idempotent)."""
    from oauth_provider.services.tokens import tokens_clear_expired as clear

    return clear()
