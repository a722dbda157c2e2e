"""Writes on consent: a user agreeing to an application's scopes, and taking that back
(docs/decisions/0014-oauth-authorize-and-consent.md)."""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ObjectDoesNotExist
from django.db import IntegrityError, transaction
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_device_grant_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

from accounts.models import User
from audit.services import audit_record
from oauth_provider.models import Application, Consent


class ConsentNotFound(ObjectDoesNotExist):
    """The user has no live consent for that application."""


def _live_consent_for_update(*, user: User, application: Application) -> Consent | None:
    return Consent.objects.live().select_for_update().filter(user=user, application=application).first()


@transaction.atomic
def consent_grant(*, user: User, application: Application, scopes: Iterable[str], prompted: bool) -> Consent:
    """Remember that `user` lets `application` have `scopes`, on top of what they agreed to before.

    `prompted` says the user answered the consent page; an authorization that needed no page (a
    trusted client, or scopes already agreed to) only moves `last_authorized_at`, and is audited
    only when it widens the consent.
    """
    requested = sorted(set(scopes))
    now = timezone.now()
    consent = _live_consent_for_update(user=user, application=application)
    created = consent is None
    if consent is None:
        consent = Consent(
            user=user, application=application, scopes=" ".join(requested), last_authorized_at=now
        )
        # The database's unique constraint decides between two concurrent first authorizations.
        consent.full_clean(validate_constraints=False)
        try:
            with transaction.atomic():
                consent.save()
        except IntegrityError:
            consent = _live_consent_for_update(user=user, application=application)
            if consent is None:
                raise
            created = False
    added = [] if created else sorted(set(requested) - set(consent.scope_list))
    if not created:
        consent.scopes = " ".join(sorted(set(consent.scope_list) | set(requested)))
        consent.last_authorized_at = now
        consent.full_clean()
        consent.save(update_fields=["scopes", "last_authorized_at", "updated_at"])
    if created or added or prompted:
        audit_record(
            action="oauth.consent.granted",
            actor=user,
            target=consent,
            metadata={
                "client_id": application.client_id,
                "scopes": requested,
                "added_scopes": requested if created else added,
                "consented_scopes": consent.scope_list,
                "prompted": prompted,
                "trusted_client": application.skip_authorization,
            },
        )
    return consent


@transaction.atomic
def consent_revoke(*, user: User, application: Application, actor: User | None = None) -> Consent:
    """End `user`'s consent for `application`, and every token and code it holds for them.

    Raises ConsentNotFound (and changes nothing) when there is no live consent.
    """
    consent = _live_consent_for_update(user=user, application=application)
    if consent is None:
        raise ConsentNotFound("You have not authorized this application.")
    consent.revoked_at = timezone.now()
    consent.full_clean()
    consent.save(update_fields=["revoked_at", "updated_at"])
    _revoke_tokens(user=user, application=application)
    audit_record(
        action="oauth.consent.revoked",
        actor=actor or user,
        target=consent,
        metadata={"client_id": application.client_id, "scopes": consent.scope_list},
    )
    return consent


def _revoke_tokens(*, user: User, application: Application) -> None:
    """Refresh-token families (with their access tokens), then any access token, ID token,
    authorization code and approved device code (RFC 8628) left for this user and client."""
    refresh_token_model = get_refresh_token_model()
    families = (
        refresh_token_model.objects.filter(user=user, application=application, revoked__isnull=True)
        .values_list("token_family", flat=True)
        .distinct()
    )
    for family in list(families):
        refresh_token_model.revoke_family(family)
    for refresh_token in refresh_token_model.objects.filter(
        user=user, application=application, revoked__isnull=True
    ):
        refresh_token.revoke()  # tokens issued before families existed
    get_access_token_model().objects.filter(user=user, application=application).delete()
    get_id_token_model().objects.filter(user=user, application=application).delete()
    get_grant_model().objects.filter(user=user, application=application).delete()
    get_device_grant_model().objects.filter(user=user, client_id=application.client_id).delete()
