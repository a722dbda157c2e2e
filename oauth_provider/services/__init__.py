"""Writes of the oauth_provider app, one module per subdomain.

`applications` holds the clients (create, update, rotate the secret, delete); `tokens` token
families, reuse detection, revocation, the audit of token events and the cleanup of expired rows;
`consents` a user's consent to a client's scopes; `registration` dynamic client registration and
its initial access tokens; `signing_keys` the keys that sign ID tokens and their rotation.
"""

from oauth_provider.services.applications import (
    UPDATABLE_FIELDS,
    IssuedClient,
    application_create,
    application_delete,
    application_rotate_secret,
    application_update,
    client_summary,
)
from oauth_provider.services.tokens import Revocable, token_expired, token_revoke

__all__ = [
    "UPDATABLE_FIELDS",
    "IssuedClient",
    "Revocable",
    "application_create",
    "application_delete",
    "application_rotate_secret",
    "application_update",
    "client_summary",
    "token_expired",
    "token_revoke",
]
