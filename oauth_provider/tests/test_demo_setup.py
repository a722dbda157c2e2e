"""The demo staff account and OAuth client that the run command creates and prints."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.contrib.auth.hashers import check_password
from django.core.management import call_command
from django.test import Client

from accounts.models import User
from oauth_provider.models import Application

pytestmark = pytest.mark.django_db

CREDENTIALS = re.compile(r"password (\S+).*client_id (\S+)\s+client_secret (\S+)", re.DOTALL)


def run_demo_setup(credentials_file: Path) -> tuple[str, str, str]:
    output = io.StringIO()
    # Tests run in production mode, where redirect URIs must be https.
    call_command(
        "demo_setup",
        credentials_file=str(credentials_file),
        redirect_uri="https://127.0.0.1:8765/callback",
        stdout=output,
    )
    match = CREDENTIALS.search(output.getvalue())
    assert match is not None, output.getvalue()
    password, client_id, secret = match.groups()
    return password, client_id, secret


def test_demo_setup_creates_a_staff_account_and_a_client_once(tmp_path: Path) -> None:
    first = run_demo_setup(tmp_path / "demo.json")
    second = run_demo_setup(tmp_path / "demo.json")

    assert first == second
    assert User.objects.filter(username="admin", is_staff=True, is_superuser=True).count() == 1
    assert Application.objects.filter(client_id="demo-client").count() == 1
    assert (tmp_path / "demo.json").stat().st_mode & 0o777 == 0o600


def test_printed_credentials_work(tmp_path: Path, client: Client) -> None:
    password, client_id, secret = run_demo_setup(tmp_path / "demo.json")

    application = Application.objects.get(client_id=client_id)
    assert application.client_type == Application.CLIENT_CONFIDENTIAL
    assert application.client_secret != secret  # stored hashed
    assert check_password(secret, application.client_secret)
    response = client.post("/admin/login/?next=/admin/", {"username": "admin", "password": password})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_lost_credentials_are_reset_not_duplicated(tmp_path: Path) -> None:
    old_password, _, old_secret = run_demo_setup(tmp_path / "first.json")

    new_password, _, new_secret = run_demo_setup(tmp_path / "other.json")

    assert (new_password, new_secret) != (old_password, old_secret)
    admin = User.objects.get(username="admin")
    assert admin.check_password(new_password)
    assert not admin.check_password(old_password)
    assert check_password(new_secret, Application.objects.get(client_id="demo-client").client_secret)
