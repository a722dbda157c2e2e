"""Writes on OAuth clients, each audited in its own transaction.

Redirect URIs and client metadata are checked by the model's `clean()` (the policy of
oauth_provider/redirect_uris.py), which every write here runs through `full_clean()`.
Dynamic client registration has its own services (oauth_provider/services/registration.py); the
admin's "Revoke" of a grant or token is `token_revoke` (oauth_provider/services/tokens.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from oauth2_provider.generators import generate_client_secret

from accounts.models import User
from audit.services import audit_record
from oauth_provider.models import Application

# What the admin (and registration) may change on a client through `application_update`.
UPDATABLE_FIELDS = frozenset(
    {
        "name",
        "user",
        "client_type",
        "authorization_grant_type",
        "redirect_uris",
        "post_logout_redirect_uris",
        "allowed_origins",
        "skip_authorization",
        "allowed_scopes",
        "require_pkce",
        "algorithm",
        "client_uri",
        "logo_uri",
        "policy_uri",
        "tos_uri",
        "contacts",
        "software_id",
        "software_version",
    }
)
# Space-separated lists: stored with single spaces, whatever the form's line breaks.
_URI_LIST_FIELDS = ("redirect_uris", "post_logout_redirect_uris", "allowed_origins", "allowed_scopes")


@dataclass(frozen=True)
class IssuedClient:
    """A client together with its secret in clear, which exists only at this moment."""

    application: Application
    client_secret: str


def _normalised(field: str, value: Any) -> Any:
    return " ".join(str(value).split()) if field in _URI_LIST_FIELDS else value


def _audit_value(value: Any) -> Any:
    if isinstance(value, models.Model):
        return str(value.pk)
    return value


def client_summary(application: Application) -> dict[str, Any]:
    """The identifying fields of a client for audit events (never its secret)."""
    return {"client_id": application.client_id, "client_name": application.name}


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
    require_pkce: bool = True,
    metadata: Mapping[str, Any] | None = None,
    actor: User | None = None,
) -> IssuedClient:
    """Register a client; the returned secret is stored only as a hash.

    `metadata`: other fields of `UPDATABLE_FIELDS` (post-logout URIs, RFC 7591 metadata, ...).
    """
    extra = dict(metadata or {})
    if unknown := set(extra) - UPDATABLE_FIELDS:
        raise ValueError(f"Not client fields: {sorted(unknown)}")
    secret = generate_client_secret() if client_type == Application.CLIENT_CONFIDENTIAL else ""
    application = Application(
        name=name,
        user=owner,
        client_type=client_type,
        authorization_grant_type=authorization_grant_type,
        redirect_uris=_normalised("redirect_uris", redirect_uris),
        client_secret=secret,
        allowed_scopes=_normalised("allowed_scopes", allowed_scopes),
        skip_authorization=skip_authorization,
        require_pkce=require_pkce,
        algorithm=Application.RS256_ALGORITHM,
    )
    for field, value in extra.items():
        setattr(application, field, _normalised(field, value))
    if client_id:
        application.client_id = client_id
    application.full_clean()
    application.save()
    audit_record(
        action="oauth.client.created",
        actor=actor,
        target=application,
        metadata={
            **client_summary(application),
            "client_type": application.client_type,
            "grant_type": application.authorization_grant_type,
            "trusted": application.skip_authorization,
        },
    )
    return IssuedClient(application=application, client_secret=secret)


@transaction.atomic
def application_update(
    *,
    application: Application,
    changes: Mapping[str, Any],
    actor: User | Application | None,
    via: str = "admin",
) -> Application:
    """Change a client's settings and metadata; every changed field is audited before/after."""
    if unknown := set(changes) - UPDATABLE_FIELDS:
        raise ValueError(f"Not updatable client fields: {sorted(unknown)}")
    stored = Application.objects.select_for_update().get(pk=application.pk)
    changed: dict[str, list[Any]] = {}
    for field, value in changes.items():
        value = _normalised(field, value)
        before = getattr(stored, field)
        if before != value:
            changed[field] = [_audit_value(before), _audit_value(value)]
        setattr(application, field, value)
    if changes.get("client_type") == Application.CLIENT_PUBLIC:
        application.client_secret = ""  # a public client has no secret to keep
    elif stored.client_type == Application.CLIENT_PUBLIC and "client_type" in changed:
        raise ValidationError(
            {
                "client_type": ValidationError(
                    "A public client cannot become confidential: it has no secret. Register a new client.",
                    code="client_type_change",
                )
            }
        )
    application.full_clean()
    if not changed:
        return application
    application.save()
    audit_record(
        action="oauth.client.updated",
        actor=actor,
        target=application,
        changes=changed,
        metadata={**client_summary(application), "via": via},
    )
    return application


@transaction.atomic
def application_rotate_secret(*, application: Application, actor: User | None = None) -> IssuedClient:
    """Replace a confidential client's secret; the old one stops working at once."""
    if application.client_type != Application.CLIENT_CONFIDENTIAL:
        raise ValidationError("A public client has no secret to rotate.", code="client_is_public")
    secret = generate_client_secret()
    application.client_secret = secret
    application.save(update_fields=["client_secret", "updated"])
    audit_record(
        action="oauth.client.secret_rotated",
        actor=actor,
        target=application,
        metadata=client_summary(application),
    )
    return IssuedClient(application=application, client_secret=secret)


@transaction.atomic
def application_delete(
    *, application: Application, actor: User | Application | None, via: str = "admin"
) -> None:
    """Delete a client with every grant and token it holds."""
    audit_record(
        action="oauth.client.deleted",
        actor=actor,
        target=application,
        metadata={**client_summary(application), "via": via},
    )
    application.delete()
