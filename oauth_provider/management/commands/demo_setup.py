"""Create, idempotently, the demo staff account and demo OAuth client, and print their credentials.

The demo admin is an admin, so it must have a second factor (docs/decisions/0012-mfa-and-step-up.md):
it gets a TOTP authenticator, whose secret is printed with an `otpauth://` URI for an authenticator
app. The credentials are generated once and kept in the data folder (mode 0600), so every run prints
the same ones; if they no longer match the database, they are reset.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from allauth.mfa.adapter import get_adapter as get_mfa_adapter
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from allauth.mfa.utils import decrypt
from cryptography.fernet import InvalidToken
from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.urls import reverse

from accounts.models import User
from accounts.services import user_create, user_set_password
from audit.services import audit_record
from oauth_provider.models import Application
from oauth_provider.services.applications import application_create, application_rotate_secret

DEMO_USERNAME = "admin"
DEMO_EMAIL = "admin@example.com"
DEMO_CLIENT_ID = "demo-client"
DEMO_REDIRECT_URI = "http://127.0.0.1:8765/callback"


class Command(BaseCommand):
    help = "Create the demo staff account and demo OAuth client (idempotent) and print their credentials."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--redirect-uri", default=DEMO_REDIRECT_URI, help="Redirect URI of the demo client."
        )
        parser.add_argument(
            "--credentials-file",
            default=str(Path(settings.DATA_DIR) / "demo-credentials.json"),
            help="Where the generated demo credentials are kept between runs.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["credentials_file"])
        saved = json.loads(path.read_text()) if path.exists() else {}
        with transaction.atomic():
            password = self.ensure_staff_account(saved.get("admin_password", ""))
            admin = User.objects.get(username=DEMO_USERNAME)
            totp_secret = self.ensure_second_factor(admin, saved.get("admin_totp_secret", ""))
            secret = self.ensure_client(saved.get("client_secret", ""), options["redirect_uri"])
        self.save(
            path, {"admin_password": password, "admin_totp_secret": totp_secret, "client_secret": secret}
        )
        totp_url = get_mfa_adapter().build_totp_url(admin, totp_secret)
        site = settings.SITE_URL
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Demo credentials (embedded default only; never use them in production):",
                    f"  admin site      {site}/admin/",
                    f"  staff account   username {DEMO_USERNAME}   password {password}",
                    f"  second factor   TOTP secret {totp_secret}   (add it to an authenticator app;",
                    "                  the admin asks for its 6-digit code after the password)",
                    f"                  {totp_url}",
                    f"  OAuth client    client_id {DEMO_CLIENT_ID}   client_secret {secret}",
                    f"                  redirect_uri {options['redirect_uri']}",
                    # At the issuer, the site root (docs/decisions/0013), not under /o/.
                    f"  OIDC discovery  {site}{reverse('oidc-configuration')}",
                    "",
                ]
            )
        )

    def ensure_staff_account(self, password: str) -> str:
        user = User.objects.filter(username=DEMO_USERNAME).first()
        if user is None:
            password = password or secrets.token_urlsafe(12)
            user_create(
                username=DEMO_USERNAME,
                email=DEMO_EMAIL,
                password=password,
                is_staff=True,
                is_superuser=True,
                email_verified=True,
            )
        elif not password or not user.check_password(password):
            password = secrets.token_urlsafe(12)
            user_set_password(user=user, password=password)
        return password

    @staticmethod
    def stored_secret(totp: Authenticator) -> str | None:
        try:
            return decrypt(totp.data["secret"])
        except InvalidToken:  # encrypted under a key this data folder no longer has
            return None

    def ensure_second_factor(self, user: User, secret: str) -> str:
        """A TOTP authenticator for the demo admin whose secret is `secret`, or a new one."""
        totp = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).first()
        if totp is not None and secret and self.stored_secret(totp) == secret:
            return secret
        if totp is not None:  # enrolled by hand since, or the saved secret is lost
            removed = {"type": totp.type, "authenticator_id": totp.pk, "via": "demo_setup"}
            totp.delete()
            audit_record(action="accounts.mfa.removed", target=user, metadata=removed)
        secret = generate_totp_secret()
        authenticator = TOTP.activate(user, secret).instance
        audit_record(
            action="accounts.mfa.enrolled",
            target=user,
            metadata={"type": authenticator.type, "authenticator_id": authenticator.pk, "via": "demo_setup"},
        )
        return secret

    def ensure_client(self, secret: str, redirect_uri: str) -> str:
        application = Application.objects.filter(client_id=DEMO_CLIENT_ID).first()
        if application is None:
            issued = application_create(
                name="Demo client",
                owner=User.objects.get(username=DEMO_USERNAME),
                client_id=DEMO_CLIENT_ID,
                redirect_uris=redirect_uri,
                allowed_scopes="openid profile email offline_access users:read",
            )
            return issued.client_secret
        if not secret or not check_password(secret, application.client_secret):
            return application_rotate_secret(application=application).client_secret
        return secret

    def save(self, path: Path, credentials: dict[str, str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(credentials, handle)
