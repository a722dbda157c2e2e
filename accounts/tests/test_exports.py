"""Personal data exports, over HTTP: request, build (eager Celery), status, signed download, expiry."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from allauth.account.models import EmailAddress
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from allauth.usersessions.models import UserSession
from celery import current_app
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core import mail, signing
from django.core.files.base import ContentFile
from django.core.serializers.json import DjangoJSONEncoder
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model
from rest_framework.test import APIClient

from accounts.models import DataExport, DeviceSession, Membership, Organization, OutboxJob, User
from accounts.services.exports import data_export_download_token
from accounts.services.moderation import user_block
from accounts.services.outbox import jobs_relay
from accounts.tasks import data_export_build, data_exports_expire
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.test_deletion import (
    bearer,
    errors,
    html_part,
    oauth_application,
    oauth_tokens,
    sign_in,
    verified_user,
)
from accounts.tests.test_outbox import make_due
from audit.models import AuditEvent
from config.tests.faults import RedisServer
from oauth_provider.services.consents import consent_grant

# Exports are built when the request commits (eager Celery here), so these tests really commit.
pytestmark = pytest.mark.django_db(transaction=True)

EXPORT_URL = "/api/v1/users/me/export/"
DOWNLOAD_LINK = re.compile(
    r"https?://[^/\s]+(/api/v1/users/me/export/[0-9a-f-]{36}/download/\?token=[^\s\"'<&]+)"
)
BUNDLE_SECTIONS = {
    "format_version",
    "generated_at",
    "profile",
    "email_addresses",
    "devices",
    "social_accounts",
    "consents",
    "organizations",
    "blocked_users",
    "files",
    "audit_events",
}


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return tmp_path / "media"


def as_json(value: Any) -> Any:
    """A value as the bundle writes it (ECMA-262 dates: milliseconds, "Z")."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def path_of(url: str) -> str:
    assert url.startswith(settings.SITE_URL), url
    return url.removeprefix(settings.SITE_URL)


def download(url: str) -> Any:
    return Client().get(path_of(url))


def bundle_of(response: Any) -> tuple[str, dict[str, Any]]:
    body = b"".join(response.streaming_content).decode()
    bundle: dict[str, Any] = json.loads(body)
    return body, bundle


def request_export(api: APIClient) -> dict[str, Any]:
    response = api.post(EXPORT_URL)
    assert response.status_code == 202, response.content
    body: dict[str, Any] = response.json()
    return body


def ready_export(user: User, **fields: Any) -> DataExport:
    export = DataExport.objects.create(
        user=user,
        status=DataExport.Status.READY,
        finished_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=24),
        **fields,
    )
    export.file.save(f"{uuid.uuid4().hex}.json", ContentFile(b'{"format_version": 1}'))
    return export


# --- requesting and building ------------------------------------------------------------------


def test_export_request_answers_202_and_the_export_is_ready_at_once_with_eager_tasks() -> None:
    user = verified_user()
    api = bearer(sign_in(user)["access_token"])

    response = api.post(EXPORT_URL)

    assert response.status_code == 202
    export = DataExport.objects.get(user=user)
    status_url = f"http://testserver/api/v1/users/me/export/{export.pk}/"
    assert response["Location"] == status_url
    body = response.json()
    assert body["id"] == str(export.pk)
    assert body["status_url"] == status_url
    assert set(body) == {
        "id",
        "status",
        "size",
        "created_at",
        "finished_at",
        "expires_at",
        "status_url",
        "download_url",
    }
    status = api.get(status_url)
    assert status.status_code == 200
    export.refresh_from_db()
    assert export.status == DataExport.Status.READY
    assert export.finished_at is not None
    assert export.expires_at == export.finished_at + timedelta(hours=24)
    detail = status.json()
    assert detail["status"] == "ready"
    assert detail["size"] == export.size > 0
    assert detail["download_url"].startswith(
        f"{settings.SITE_URL}/api/v1/users/me/export/{export.pk}/download/?token="
    )
    assert [event.action for event in AuditEvent.objects.filter(target_id=str(export.pk)).order_by("id")] == [
        "accounts.user.data_export_requested",
        "accounts.user.data_exported",
    ]


def test_the_ready_email_carries_the_download_link() -> None:
    user = verified_user()
    api = bearer(sign_in(user)["access_token"])
    mail.outbox.clear()

    request_export(api)

    [message] = mail.outbox
    assert message.to == [user.email]
    assert message.subject == "[Identity] Your data export is ready"
    link = DOWNLOAD_LINK.search(str(message.body))
    assert link is not None
    assert DOWNLOAD_LINK.search(html_part(message)) is not None
    response = Client().get(link.group(1))
    assert response.status_code == 200
    assert bundle_of(response)[1]["profile"]["username"] == user.username


def test_the_bundle_holds_everything_about_the_user_and_no_secret() -> None:
    user = verified_user(description="Writes compilers")
    EmailAddress.objects.create(user=user, email="ada@work.example", primary=False, verified=False)
    social_app = SocialApp.objects.create(
        provider="github", name="GitHub", client_id="gh-id", secret="gh-secret"
    )
    social = SocialAccount.objects.create(
        user=user,
        provider="github",
        uid="4242",
        extra_data={"login": "ada", "access_token": "gho_leaked", "nested": {"id_token": "eyJ.leak"}},
    )
    SocialToken.objects.create(app=social_app, account=social, token="gho_social_token", token_secret="ts")
    application, client_secret = oauth_application()
    oauth_access, oauth_refresh = oauth_tokens(user, application, suffix="export")
    get_grant_model().objects.create(
        user=user,
        application=application,
        code="the-grant-code",
        expires=timezone.now() + timedelta(minutes=1),
        redirect_uri="https://printer.example/callback",
        scope="openid email",
    )
    consent_grant(user=user, application=application, scopes=["openid", "email"], prompted=True)
    organization = Organization.objects.create(name="Analytical Engines", slug="engines")
    Membership.objects.create(organization=organization, user=user, role="admin")
    blocked, blocker = verified_user(), verified_user()
    user_block(blocker=user, blocked=blocked)
    user_block(blocker=blocker, blocked=user)
    browser = Client(headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0"})
    assert (
        browser.post("/accounts/login/", {"login": user.username, "password": DEFAULT_PASSWORD}).status_code
        == 302
    )
    assert browser.get("/api/v1/users/me/").status_code == 200
    tokens = sign_in(user)
    api = bearer(tokens["access_token"])

    export_id = request_export(api)["id"]
    response = download(api.get(f"{EXPORT_URL}{export_id}/").json()["download_url"])

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "private, no-store"
    assert response["Content-Disposition"] == (
        f'attachment; filename="data-export-{timezone.now():%Y-%m-%d}.json"'
    )
    body, bundle = bundle_of(response)
    assert set(bundle) == BUNDLE_SECTIONS
    user.refresh_from_db()
    assert bundle["format_version"] == 1
    assert bundle["profile"] == {
        "id": str(user.pk),
        "username": user.username,
        "display_name": user.display_name,
        "email": user.email,
        "description": "Writes compilers",
        "roles": ["user"],
        "is_active": True,
        "created_at": as_json(user.created_at),
        "last_login": as_json(user.last_login),
        "deleted_at": None,
    }
    assert bundle["email_addresses"] == [
        {"email": user.email, "verified": True, "primary": True},
        {"email": "ada@work.example", "verified": False, "primary": False},
    ]
    [device] = bundle["devices"]["api_clients"]
    device_session = DeviceSession.objects.get(user=user)
    assert device == {
        "id": str(device_session.pk),
        "label": "Firefox on Linux",
        "user_agent": device_session.user_agent,
        "ip_address": "127.0.0.1",
        "created_at": as_json(device_session.created_at),
        "last_used_at": as_json(device_session.last_used_at),
        "revoked_at": None,
        "revoke_reason": "",
    }
    assert [(item["user_agent"], item["ip_address"]) for item in bundle["devices"]["browsers"]] == [
        (session.user_agent, "127.0.0.1")
        for session in UserSession.objects.filter(user=user).order_by("created_at")
    ]
    assert len(bundle["devices"]["browsers"]) == 2  # the browser, and the app's sign-in session
    assert bundle["social_accounts"] == [
        {
            "provider": "github",
            "uid": "4242",
            "date_joined": as_json(social.date_joined),
            "last_login": as_json(social.last_login),
            "extra_data": {
                "login": "ada",
                "access_token": "[REDACTED]",
                "nested": {"id_token": "[REDACTED]"},
            },
        }
    ]
    [consent] = bundle["consents"]
    assert consent["application"] == {"client_id": application.client_id, "name": "Photo printer"}
    assert consent["scopes"] == ["email", "openid", "profile", "users:read", "users:write"]
    [remembered] = consent["remembered_consents"]
    assert remembered["scopes"] == ["email", "openid"]
    assert remembered["revoked_at"] is None
    assert remembered["first_authorized_at"]
    assert remembered["last_authorized_at"]
    assert [grant["scope"] for grant in consent["grants"]] == ["openid email"]
    assert [token["scope"] for token in consent["access_tokens"]] == ["openid profile users:read users:write"]
    assert [token["revoked_at"] for token in consent["refresh_tokens"]] == [None]
    assert bundle["organizations"] == [{"name": "Analytical Engines", "slug": "engines", "role": "admin"}]
    assert bundle["blocked_users"] == [blocked.username]
    assert bundle["files"] == []
    actions = [event["action"] for event in bundle["audit_events"]]
    assert actions == [
        "oauth.consent.granted",
        "accounts.user.blocked",
        "accounts.user.blocked",
        "accounts.user.signed_in",
        "accounts.user.signed_in",
        "accounts.user.data_export_requested",
    ]
    blocked_by_other = bundle["audit_events"][2]
    assert {key: blocked_by_other[key] for key in ("actor_type", "actor", "target_type", "target")} == {
        "actor_type": "user",
        "actor": blocker.username,
        "target_type": "accounts.user",
        "target": user.username,
    }
    # No secret of any kind, anywhere in the file.
    device_session.refresh_from_db()
    secrets = [
        user.password,
        tokens["access_token"],
        tokens["refresh_token"],
        tokens["session_token"],
        device_session.refresh_jti,
        oauth_access,
        oauth_refresh,
        "the-grant-code",
        client_secret,
        application.client_secret,
        "gho_social_token",
        "gho_leaked",
        "eyJ.leak",
        "gh-secret",
        *get_access_token_model().objects.values_list("token_checksum", flat=True),
        *get_refresh_token_model().objects.values_list("token_checksum", flat=True),
        *Session.objects.values_list("session_key", flat=True),
        *UserSession.objects.values_list("session_key", flat=True),
    ]
    assert len(secrets) == 20
    leaked = [secret for secret in secrets if secret and secret in body]
    assert leaked == []
    assert "password" not in body


# --- refusals ---------------------------------------------------------------------------------


def test_export_needs_a_signed_in_caller() -> None:
    export = ready_export(verified_user())

    created = APIClient().post(EXPORT_URL)
    status = APIClient().get(f"{EXPORT_URL}{export.pk}/")

    assert created.status_code == status.status_code == 401
    assert errors(created) == errors(status) == [("not_authenticated", None)]
    assert DataExport.objects.count() == 1


def test_export_is_refused_to_third_party_oauth_tokens() -> None:
    user = verified_user()
    application, _ = oauth_application()
    access, _ = oauth_tokens(user, application, suffix="exporter")
    export = ready_export(user)

    created = bearer(access).post(EXPORT_URL)
    status = bearer(access).get(f"{EXPORT_URL}{export.pk}/")

    assert created.status_code == status.status_code == 403
    assert errors(created) == errors(status) == [("first_party_only", None)]
    assert DataExport.objects.count() == 1


def test_another_users_export_is_not_found() -> None:
    export = ready_export(verified_user())
    api = bearer(sign_in(verified_user())["access_token"])

    response = api.get(f"{EXPORT_URL}{export.pk}/")
    unknown = api.get(f"{EXPORT_URL}{uuid.uuid4()}/")

    assert response.status_code == unknown.status_code == 404
    assert errors(response) == errors(unknown) == [("not_found", None)]


def test_a_second_export_while_one_is_being_built_is_a_409() -> None:
    user = verified_user()
    DataExport.objects.create(user=user)  # pending
    api = bearer(sign_in(user)["access_token"])

    response = api.post(EXPORT_URL)

    assert response.status_code == 409
    assert errors(response) == [("export_in_progress", None)]
    assert DataExport.objects.filter(user=user).count() == 1


def test_a_pending_export_lost_for_an_hour_no_longer_blocks_a_new_one() -> None:
    user = verified_user()
    lost = DataExport.objects.create(user=user)
    DataExport.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(hours=1, minutes=1))
    api = bearer(sign_in(user)["access_token"])

    response = api.post(EXPORT_URL)

    assert response.status_code == 202
    assert DataExport.objects.get(pk=response.json()["id"]).status == DataExport.Status.READY


def test_more_than_five_exports_a_day_is_a_429_with_retry_after() -> None:
    user = verified_user()
    now = timezone.now()
    for hours_ago in (25, 20, 15, 10, 5, 1):
        export = DataExport.objects.create(user=user, status=DataExport.Status.FAILED)
        DataExport.objects.filter(pk=export.pk).update(created_at=now - timedelta(hours=hours_ago))
    api = bearer(sign_in(user)["access_token"])

    response = api.post(EXPORT_URL)

    assert response.status_code == 429
    assert errors(response) == [("export_limit_reached", None)]
    retry_after = int(response["Retry-After"])
    assert 4 * 3600 - 5 <= retry_after <= 4 * 3600  # when the one from 20 hours ago leaves the window
    assert DataExport.objects.filter(user=user).count() == 6


def test_the_fifth_export_of_a_day_is_still_allowed() -> None:
    user = verified_user()
    for _ in range(4):
        DataExport.objects.create(user=user, status=DataExport.Status.FAILED)
    api = bearer(sign_in(user)["access_token"])

    assert api.post(EXPORT_URL).status_code == 202
    assert api.post(EXPORT_URL).status_code == 429


def test_an_export_requested_while_the_broker_is_down_is_built_once_it_is_back(broker: RedisServer) -> None:
    """Issue 13, finding 4: the request neither fails nor waits, and the export is not given up."""
    user = verified_user()
    api = bearer(sign_in(user)["access_token"])

    with broker.stopped():
        started = time.monotonic()
        response = api.post(EXPORT_URL)
        seconds = time.monotonic() - started

    assert response.status_code == 202
    assert seconds < 3, seconds
    export = DataExport.objects.get(user=user)
    assert api.get(f"{EXPORT_URL}{export.pk}/").json()["status"] == "pending"
    assert api.post(EXPORT_URL).status_code == 409  # still the one in progress
    [job] = OutboxJob.objects.filter(task="accounts.data_export_build")
    assert (job.state, job.arguments) == (OutboxJob.State.PENDING, {"export_id": str(export.pk)})

    # The broker is back: the relay publishes the build, and a worker (an eager one here) runs it.
    current_app.conf.task_always_eager = True
    make_due(job)
    assert jobs_relay()["published"] == 1

    assert api.get(f"{EXPORT_URL}{export.pk}/").json()["status"] == "ready"
    assert OutboxJob.objects.get(pk=job.pk).state == OutboxJob.State.DONE
    assert [message.subject for message in mail.outbox] == ["[Identity] Your data export is ready"]


def test_a_build_message_delivered_twice_builds_once() -> None:
    user = verified_user()
    api = bearer(sign_in(user)["access_token"])
    response = api.post(EXPORT_URL)
    job = OutboxJob.objects.get(task="accounts.data_export_build")

    data_export_build.apply(args=(str(job.pk),))

    export = DataExport.objects.get(pk=response.json()["id"])
    assert export.status == DataExport.Status.READY
    assert len(mail.outbox) == 1
    assert (
        AuditEvent.objects.filter(action="accounts.user.data_exported", target_id=str(export.pk)).count() == 1
    )


def test_a_build_message_queued_before_the_outbox_names_the_export() -> None:
    """Messages published by the previous release carry the export's ID."""
    user = verified_user()
    export = DataExport.objects.create(user=user)

    data_export_build.apply(args=(str(export.pk),))

    export.refresh_from_db()
    assert export.status == DataExport.Status.READY


# --- the signed link --------------------------------------------------------------------------


def test_the_download_link_needs_no_other_credential_but_a_valid_signature() -> None:
    export = ready_export(verified_user())
    other = ready_export(verified_user())
    token = data_export_download_token(export=export)
    base = f"/api/v1/users/me/export/{export.pk}/download/"

    tampered = Client().get(f"{base}?token={token[:-2]}xx")
    missing = Client().get(base)
    foreign = Client().get(f"{base}?token={data_export_download_token(export=other)}")
    forged = Client().get(f"{base}?token={signing.dumps({'export': str(export.pk)}, salt='another')}")
    good = Client().get(f"{base}?token={token}")

    for response in (tampered, missing, foreign, forged):
        assert response.status_code == 403
        assert errors(response) == [("export_link_invalid", None)]
        assert "Content-Disposition" not in response
    assert good.status_code == 200
    assert bundle_of(good)[1] == {"format_version": 1}


def test_an_expired_export_link_is_a_410() -> None:
    export = ready_export(verified_user())
    token = data_export_download_token(export=export)
    DataExport.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = Client().get(f"/api/v1/users/me/export/{export.pk}/download/?token={token}")

    assert response.status_code == 410
    assert errors(response) == [("export_link_expired", None)]


def test_a_link_signed_longer_ago_than_its_lifetime_is_a_410() -> None:
    export = ready_export(verified_user())
    stamp = signing.b62_encode(int((timezone.now() - timedelta(hours=25)).timestamp()))
    with mock.patch.object(signing.TimestampSigner, "timestamp", return_value=stamp):
        token = data_export_download_token(export=export)

    response = Client().get(f"/api/v1/users/me/export/{export.pk}/download/?token={token}")

    assert response.status_code == 410
    assert errors(response) == [("export_link_expired", None)]


def test_a_link_whose_file_is_gone_is_a_410() -> None:
    export = ready_export(verified_user())
    token = data_export_download_token(export=export)
    Path(export.file.path).unlink()

    response = Client().get(f"/api/v1/users/me/export/{export.pk}/download/?token={token}")

    assert response.status_code == 410
    assert errors(response) == [("export_link_expired", None)]


def test_the_status_has_no_download_link_once_expired() -> None:
    user = verified_user()
    export = ready_export(user)
    DataExport.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = bearer(sign_in(user)["access_token"]).get(f"{EXPORT_URL}{export.pk}/")

    assert response.status_code == 200
    assert response.json()["download_url"] is None


# --- expiry -----------------------------------------------------------------------------------


def test_expiry_deletes_expired_files_and_fails_lost_pending_exports() -> None:
    user = verified_user()
    expired, fresh = ready_export(user), ready_export(user)
    DataExport.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    lost, building = DataExport.objects.create(user=user), DataExport.objects.create(user=user)
    DataExport.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(hours=2))
    expired_path, fresh_path = Path(expired.file.path), Path(fresh.file.path)

    result = data_exports_expire.delay().get(timeout=10)

    assert result == {"expired": 1, "failed": 1}
    assert not expired_path.exists()
    assert fresh_path.exists()
    expired.refresh_from_db()
    assert (expired.status, expired.file.name) == (DataExport.Status.EXPIRED, "")
    fresh.refresh_from_db()
    assert fresh.file.name != ""
    lost.refresh_from_db()
    assert lost.status == DataExport.Status.FAILED
    assert lost.finished_at is not None
    building.refresh_from_db()
    assert (building.status, building.finished_at) == (DataExport.Status.PENDING, None)
    assert data_exports_expire.delay().get(timeout=10) == {"expired": 0, "failed": 0}


def test_an_export_past_its_link_reads_expired_before_and_after_the_job() -> None:
    user = verified_user()
    api = bearer(sign_in(user)["access_token"])
    export = ready_export(user)
    DataExport.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    before = api.get(f"{EXPORT_URL}{export.pk}/").json()
    data_exports_expire.delay().get(timeout=10)
    after = api.get(f"{EXPORT_URL}{export.pk}/").json()

    assert (before["status"], before["download_url"]) == ("expired", None)
    assert (after["status"], after["download_url"]) == ("expired", None)
    assert DataExport.objects.get(pk=export.pk).status == DataExport.Status.EXPIRED


def test_a_user_can_export_and_then_delete_their_account() -> None:
    user = verified_user()
    api = bearer(sign_in(user)["access_token"])
    export_id = request_export(api)["id"]
    url = api.get(f"{EXPORT_URL}{export_id}/").json()["download_url"]

    assert api.delete("/api/v1/users/me/").status_code == 202

    response = download(url)
    assert response.status_code == 200
    assert bundle_of(response)[1]["profile"]["id"] == str(user.pk)


def test_a_purged_users_export_files_are_gone_and_its_links_are_410() -> None:
    user = UserFactory.create()
    export = ready_export(user)
    token = data_export_download_token(export=export)
    path = Path(export.file.path)
    User.objects.filter(pk=user.pk).update(is_active=False, deleted_at=timezone.now() - timedelta(days=15))
    from accounts.tasks import users_purge_due

    assert users_purge_due.delay().get(timeout=10) == 1

    assert not path.exists()
    response = Client().get(f"/api/v1/users/me/export/{export.pk}/download/?token={token}")
    assert response.status_code == 410
