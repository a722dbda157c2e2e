"""The toolkit's OAuth2Validator with the project's rules (docs/decisions/0015-oauth-tokens-and-grants.md).

Claims come from oauth_provider.claims; token rules (deactivated users, authorization-code
reuse, refresh-token reuse, revocation, audit) are written here.
"""

from __future__ import annotations

from oauth2_provider.oauth2_validators import OAuth2Validator as ToolkitOAuth2Validator

from oauth_provider.claims import ClaimsValidatorMixin


class OAuth2Validator(ClaimsValidatorMixin, ToolkitOAuth2Validator):
    pass
