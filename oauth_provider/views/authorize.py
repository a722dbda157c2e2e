"""The authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2): the request is checked, the user
signs in through our own pages (MFA included), and consents when it is needed
(docs/decisions/0014-oauth-authorize-and-consent.md).

The order matters:

1. The client and its redirect URI are checked before anything else. If either is wrong the user
   sees an error page (400) and is never redirected (RFC 6749 §4.1.2.1), not even to sign in.
2. Every other error goes back to that redirect URI with `error`, `state` and `iss` (RFC 9207).
3. Sign-in: `prompt=login` (or `select_account`) and a `max_age` the session's last
   authentication is older than sign the user out and send them through allauth's sign-in;
   `prompt=none` answers `login_required` instead (OIDC Core §3.1.2.6).
4. Consent: never for trusted clients (`skip_authorization`); otherwise the page is shown unless
   a remembered consent covers every requested scope, and always with `prompt=consent`;
   `prompt=none` answers `consent_required` instead.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from allauth.account.views import LoginView as AllauthLoginView
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.generic import View
from oauth2_provider.exceptions import FatalClientError, OAuthToolkitError
from oauth2_provider.oauth2_validators import is_valid_resource_uri
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import AuthorizationView as ToolkitAuthorizationView
from oauthlib.oauth2.rfc6749 import errors as oauth2_errors
from oauthlib.openid.connect.core.exceptions import InteractionRequired

from accounts.middleware import RESUME_SESSION_KEY, mfa_enrolment_redirect
from accounts.models import User
from accounts.selectors.mfa import user_mfa_missing
from oauth_provider.claims import SignIn, sign_in_of
from oauth_provider.models import Application, Consent
from oauth_provider.redirect_uris import redirect_uri_is_allowed
from oauth_provider.services.consents import consent_grant

# Recorded when we send the user to sign in for `prompt=login` or `max_age`: the sign-in that
# follows, for that same request, satisfies it (however small `max_age` is).
SIGN_IN_REQUEST_SESSION_KEY = "oauth_provider.sign_in_requested"
SIGN_IN_REQUEST_SECONDS = 15 * 60
FRESH_SIGN_IN_PROMPTS = frozenset({"login", "select_account"})
AUTHORIZE_FIELDS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "claims",
    "resource",
)


def with_issuer(uri: str, request: HttpRequest) -> str:
    """`uri` with the RFC 9207 `iss` parameter, replacing any `iss` already in its query."""
    parts = urlsplit(uri)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key != "iss"]
    query.append(("iss", oauth2_settings.oauth2_authorization_server_issuer(request)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _same_request(first: str, second: str) -> bool:
    one, other = urlsplit(first), urlsplit(second)
    return one.path == other.path and sorted(parse_qsl(one.query, keep_blank_values=True)) == sorted(
        parse_qsl(other.query, keep_blank_values=True)
    )


@method_decorator(never_cache, name="dispatch")
class AuthorizeView(ToolkitAuthorizationView):
    """The toolkit's authorization view with our sign-in, consent and error rules."""

    template_name = "oauth_provider/authorize.html"
    error_template_name = "oauth_provider/authorize_error.html"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.oauth2_data: dict[str, Any] = {}
        # Skips the toolkit's LoginRequiredMixin: the request is checked before the sign-in.
        return View.dispatch(self, request, *args, **kwargs)  # type: ignore[return-value]

    # --- GET: the authorization request --------------------------------------------------------

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            scopes, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as error:
            return self.error_response(error, application=None)
        application = Application.objects.get(client_id=credentials["client_id"])
        redirect_uri = credentials["redirect_uri"]
        if not redirect_uri_is_allowed(redirect_uri):
            # Registered before the policy existed, or changed behind its back: never redirect there.
            return self.error_page(
                "invalid_request",
                "The redirect URI is not allowed: https, or plain http on the loopback interface only.",
            )
        state = credentials.get("state")
        prompt = set(request.GET.get("prompt", "").split())
        if "none" in prompt and len(prompt) > 1:  # OIDC Core §3.1.2.1
            return self.redirect_error(
                oauth2_errors.InvalidRequestError(
                    description="prompt=none cannot be combined with other values.", state=state
                ),
                redirect_uri,
                application,
            )
        try:
            max_age = self._max_age(request)
        except ValueError:
            return self.redirect_error(
                oauth2_errors.InvalidRequestError(
                    description="max_age must be a whole number of seconds.", state=state
                ),
                redirect_uri,
                application,
            )
        resource = request.GET.getlist("resource")
        for resource_uri in resource:  # RFC 8707
            if not is_valid_resource_uri(resource_uri):
                return self.redirect_error(
                    oauth2_errors.CustomOAuth2Error(
                        error="invalid_target",
                        description="A resource must be an absolute URI with a scheme and host.",
                        state=state,
                    ),
                    redirect_uri,
                    application,
                )
        if resource:
            credentials["resource"] = resource
        if isinstance(credentials.get("ui_locales"), list):
            credentials["ui_locales"] = " ".join(credentials["ui_locales"])

        # Sign-in (OIDC Core §3.1.2.3).
        if not request.user.is_authenticated:
            if "none" in prompt:
                return self.redirect_error(
                    oauth2_errors.LoginRequired(state=state), redirect_uri, application
                )
            if "create" in prompt:  # OpenID Connect Prompt Create 1.0
                return self.redirect_to_sign_up(request)
            return self.redirect_to_sign_in(
                request, fresh=bool(prompt & FRESH_SIGN_IN_PROMPTS) or max_age is not None
            )
        sign_in = sign_in_of(request)
        if not self._sign_in_is_fresh_enough(request, prompt=prompt, max_age=max_age, sign_in=sign_in):
            if "none" in prompt:
                return self.redirect_error(
                    oauth2_errors.LoginRequired(state=state), redirect_uri, application
                )
            logout(request)
            return self.redirect_to_sign_in(request, fresh=True)

        # A role that requires a second factor the user has not set up (accounts.middleware).
        user = request.user
        if isinstance(user, User) and user_mfa_missing(user):
            if "none" in prompt:
                return self.redirect_error(
                    InteractionRequired(
                        description="The account must set up a second factor first.", state=state
                    ),
                    redirect_uri,
                    application,
                )
            return mfa_enrolment_redirect(request, user)
        request.session.pop(RESUME_SESSION_KEY, None)  # the interrupted request is back

        # Consent (OIDC Core §3.1.2.4).
        if self._consent_needed(user=user, application=application, scopes=scopes, prompt=prompt):
            if "none" in prompt:
                return self.redirect_error(
                    oauth2_errors.ConsentRequired(state=state), redirect_uri, application
                )
            return self.consent_page(request, application=application, scopes=scopes, credentials=credentials)
        return self.authorize(
            request,
            user=user,
            application=application,
            scopes=scopes,
            credentials=credentials,
            sign_in=sign_in,
            prompted=False,
        )

    def _max_age(self, request: HttpRequest) -> int | None:
        """`max_age` in seconds, None when absent; ValueError when it is not a whole number."""
        value = request.GET.get("max_age")
        if value is None or value == "":
            return None
        if not (value.isascii() and value.isdigit()):
            raise ValueError(value)
        return int(value)

    def _sign_in_is_fresh_enough(
        self, request: HttpRequest, *, prompt: set[str], max_age: int | None, sign_in: SignIn
    ) -> bool:
        asked: dict[str, Any] | None = request.session.get(SIGN_IN_REQUEST_SESSION_KEY)
        if (
            isinstance(asked, dict)
            and _same_request(str(asked.get("request", "")), request.get_full_path())
            and time.time() - float(asked.get("at", 0)) <= SIGN_IN_REQUEST_SECONDS
            and sign_in.auth_time is not None
            and sign_in.auth_time.timestamp() >= float(asked["at"])
        ):
            # The user signed in because this very request asked for it.
            del request.session[SIGN_IN_REQUEST_SESSION_KEY]
            return True
        if prompt & FRESH_SIGN_IN_PROMPTS:
            return False
        if max_age is None:
            return True
        # A session without allauth's records (it predates them) counts as too old.
        return sign_in.auth_time is not None and time.time() - sign_in.auth_time.timestamp() <= max_age

    def _consent_needed(
        self, *, user: User, application: Application, scopes: list[str], prompt: set[str]
    ) -> bool:
        if application.skip_authorization:  # a trusted first-party client
            return False
        if "consent" in prompt:
            return True
        consent = Consent.objects.live().filter(user=user, application=application).first()
        return consent is None or not consent.covers(scopes)

    # --- POST: the consent page's answer --------------------------------------------------------

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = self.get_form()
        if not request.user.is_authenticated:
            # The session ended while the page was open: sign in, then see the page again.
            fields = {name: request.POST[name] for name in AUTHORIZE_FIELDS if request.POST.get(name)}
            return redirect_to_login(
                f"{reverse('oauth2_provider:authorize')}?{urlencode(fields)}",
                resolve_url(self.get_login_url()),
            )
        if isinstance(request.user, User) and user_mfa_missing(request.user):
            return mfa_enrolment_redirect(request, request.user)
        if not form.is_valid():
            return self.error_page("invalid_request", "The authorization request is incomplete.")
        data = form.cleaned_data
        application = Application.objects.filter(client_id=data["client_id"]).first()
        if application is None:
            return self.error_page("invalid_client", "No application has this client ID.")
        redirect_uri = data["redirect_uri"]
        if not application.redirect_uri_allowed(redirect_uri) or not redirect_uri_is_allowed(redirect_uri):
            return self.error_page(
                "invalid_request", "This redirect URI is not registered for the application."
            )
        if not data.get("allow"):
            return self.redirect_error(
                oauth2_errors.AccessDeniedError(state=data.get("state") or None), redirect_uri, application
            )
        credentials: dict[str, Any] = {
            "client_id": data["client_id"],
            "redirect_uri": redirect_uri,
            "response_type": data.get("response_type"),
            "state": data.get("state") or None,
        }
        for name in ("code_challenge", "code_challenge_method", "nonce", "claims"):
            if data.get(name):
                credentials[name] = data[name]
        if data.get("resource"):  # RFC 8707; a hidden field anyone can edit, so checked again
            resource = data["resource"].split()
            if not all(is_valid_resource_uri(uri) for uri in resource):
                return self.redirect_error(
                    oauth2_errors.CustomOAuth2Error(
                        error="invalid_target",
                        description="A resource must be an absolute URI with a scheme and host.",
                        state=credentials["state"],
                    ),
                    redirect_uri,
                    application,
                )
            credentials["resource"] = resource
        return self.authorize(
            request,
            user=request.user,
            application=application,
            scopes=data["scope"].split(),
            credentials=credentials,
            sign_in=sign_in_of(request),
            prompted=True,
        )

    # --- answers ---------------------------------------------------------------------------------

    def authorize(
        self,
        request: HttpRequest,
        *,
        user: User,
        application: Application,
        scopes: list[str],
        credentials: dict[str, Any],
        sign_in: SignIn,
        prompted: bool,
    ) -> HttpResponse:
        """Issue the code (the toolkit checks the request once more) and remember the consent.

        oauthlib answers most refusals (a `plain` challenge, a scope or response type edited into
        the consent form) with a redirect carrying `error` instead of raising: the consent is
        remembered only with a code, in the code's transaction, so a refused request never lets a
        later `prompt=none` through (issue 12 item 6).
        """
        credentials["oauth_provider_sign_in"] = sign_in  # stored with the code (oauth_provider.claims)
        try:
            with transaction.atomic():
                uri, _headers, _body, _status = self.create_authorization_response(
                    request=request, scopes=" ".join(scopes), credentials=credentials, allow=True
                )
                if "code" in dict(parse_qsl(urlsplit(uri).query)):  # RFC 6749 §4.1.2
                    consent_grant(user=user, application=application, scopes=scopes, prompted=prompted)
        except OAuthToolkitError as error:
            return self.error_response(error, application)
        return self.redirect(uri, application)

    def consent_page(
        self,
        request: HttpRequest,
        *,
        application: Application,
        scopes: list[str],
        credentials: dict[str, Any],
    ) -> HttpResponse:
        descriptions = get_scopes_backend().get_all_scopes()
        claims = credentials.get("claims")  # oauthlib has parsed the JSON of the claims request
        self.oauth2_data = {
            **{name: credentials.get(name) for name in AUTHORIZE_FIELDS},
            "scope": scopes,
            "claims": json.dumps(claims) if isinstance(claims, dict) else claims,
            "resource": " ".join(credentials.get("resource") or []) or None,
        }
        logo_uri = application.logo_uri if urlsplit(application.logo_uri).scheme == "https" else ""
        response = render(
            request,
            self.template_name,
            {
                "application": application,
                "logo_uri": logo_uri,
                "scopes": [(scope, descriptions.get(scope, scope)) for scope in scopes],
                "form": self.get_form(),
                "switch_account_url": reverse("account_logout")
                + "?"
                + urlencode({"next": request.get_full_path()}),
            },
        )
        if logo_uri:  # the CSP allows images from our own origin only; the logo is the exception
            logo = urlsplit(logo_uri)
            response._csp_update = {"img-src": [f"{logo.scheme}://{logo.netloc}"]}  # type: ignore[attr-defined]
        return response

    def error_response(
        self, error: OAuthToolkitError, application: Application | None, **kwargs: Any
    ) -> HttpResponse:
        """Fatal errors (a bad client or redirect URI) are a page; the rest go back to the client."""
        oauthlib_error = error.oauthlib_error
        if isinstance(error, FatalClientError) or not oauthlib_error.redirect_uri:
            return self.error_page(oauthlib_error.error, oauthlib_error.description)
        if application is None:
            application = Application.objects.filter(client_id=oauthlib_error.client_id).first()
        return self.redirect_error(oauthlib_error, oauthlib_error.redirect_uri, application)

    def redirect_error(
        self, error: oauth2_errors.OAuth2Error, redirect_uri: str, application: Application | None
    ) -> HttpResponse:
        """The error response of RFC 6749 §4.1.2.1, with `iss` (RFC 9207 §2)."""
        separator = "&" if "?" in redirect_uri else "?"
        return self.redirect(
            with_issuer(redirect_uri + separator + error.urlencoded, self.request), application
        )

    def error_page(self, error: str, description: str) -> HttpResponse:
        return render(
            self.request,
            self.error_template_name,
            {"error": error, "description": description},
            status=400,
        )

    # --- where the user is sent -----------------------------------------------------------------

    def redirect_to_sign_in(self, request: HttpRequest, *, fresh: bool) -> HttpResponse:
        """allauth's sign-in page (second factor included), back to this same request."""
        if fresh:
            request.session[SIGN_IN_REQUEST_SESSION_KEY] = {
                "request": request.get_full_path(),
                "at": time.time(),
            }
        return redirect_to_login(request.get_full_path(), resolve_url(self.get_login_url()))

    def redirect_to_sign_up(self, request: HttpRequest) -> HttpResponse:
        """allauth's sign-up page, back to this request without `create` (Prompt Create 1.0 §4.1)."""
        parts = urlsplit(request.get_full_path())
        query = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "prompt":
                value = " ".join(item for item in value.split() if item != "create")
                if not value:
                    continue
            query.append((key, value))
        next_url = urlunsplit(parts._replace(query=urlencode(query)))
        return HttpResponseRedirect(f"{reverse('account_signup')}?{urlencode({'next': next_url})}")


class LoginHintLoginView(AllauthLoginView):
    """allauth's sign-in page, with the login field filled from the `login_hint` of the
    authorization request it returns to (OIDC Core §3.1.2.1)."""

    def get_initial(self) -> dict[str, Any]:
        initial: dict[str, Any] = super().get_initial()
        next_url = urlsplit(self.request.GET.get("next", ""))
        if next_url.path == reverse("oauth2_provider:authorize") and not next_url.netloc:
            hint = dict(parse_qsl(next_url.query)).get("login_hint", "").strip()
            if hint:
                initial["login"] = hint[:254]
        return initial
