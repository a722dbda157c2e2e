"""ID token and userinfo claims (OpenID Connect Core §5.1), mapped from the user model.

A validator mixin: oauth_provider.validators.OAuth2Validator is built from it.
"""

from __future__ import annotations


class ClaimsValidatorMixin:
    """Standard claims per scope, and `acr` / `amr` / `auth_time` from the sign-in."""
