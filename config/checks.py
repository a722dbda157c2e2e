"""System checks of the configuration, run by `manage.py check` (`--deploy` for the ones here)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from config.key_material import configured_key_problems


@register(Tags.security, deploy=True)
def signing_keys_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The keys production mode refuses to start with, reported in any mode (docs/decisions/0003).

    Production mode never gets this far with such a key (config/settings.py refuses it first); a
    deployment checked with DJANGO_DEBUG still on learns about it here.
    """
    problems = configured_key_problems(
        secret_key=settings.SECRET_KEY,
        secret_key_fallbacks=list(settings.SECRET_KEY_FALLBACKS),
        jwt_signing_key=settings.SIMPLE_JWT["SIGNING_KEY"],
        oidc_rsa_private_key=settings.OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"],
        mfa_encryption_keys=list(getattr(settings, "MFA_ENCRYPTION_KEYS", [])),
        audit_chain_keys=list(getattr(settings, "AUDIT_CHAIN_KEYS", [])),
    )
    return [
        Error(
            f"{problem}.",
            hint="Set a new random value (for OIDC_RSA_PRIVATE_KEY, a PEM RSA key of at least 2048 bits).",
            id="config.E001",
        )
        for problem in problems
    ]
