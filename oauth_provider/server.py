"""The oauthlib server the toolkit runs, without the grants RFC 9700 and OAuth 2.1 retire.

The implicit grant (and the hybrid response types, which also hand tokens to the front channel)
and the resource owner password grant are not routed at all: a request for them is answered
`unsupported_response_type` / `unsupported_grant_type` whatever its client row claims, and the
password grant never reaches a password hasher. PKCE accepts `S256` only (RFC 9700 §2.1.1):
`plain`, or a challenge without a method (which RFC 7636 §4.3 reads as `plain`), is refused
when the authorization request is checked, before any sign-in or consent.
"""

from __future__ import annotations

from typing import Any

from oauthlib.openid import Server as OpenIDServer

TOKEN_RESPONSE_TYPES = (
    "token",
    "id_token",
    "id_token token",
    "code token",
    "code id_token",
    "code id_token token",
)
RETIRED_GRANT_TYPES = ("password",)


class Server(OpenIDServer):
    def __init__(self, request_validator: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(request_validator, *args, **kwargs)
        for response_type in TOKEN_RESPONSE_TYPES:
            # An unknown response type falls to the code grant, which refuses it with
            # unsupported_response_type unless it contains "code" (then the validator does).
            self._response_types.pop(response_type, None)
        for grant_type in RETIRED_GRANT_TYPES:
            # An unknown grant type falls to the code grant: unsupported_grant_type.
            self._grant_types.pop(grant_type, None)
        # The OpenID Connect grants wrap an OAuth 2 code grant (their `proxy_target`).
        for grant in (self.auth_grant, self.openid_connect_auth.proxy_target):
            grant._code_challenge_methods = {"S256": grant._code_challenge_methods["S256"]}
