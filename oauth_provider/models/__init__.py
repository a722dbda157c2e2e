"""The oauth_provider app's models: one module per topic."""

from oauth_provider.models.applications import Application
from oauth_provider.models.consents import Consent, IDTokenAuthentication
from oauth_provider.models.registration import ClientRegistration, InitialAccessToken
from oauth_provider.models.signing_keys import SigningKey
from oauth_provider.models.token_links import TokenFamily

__all__ = [
    "Application",
    "ClientRegistration",
    "Consent",
    "IDTokenAuthentication",
    "InitialAccessToken",
    "SigningKey",
    "TokenFamily",
]
