"""The demo staff account and OAuth client that the run command creates and prints."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth.hashers import check_password
from django.core.management import call_command
from django.test import Client

from accounts.models import User
from accounts.tests.factories import totp_code
from audit.models import AuditEvent
from oauth_provider.models import Application

pytestmark = pytest.mark.django_db

CREDENTIALS = re.compile(r"password (\S+).*client_id (\S+)\s+client_secret (\S+)", re.DOTALL)
SECOND_FACTOR = re.compile(r"TOTP secret ([A-Z2-7]+)\s.*?(otpauth://\S+)", re.DOTALL)


def run_demo_setup(credentials_file: Path) -> tuple[str, str, str]:
    password, client_id, secret, _ = run_demo_setup_with_totp(credentials_file)
    return password, client_id, secret


def run_demo_setup_with_totp(credentials_file: Path) -> tuple[str, str, str, tuple[str, str]]:
    """The printed password, client ID, client secret, and (TOTP secret, otpauth:// URI)."""
    output = io.StringIO()
    # Tests run in production mode, where redirect URIs must be https.
    call_command(
        "demo_setup",
        credentials_file=str(credentials_file),
        redirect_uri="https://127.0.0.1:8765/callback",
        stdout=output,
    )
    match = CREDENTIALS.search(output.getvalue())
    second_factor = SECOND_FACTOR.search(output.getvalue())
    assert match is not None, output.getvalue()
    assert second_factor is not None, output.getvalue()
    password, client_id, secret = match.groups()
    totp_secret, totp_url = second_factor.groups()
    return password, client_id, secret, (totp_secret, totp_url)


def test_demo_setup_creates_a_staff_account_and_a_client_once(tmp_path: Path) -> None:
    first = run_demo_setup(tmp_path / "demo.json")
    second = run_demo_setup(tmp_path / "demo.json")

    assert first == second
    assert User.objects.filter(username="admin", is_staff=True, is_superuser=True).count() == 1
    assert Application.objects.filter(client_id="demo-client").count() == 1
    assert (tmp_path / "demo.json").stat().st_mode & 0o777 == 0o600


def test_printed_credentials_work(tmp_path: Path, client: Client) -> None:
    password, client_id, secret, (totp_secret, _) = run_demo_setup_with_totp(tmp_path / "demo.json")

    application = Application.objects.get(client_id=client_id)
    assert application.client_type == Application.CLIENT_CONFIDENTIAL
    assert application.client_secret != secret  # stored hashed
    assert check_password(secret, application.client_secret)
    # The admin's sign-in is allauth's: the password, then a code from the printed secret.
    assert client.get("/admin/")["Location"] == "/admin/login/?next=/admin/"
    assert client.get("/admin/login/?next=/admin/")["Location"] == "/accounts/login/?next=%2Fadmin%2F"
    response = client.post("/accounts/login/?next=%2Fadmin%2F", {"login": "admin", "password": password})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(totp_secret)})
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    index = client.get("/admin/")
    assert index.status_code == 200
    assert b"Users, clients and settings" in index.content


def test_the_demo_admin_has_an_authenticator_app_printed_for_a_newcomer(
    tmp_path: Path, settings: Any
) -> None:
    _, _, _, (totp_secret, totp_url) = run_demo_setup_with_totp(tmp_path / "demo.json")

    admin = User.objects.get(username="admin")
    assert admin.mfa_factor_types == ["totp"]
    url = urlsplit(totp_url)
    assert (url.scheme, url.netloc, unquote(url.path)) == ("otpauth", "totp", "/admin@example.com")
    # The issuer an authenticator app shows: the host of SITE_URL.
    assert parse_qs(url.query) == {"secret": [totp_secret], "issuer": [settings.MFA_TOTP_ISSUER]}
    assert urlsplit(settings.SITE_URL).hostname == settings.MFA_TOTP_ISSUER
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved["admin_totp_secret"] == totp_secret
    [enrolled] = AuditEvent.objects.filter(action="accounts.mfa.enrolled")
    assert (enrolled.actor_type, enrolled.target_id) == ("system", str(admin.pk))
    assert enrolled.metadata["type"] == "totp"


def test_a_second_run_keeps_the_second_factor(tmp_path: Path) -> None:
    first = run_demo_setup_with_totp(tmp_path / "demo.json")

    second = run_demo_setup_with_totp(tmp_path / "demo.json")

    assert second[3] == first[3]
    assert Authenticator.objects.filter(user__username="admin", type="totp").count() == 1
    assert AuditEvent.objects.filter(action__startswith="accounts.mfa.").count() == 1


def test_lost_credentials_are_reset_not_duplicated(tmp_path: Path, client: Client) -> None:
    old_password, _, old_secret, (old_totp, _) = run_demo_setup_with_totp(tmp_path / "first.json")

    new_password, _, new_secret, (new_totp, _) = run_demo_setup_with_totp(tmp_path / "other.json")

    assert (new_password, new_secret, new_totp) != (old_password, old_secret, old_totp)
    admin = User.objects.get(username="admin")
    assert admin.check_password(new_password)
    assert not admin.check_password(old_password)
    assert check_password(new_secret, Application.objects.get(client_id="demo-client").client_secret)
    assert Authenticator.objects.filter(user=admin, type="totp").count() == 1
    client.post("/accounts/login/", {"login": "admin", "password": new_password})
    assert client.post("/accounts/2fa/authenticate/", {"code": totp_code(old_totp)}).status_code == 200
    assert client.post("/accounts/2fa/authenticate/", {"code": totp_code(new_totp)})["Location"] == "/"
