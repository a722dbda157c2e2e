"""Our swapped django-oauth-toolkit Application (see docs/decisions/0002-oauth-application-model.md)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import models
from oauth2_provider.models import AbstractApplication
from oauth2_provider.scopes import get_scopes_backend

from oauth_provider.redirect_uris import redirect_uri_schemes, redirect_uris_validate

MAX_CONTACTS = 10
# RFC 7591 §2 metadata URIs: fetched or linked from our https pages, so https too.
METADATA_URI_FIELDS = ("client_uri", "logo_uri", "policy_uri", "tos_uri")


class Application(AbstractApplication):
    """An OAuth client, with the RFC 7591 metadata and the per-client policy the toolkit lacks."""

    # RFC 7591 §2 client metadata shown on the consent page and in the admin.
    client_uri: models.URLField[str, str] = models.URLField(
        blank=True, help_text="Home page of the application."
    )
    logo_uri: models.URLField[str, str] = models.URLField(
        blank=True, help_text="Logo shown on the consent page."
    )
    policy_uri: models.URLField[str, str] = models.URLField(
        blank=True, help_text="Privacy policy of the application."
    )
    tos_uri: models.URLField[str, str] = models.URLField(
        blank=True, help_text="Terms of service of the application."
    )
    contacts = models.JSONField(
        default=list, blank=True, help_text="E-mail addresses of the people responsible."
    )
    software_id: models.CharField[str, str] = models.CharField(max_length=255, blank=True)
    software_version: models.CharField[str, str] = models.CharField(max_length=64, blank=True)
    # Per-client policy.
    allowed_scopes: models.TextField[str, str] = models.TextField(
        blank=True,
        help_text="Space-separated scopes this client may request; empty means the default scopes.",
    )
    require_pkce: models.BooleanField[bool, bool] = models.BooleanField(
        default=True, help_text="Require PKCE (S256). Always required for public clients."
    )

    class Meta(AbstractApplication.Meta):
        verbose_name = "application"
        indexes = [models.Index(fields=["created"], name="oauth_app_created_idx")]

    @property
    def jwk_key(self) -> Any:
        """The key this client's ID tokens are signed with: for RS256, the active signing key.

        The toolkit reads it twice per ID token (the `kid` of the header, then the signature); the
        key is kept on the instance (one per request) so both are the same key even if a rotation
        lands in between. HS256 stays the toolkit's: the client secret.
        """
        if self.algorithm != self.RS256_ALGORITHM:
            return super().jwk_key
        if "_signing_jwk" not in self.__dict__:
            from oauth_provider.selectors.signing_keys import signing_key  # keys imports the models

            self.__dict__["_signing_jwk"] = signing_key().key
        return self.__dict__["_signing_jwk"]

    # --- validation: the redirect-URI policy (oauth_provider/redirect_uris.py) and client metadata ---

    def clean(self) -> None:
        """The toolkit's checks, with the redirect-URI policy's coded errors in place of its own."""
        errors: dict[str, list[ValidationError]] = {}
        try:
            super().clean()
        except ValidationError as error:
            errors = {field: list(field_errors) for field, field_errors in error.error_dict.items()}
        for field, policy_error in self._policy_errors().items():
            errors[field] = policy_error.error_list  # the policy's reasons replace the toolkit's
        if errors:
            raise ValidationError(errors)

    def _policy_errors(self) -> dict[str, ValidationError]:
        found: dict[str, ValidationError] = {}
        redirect_uris = self.redirect_uris.split()
        for field, uris in (
            ("redirect_uris", redirect_uris),
            ("post_logout_redirect_uris", self.post_logout_redirect_uris.split()),
        ):
            try:
                redirect_uris_validate(uris)
            except ValidationError as error:
                found[field] = error
        if not redirect_uris and self.authorization_grant_type in (
            self.GRANT_AUTHORIZATION_CODE,
            self.GRANT_IMPLICIT,
            self.GRANT_OPENID_HYBRID,
        ):
            found["redirect_uris"] = ValidationError(
                "Register at least one redirect URI for the authorization code grant.",
                code="redirect_uris_required",
            )
        if self.authorization_grant_type in (
            self.GRANT_IMPLICIT,
            self.GRANT_PASSWORD,
            self.GRANT_OPENID_HYBRID,
        ):
            found["authorization_grant_type"] = ValidationError(
                "This grant is not offered (RFC 9700 §2.1.2, §2.4): use the authorization code grant.",
                code="grant_type_forbidden",
            )
        for field in METADATA_URI_FIELDS:
            value = getattr(self, field)
            if value and not value.startswith("https://"):
                found[field] = ValidationError("Use an https:// address.", code="uri_not_https")
        if (contacts := self._contacts_error()) is not None:
            found["contacts"] = contacts
        known = set(get_scopes_backend().get_all_scopes())
        unknown = [scope for scope in self.allowed_scopes.split() if scope not in known]
        if unknown:
            found["allowed_scopes"] = ValidationError(
                "Unknown scopes: %(scopes)s.", code="scope_unknown", params={"scopes": " ".join(unknown)}
            )
        if self.client_type == self.CLIENT_PUBLIC and not self.require_pkce:
            found["require_pkce"] = ValidationError(
                "Public clients must use PKCE (RFC 9700 §2.1.1).", code="pkce_required_for_public_clients"
            )
        return found

    def _contacts_error(self) -> ValidationError | None:
        contacts: Any = self.contacts
        if not isinstance(contacts, list) or not all(isinstance(contact, str) for contact in contacts):
            return ValidationError("Contacts must be a list of e-mail addresses.", code="contacts_invalid")
        if len(contacts) > MAX_CONTACTS:
            return ValidationError(f"List at most {MAX_CONTACTS} contacts.", code="contacts_too_many")
        for contact in contacts:
            try:
                EmailValidator()(contact)
            except ValidationError:
                return ValidationError(
                    "%(contact)s is not an e-mail address.",
                    code="contact_invalid",
                    params={"contact": contact},
                )
        return None

    def get_allowed_schemes(self) -> list[str]:
        """Schemes a redirect to this client may use: https, and those of its registered URIs.

        The toolkit checks every redirect it sends (to `redirect_uris` and, on logout, to
        `post_logout_redirect_uris`) against this list. Its setting `ALLOWED_REDIRECT_URI_SCHEMES`
        stays https-only in production, where the loopback `http` of native apps (RFC 8252 §7.3)
        and their private-use schemes come from the client's own URIs, which the policy admitted.
        """
        uris = [*self.redirect_uris.split(), *self.post_logout_redirect_uris.split()]
        return ["https", *sorted(redirect_uri_schemes(uris) - {"https"})]
