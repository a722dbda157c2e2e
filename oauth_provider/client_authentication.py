"""The client a request to the token, revocation, introspection or device authorization endpoint
names, read from the request alone, without a database query (docs/decisions/0015).

A client names itself with HTTP Basic credentials (RFC 6749 §2.3.1, `client_secret_basic`) or with
`client_id` in the body (`client_secret_post`, or a public client). The rate limits
(oauth_provider.rate_limits) count requests per named client; the endpoints refuse a request whose
two names disagree.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_plus

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, UnreadablePostError
from django.http.multipartparser import MultiPartParserError

# RFC 6749 §5.2: a failed client authentication is challenged with the scheme clients use (Basic,
# RFC 7617), whichever way the client sent its credentials; Bearer is no client authentication.
CLIENT_AUTHENTICATION_CHALLENGE = 'Basic realm="oauth"'


def basic_client_id(request: HttpRequest) -> str | None:
    """The client ID of the request's HTTP Basic credentials; None without readable ones.

    The scheme is case-insensitive (RFC 9110 §11.1); the ID is form-encoded (RFC 6749 §2.3.1). The
    secret is left where it is: checking it is the validator's job, with the database.
    """
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, separator, _secret = decoded.partition(":")
    if not separator:
        return None
    return unquote_plus(client_id)


def body_client_id(request: HttpRequest) -> str:
    """The body's `client_id`; empty when there is none, or the body cannot be read as a form (the
    view meets the same error and answers it)."""
    try:
        return str(request.POST.get("client_id", ""))
    except (SuspiciousOperation, MultiPartParserError, UnreadablePostError):  # too big, too many fields…
        return ""


def requested_client_id(request: HttpRequest) -> str:
    """The client the request says it comes from: its Basic credentials', else its body's."""
    return basic_client_id(request) or body_client_id(request)


def client_ids_disagree(request: HttpRequest) -> bool:
    """Whether the Basic credentials and the body's `client_id` name two different clients."""
    from_basic = basic_client_id(request)
    from_body = body_client_id(request)
    return from_basic is not None and bool(from_body) and from_body != from_basic
