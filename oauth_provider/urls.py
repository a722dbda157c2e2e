"""The authorization server's routes under `/o/` (docs/decisions/0015-oauth-tokens-and-grants.md).

An explicit list in the toolkit's namespace and with its URL names (its discovery views reverse
them), pointing at our views where we add rules. What the toolkit's own `oauth2_provider.urls`
adds beyond this is left out on purpose: its application-management pages (any signed-in user
could register a client there, past the registration policy of oauth_provider.redirect_uris and
oauth_provider.services.registration), its authorized-token pages (ours are under
/accounts/applications/), and its copies of the discovery documents (ours are at the site root, the issuer).
"""

from __future__ import annotations

from django.urls import path
from oauth2_provider import views as toolkit_views

from oauth_provider.views import authorize, device, metadata, registration, tokens

app_name = "oauth2_provider"

urlpatterns = [
    path("authorize/", authorize.AuthorizeView.as_view(), name="authorize"),
    path("token/", tokens.TokenView.as_view(), name="token"),
    path("revoke_token/", tokens.RevokeTokenView.as_view(), name="revoke-token"),
    path("introspect/", tokens.IntrospectTokenView.as_view(), name="introspect"),
    path("userinfo/", tokens.UserInfoView.as_view(), name="user-info"),
    path("logout/", toolkit_views.RPInitiatedLogoutView.as_view(), name="rp-initiated-logout"),
    path(".well-known/jwks.json", metadata.JwksView.as_view(), name="jwks-info"),
    # The device authorization grant (RFC 8628).
    path(
        "device-authorization/",
        device.DeviceAuthorizationView.as_view(),
        name="device-authorization",
    ),
    path("device/", device.DeviceUserCodeView.as_view(), name="device"),
    path(
        "device-confirm/<slug:client_id>/<slug:user_code>",
        device.DeviceConfirmView.as_view(),
        name="device-confirm",
    ),
    path(
        "device-grant-status/<slug:client_id>/<slug:user_code>",
        device.DeviceGrantStatusView.as_view(),
        name="device-grant-status",
    ),
    # Dynamic client registration (RFC 7591) and client configuration (RFC 7592).
    path("register/", registration.ClientRegistrationView.as_view(), name="dcr-register"),
    path(
        "register/<str:client_id>/",
        registration.ClientConfigurationView.as_view(),
        name="dcr-register-management",
    ),
]
