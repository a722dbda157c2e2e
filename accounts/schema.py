"""OpenAPI descriptions of the accounts app's authentication (drf-spectacular extensions)."""

from __future__ import annotations

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class DeviceSessionJWTScheme(SimpleJWTScheme):
    target_class = "accounts.authentication.DeviceSessionJWTAuthentication"
    name = "jwtAuth"
