"""The redirect-URI policy, in one place (docs/decisions/0016-oauth-client-registration-and-admin.md).

Every path that creates or changes a client asks it: the Application model's `clean()` (so the
admin forms and the services), and dynamic client registration. Matching a requested URI against
the registered ones is exact (the toolkit's `check_redirect_to_uri_allowed`, RFC 9700 §2.1); this
module decides which URIs may be registered at all:

- absolute URIs, without a fragment (RFC 6749 §3.1.2), credentials or wildcards (RFC 9700 §4.1.3);
- `https` anywhere;
- plain `http` only on loopback (RFC 8252 §7.3: the IP literals `127.0.0.1` and `[::1]`, where the
  toolkit then accepts any port at authorization time), and on `localhost` while
  `OAUTH_REDIRECT_URI_ALLOW_LOCALHOST` is on (RFC 8252 §8.3 discourages it; its port must match);
- private-use schemes of native apps named as a reversed domain (`com.example.app:/callback`,
  RFC 8252 §7.1), never a scheme a browser gives its own meaning (`javascript:`, `data:`, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from oauth2_provider.validators import AllowedURIValidator

MAX_URI_LENGTH = 2000
MAX_REDIRECT_URIS = 20
# Shown in messages; a longer URI is cut.
SHOWN_URI_LENGTH = 120

LOOPBACK_IP_HOSTS = frozenset({"127.0.0.1", "::1"})  # urlsplit's hostname: no brackets
LOCALHOST = "localhost"
# Schemes with a meaning of their own in browsers or operating systems: never a callback.
FORBIDDEN_SCHEMES = frozenset(
    {
        "about",
        "blob",
        "chrome",
        "data",
        "file",
        "filesystem",
        "ftp",
        "intent",
        "javascript",
        "mailto",
        "sms",
        "tel",
        "urn",
        "vbscript",
        "view-source",
        "ws",
        "wss",
    }
)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*$")
_WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def localhost_allowed() -> bool:
    """Whether `http://localhost` redirect URIs may be registered (RFC 8252 §8.3)."""
    return bool(getattr(settings, "OAUTH_REDIRECT_URI_ALLOW_LOCALHOST", True))


def _shown(uri: str) -> str:
    return uri if len(uri) <= SHOWN_URI_LENGTH else f"{uri[:SHOWN_URI_LENGTH]}…"


def _refuse(message: str, code: str, uri: str) -> ValidationError:
    return ValidationError(message, code=code, params={"uri": _shown(uri)})


def redirect_uri_validate(uri: str) -> None:
    """Refuse a URI the policy does not allow, with a `ValidationError` naming why (its `code`)."""
    if not isinstance(uri, str) or not uri:
        raise ValidationError("A redirect URI must be a non-empty string.", code="redirect_uri_invalid")
    if len(uri) > MAX_URI_LENGTH:
        raise _refuse(
            f"Redirect URI %(uri)s is longer than {MAX_URI_LENGTH} characters.", "redirect_uri_too_long", uri
        )
    if _WHITESPACE_OR_CONTROL.search(uri):
        raise _refuse(
            "Redirect URI %(uri)s contains spaces or control characters.", "redirect_uri_invalid", uri
        )
    if "*" in uri:
        raise _refuse(
            "Redirect URI %(uri)s contains a wildcard: register every URI exactly.",
            "redirect_uri_wildcard",
            uri,
        )
    if "#" in uri:  # RFC 6749 §3.1.2: no fragment, not even an empty one
        raise _refuse("Redirect URI %(uri)s must not have a fragment (#).", "redirect_uri_fragment", uri)
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise _refuse("Redirect URI %(uri)s is not a valid URI.", "redirect_uri_invalid", uri) from None
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if not parts.scheme or not _SCHEME.match(scheme):
        raise _refuse(
            "Redirect URI %(uri)s must be an absolute URI with a lower-case scheme (such as https://).",
            "redirect_uri_not_absolute",
            uri,
        )
    if scheme in FORBIDDEN_SCHEMES:
        raise _refuse(
            "Redirect URI %(uri)s uses a scheme that cannot be a callback.",
            "redirect_uri_scheme_forbidden",
            uri,
        )
    if "@" in parts.netloc:
        raise _refuse(
            "Redirect URI %(uri)s must not carry a user name or password.", "redirect_uri_userinfo", uri
        )
    if scheme == "http":
        _http_validate(uri, host=parts.hostname or "", port=port)
    elif scheme != "https" and "." not in scheme:
        # RFC 8252 §7.1: a private-use scheme is a domain name the app's owner controls, reversed.
        raise _refuse(
            "Redirect URI %(uri)s: a native app's own scheme must be a reversed domain name, "
            "such as com.example.app:/callback.",
            "redirect_uri_private_scheme",
            uri,
        )
    try:
        AllowedURIValidator([scheme], name="redirect URI", allow_path=True, allow_query=True)(uri)
    except ValidationError:
        raise _refuse("Redirect URI %(uri)s is not a valid URI.", "redirect_uri_invalid", uri) from None


def _http_validate(uri: str, *, host: str, port: int | None) -> None:
    if host in LOOPBACK_IP_HOSTS:
        return
    if host == LOCALHOST:
        if localhost_allowed():
            return
        raise _refuse(
            "Redirect URI %(uri)s: use the loopback address http://127.0.0.1 (or http://[::1]) "
            "instead of localhost.",
            "redirect_uri_localhost",
            uri,
        )
    raise _refuse(
        "Redirect URI %(uri)s must use https: plain http is allowed only on the loopback addresses "
        "127.0.0.1 and [::1]" + (" and localhost." if localhost_allowed() else "."),
        "redirect_uri_not_https",
        uri,
    )


def redirect_uri_is_allowed(uri: str) -> bool:
    """Whether the policy admits `uri` (for the authorization endpoint's second look at a request)."""
    try:
        redirect_uri_validate(uri)
    except ValidationError:
        return False
    return True


def redirect_uris_validate(uris: Iterable[str]) -> None:
    """Refuse a list of URIs with every URI's problem at once (a `ValidationError` list)."""
    uris = list(uris)
    errors: list[ValidationError] = []
    if len(uris) > MAX_REDIRECT_URIS:
        errors.append(
            ValidationError(
                f"Register at most {MAX_REDIRECT_URIS} redirect URIs.", code="redirect_uris_too_many"
            )
        )
    seen: set[str] = set()
    for uri in uris:
        if uri in seen:
            errors.append(_refuse("Redirect URI %(uri)s is listed twice.", "redirect_uri_duplicate", uri))
            continue
        seen.add(uri)
        try:
            redirect_uri_validate(uri)
        except ValidationError as error:
            errors.extend(error.error_list)
    if errors:
        raise ValidationError(errors)


def redirect_uri_schemes(uris: Iterable[str]) -> set[str]:
    """The schemes of `uris` that the policy admits: what a redirect to this client may use."""
    return {uri.split(":", 1)[0] for uri in uris if redirect_uri_is_allowed(uri)}
