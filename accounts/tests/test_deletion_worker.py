"""Deletion and export end to end with a real Celery worker: Redis broker, the test database,
e-mail through the worker's SMTP-less file backend (the issue's "Done when").

The worker is a subprocess (conftest.py `celery_worker_start`) on the production settings,
pointed at this test run's database, media folder, cache prefix and a mail folder; this process
queues to the worker's private queue instead of running tasks eagerly.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest
from allauth.account.models import EmailAddress
from django.conf import settings
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import DataExport, User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from config.celery import app
from conftest import CeleryWorker, StartCeleryWorker

WAIT_SECONDS = 30
T = TypeVar("T")


def database_url() -> str:
    """The URL of the database this test runs on (pytest-django's `test_<name>`)."""
    database = connection.settings_dict
    assert database["ENGINE"] == "django.db.backends.postgresql", "a worker needs a database it can share"
    credentials = quote(database["USER"] or "", safe="")
    if database["PASSWORD"]:
        credentials += ":" + quote(database["PASSWORD"], safe="")
    host = database["HOST"] or "127.0.0.1"
    port = f":{database['PORT']}" if database["PORT"] else ""
    return f"postgres://{credentials}@{host}{port}/{quote(database['NAME'], safe='')}"


def wait_for(what: str, probe: Callable[[], T | None], worker: CeleryWorker) -> T:
    """Poll until `probe` answers something truthy, for at most WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; worker log:\n{worker.log}")


def mails_in(folder: Path) -> list[EmailMessage]:
    """The messages Django's file e-mail backend wrote, oldest first; each ends with a dashed line."""
    separator = b"\n" + b"-" * 79 + b"\n"
    messages = []
    for path in sorted(folder.glob("*.log"), key=lambda item: item.stat().st_mtime_ns):
        content = path.read_bytes()
        if not content.endswith(separator):
            continue  # still being written
        for chunk in content.split(separator):
            if chunk.strip():
                messages.append(message_from_bytes(chunk.lstrip(), policy=policy.default))
    return messages


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def mail_with_subject(folder: Path, subject: str, *, after: int) -> Callable[[], EmailMessage | None]:
    def probe() -> EmailMessage | None:
        found = [message for message in mails_in(folder)[after:] if message["Subject"] == subject]
        return found[-1] if found else None

    return probe


@pytest.fixture
def worker(
    transactional_db: None,
    require_postgresql: None,
    celery_worker_start: StartCeleryWorker,
    settings: Any,
    tmp_path: Path,
) -> Iterator[tuple[CeleryWorker, Path]]:
    """A worker sharing this test's database, media, cache and secrets; tasks queued to it."""
    media, outbox = tmp_path / "media", tmp_path / "mail"
    media.mkdir()
    outbox.mkdir()
    settings.MEDIA_ROOT = media
    env = {
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(media),
        "EMAIL_URL": f"filemail://{outbox}",
        "CACHE_KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", ""),
        # The broker and result backend this process talks to, whatever the environment calls them.
        "CELERY_BROKER_URL": str(app.conf.broker_url),
    }
    if app.conf.result_backend:
        env["CELERY_RESULT_BACKEND"] = str(app.conf.result_backend)
    worker = celery_worker_start(env=env)
    saved = {key: app.conf[key] for key in ("task_always_eager", "task_default_queue")}
    app.conf.task_always_eager = False
    app.conf.task_default_queue = worker.queue
    try:
        assert app.send_task("config.ping", queue=worker.queue).get(timeout=60) == "pong", worker.log
        yield worker, outbox
    finally:
        app.conf.update(saved)


def test_deletion_grace_undo_purge_and_export_with_a_real_worker(worker: tuple[CeleryWorker, Path]) -> None:
    celery_worker, outbox = worker
    user = UserFactory.create(username="ada_lovelace", email="ada@example.com")
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)

    def sign_in() -> APIClient:
        """Sign in, and confirm the password again: deleting the account asks for it (step-up)."""
        response = Client().post(
            "/_allauth/app/v1/auth/login",
            {"username": user.username, "password": DEFAULT_PASSWORD},
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
        reauthenticated = Client().post(
            "/_allauth/app/v1/auth/reauthenticate",
            {"password": DEFAULT_PASSWORD},
            content_type="application/json",
            headers={"X-Session-Token": response.json()["meta"]["session_token"]},
        )
        assert reauthenticated.status_code == 200, reauthenticated.content
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['meta']['access_token']}")
        return api

    api = sign_in()

    # Export: queued to the worker, which builds the bundle and e-mails the link.
    requested = api.post("/api/v1/users/me/export/")
    assert requested.status_code == 202, requested.content
    assert requested.json()["status"] == "pending"  # nothing ran in this process
    status_url = requested["Location"]

    def ready_status() -> dict[str, Any] | None:
        body: dict[str, Any] = api.get(status_url).json()
        assert body["status"] != "failed", celery_worker.log
        return body if body["status"] == "ready" else None

    status = wait_for("the export", ready_status, celery_worker)
    download = Client().get(status["download_url"].removeprefix(settings.SITE_URL))
    assert download.status_code == 200
    bundle = json.loads(download.getvalue())
    assert bundle["profile"]["username"] == "ada_lovelace"
    assert bundle["email_addresses"] == [{"email": "ada@example.com", "verified": True, "primary": True}]
    assert [event["action"] for event in bundle["audit_events"]] == [
        "accounts.user.signed_in",
        "accounts.user.data_export_requested",
    ]
    ready_mail = wait_for(
        "the export e-mail",
        mail_with_subject(outbox, "[Identity] Your data export is ready", after=0),
        celery_worker,
    )
    assert ready_mail["To"] == "ada@example.com"
    assert f"{settings.SITE_URL}/api/v1/users/me/export/{status['id']}/download/?token=" in text_of(
        ready_mail
    )

    # Deletion: the undo e-mail goes out through the worker; its link restores the account.
    sent = len(mails_in(outbox))
    assert api.delete("/api/v1/users/me/").status_code == 202
    undo_mail = wait_for(
        "the undo e-mail",
        mail_with_subject(outbox, "[Identity] Your account is scheduled for deletion", after=sent),
        celery_worker,
    )
    link = re.search(r"/accounts/deletion/undo/\?token=(\S+)", text_of(undo_mail))
    assert link is not None
    browser = Client()
    assert browser.get(link.group(0)).status_code == 200
    restored = browser.post("/accounts/deletion/undo/", {"token": link.group(1)})
    assert restored.status_code == 200
    user.refresh_from_db()
    assert (user.is_active, user.deleted_at) == (True, None)

    # Deleted again, and the grace period over: the beat job, run by the worker, erases it.
    assert sign_in().delete("/api/v1/users/me/").status_code == 202
    user.refresh_from_db()
    assert user.deleted_at is not None
    User.objects.filter(pk=user.pk).update(deleted_at=user.deleted_at - timedelta(days=15))
    export_file = Path(settings.MEDIA_ROOT) / DataExport.objects.get(user=user).file.name
    assert export_file.exists()

    purged = app.send_task("accounts.users_purge_due", queue=celery_worker.queue).get(timeout=60)

    assert purged == 1, celery_worker.log
    user.refresh_from_db()
    assert user.username == f"deleted_{user.pk.hex[:24]}"
    assert user.email == f"{user.username}@deleted.invalid"
    assert user.purged_at is not None
    assert user.has_usable_password() is False
    assert EmailAddress.objects.filter(user=user).exists() is False
    assert DataExport.objects.filter(user=user).exists() is False
    assert not export_file.exists()
    refused = APIClient().post("/api/v1/users/deletion/undo/", {"token": link.group(1)}, format="json")
    assert refused.json()["errors"][0]["code"] == "undo_link_expired"
