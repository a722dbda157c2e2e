"""OpenAPI descriptions of the accounts app's authentication (drf-spectacular extensions)."""

from __future__ import annotations

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.contrib.django_oauth_toolkit import DjangoOAuthToolkitScheme
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class DeviceSessionJWTScheme(SimpleJWTScheme):
    target_class = "accounts.authentication.DeviceSessionJWTAuthentication"
    name = "jwtAuth"


class MFARequiredOAuth2Scheme(DjangoOAuthToolkitScheme):
    target_class = "accounts.authentication.MFARequiredOAuth2Authentication"


class MFARequiredSessionScheme(SessionScheme):
    target_class = "accounts.authentication.MFARequiredSessionAuthentication"
