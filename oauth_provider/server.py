"""The oauthlib server the toolkit runs, without the grants RFC 9700 and OAuth 2.1 retire.

The implicit grant (and the hybrid response types, which also hand tokens to the front channel)
and the resource owner password grant are not routed at all: a request for them is answered
`unsupported_response_type` / `unsupported_grant_type` whatever its client row claims, and the
password grant never reaches a password hasher. PKCE accepts `S256` only (RFC 9700 §2.1.1):
`plain`, or a challenge without a method (which RFC 7636 §4.3 reads as `plain`), is refused
when the authorization request is checked, before any sign-in or consent.

The device authorization grant (RFC 8628) issues an ID token when `openid` was granted, as the
code grant and the refresh of a device grant's tokens do (OpenID Connect Core §3.1.3.3, §12.2):
oauthlib's device grant runs no token modifiers, so it gets OpenID Connect's as the other grants do.
"""

from __future__ import annotations

import json
from typing import Any

from oauthlib.common import Request as OAuthlibRequest
from oauthlib.oauth2.rfc6749 import errors
from oauthlib.oauth2.rfc8628.grant_types import DeviceCodeGrant as OAuth2DeviceCodeGrant
from oauthlib.openid import Server as OpenIDServer
from oauthlib.openid.connect.core.grant_types.base import GrantTypeBase as OpenIDGrantTypeBase

TOKEN_RESPONSE_TYPES = (
    "token",
    "id_token",
    "id_token token",
    "code token",
    "code id_token",
    "code id_token token",
)
RETIRED_GRANT_TYPES = ("password",)
DEVICE_CODE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"


class DeviceCodeGrant(OAuth2DeviceCodeGrant):
    """oauthlib's device grant, running its token modifiers before the tokens are saved, as the
    RFC 6749 grants do (so an ID token is saved with, and linked to, its access token)."""

    def create_token_response(
        self, request: OAuthlibRequest, token_handler: Any
    ) -> tuple[dict[str, str], str, int]:
        headers: dict[str, str] = self._get_default_headers()
        try:
            self.validate_token_request(request)
        except errors.OAuth2Error as error:
            headers.update(error.headers)
            return headers, error.json, error.status_code
        token = token_handler.create_token(request, self.refresh_token)
        for modifier in self._token_modifiers:
            token = modifier(token, token_handler, request)
        self.request_validator.save_token(token, request)
        return headers, json.dumps(token), 200


class OpenIDDeviceCodeGrant(OpenIDGrantTypeBase):
    """The device grant with an ID token when `openid` was granted (like oauthlib's OpenID grants)."""

    def __init__(self, request_validator: Any = None, **kwargs: Any) -> None:
        self.proxy_target = DeviceCodeGrant(request_validator=request_validator, **kwargs)
        self.register_token_modifier(self.add_id_token)


class Server(OpenIDServer):
    def __init__(self, request_validator: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(request_validator, *args, **kwargs)
        self.device_code_grant = OpenIDDeviceCodeGrant(request_validator, **kwargs)
        self._grant_types[DEVICE_CODE_GRANT_TYPE] = self.device_code_grant
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
