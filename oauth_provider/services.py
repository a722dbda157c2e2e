"""Writes on OAuth clients."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from oauth2_provider.generators import generate_client_secret

from accounts.models import User
from oauth_provider.models import Application


@dataclass(frozen=True)
class IssuedClient:
    """A client together with its secret in clear, which exists only at this moment."""

    application: Application
    client_secret: str


@transaction.atomic
def application_create(
    *,
    name: str,
    owner: User | None,
    client_type: str = Application.CLIENT_CONFIDENTIAL,
    authorization_grant_type: str = Application.GRANT_AUTHORIZATION_CODE,
    redirect_uris: str = "",
    client_id: str | None = None,
    allowed_scopes: str = "",
    skip_authorization: bool = False,
) -> IssuedClient:
    """Register a client; the returned secret is stored only as a hash."""
    secret = generate_client_secret() if client_type == Application.CLIENT_CONFIDENTIAL else ""
    application = Application(
        name=name,
        user=owner,
        client_type=client_type,
        authorization_grant_type=authorization_grant_type,
        redirect_uris=redirect_uris,
        client_secret=secret,
        allowed_scopes=allowed_scopes,
        skip_authorization=skip_authorization,
        algorithm=Application.RS256_ALGORITHM,
    )
    if client_id:
        application.client_id = client_id
    application.full_clean()
    application.save()
    return IssuedClient(application=application, client_secret=secret)


@transaction.atomic
def application_rotate_secret(*, application: Application) -> IssuedClient:
    """Replace a confidential client's secret; the old one stops working at once."""
    secret = generate_client_secret()
    application.client_secret = secret
    application.save(update_fields=["client_secret", "updated"])
    return IssuedClient(application=application, client_secret=secret)
