"""A change and its audit event commit together or not at all (issue 14, item 7; STYLE rule 7).

The audit write is made to fail for real: another connection holds the audit chain's lock, and
ours waits for it at most a moment (PostgreSQL's `lock_timeout`), as a writer stuck behind a hung
transaction would. The request is refused, and nothing of the change it asked for remains.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from allauth.mfa.models import Authenticator
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User, UserBlock
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory, recovery_codes_enrol, totp_enrol
from accounts.tests.headless import app_post, verified_user
from audit.models import AuditEvent
from audit.services import CHAIN_LOCK_ID

pytestmark = pytest.mark.django_db


@contextmanager
def audit_writes_failing() -> Iterator[None]:
    """Every audit write on this connection fails (lock_not_available) until the block ends."""
    holder = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [CHAIN_LOCK_ID])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
        holder.close()  # its session ends, and its lock with it


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_a_block_whose_audit_event_cannot_be_written_is_not_made(require_postgresql: None) -> None:
    blocker, blocked = UserFactory.create(), UserFactory.create()
    client = APIClient()
    client.force_authenticate(blocker)

    with audit_writes_failing():
        refused = client.post(f"/api/v1/users/{blocked.pk}/block/")

    assert refused.status_code == 503
    assert refused.json()["errors"][0]["code"] == "service_unavailable"
    assert list(UserBlock.objects.all()) == []
    assert events("accounts.user.blocked") == []

    # With the audit trail writable again, the same request blocks, with its event.
    assert client.post(f"/api/v1/users/{blocked.pk}/block/").status_code == 204
    assert list(UserBlock.objects.values_list("blocker_id", "blocked_id")) == [(blocker.pk, blocked.pk)]
    assert [event.target_id for event in events("accounts.user.blocked")] == [str(blocked.pk)]


def unused_recovery_codes(user: User) -> list[str]:
    recovery = Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES)
    return list(recovery.wrap().get_unused_codes())


def test_a_recovery_code_whose_use_cannot_be_audited_stays_unused(require_postgresql: None) -> None:
    user = verified_user()
    totp_enrol(user)
    codes = recovery_codes_enrol(user)
    client = Client(raise_request_exception=False)  # the answer a client gets, not the exception
    password_step = app_post(client, "/auth/login", {"username": user.username, "password": DEFAULT_PASSWORD})
    assert password_step.status_code == 401, password_step.content  # waiting for the second factor
    session_token = password_step.json()["meta"]["session_token"]

    with audit_writes_failing():
        refused = app_post(client, "/auth/2fa/authenticate", {"code": codes[0]}, session_token)

    assert refused.status_code == 503
    assert unused_recovery_codes(user) == codes
    assert events("accounts.mfa.recovery_code_used") == []

    # The code was not spent: it still completes the sign-in, once, with its event.
    accepted = app_post(client, "/auth/2fa/authenticate", {"code": codes[0]}, session_token)

    assert accepted.status_code == 200, accepted.content
    assert unused_recovery_codes(user) == codes[1:]
    assert [event.metadata for event in events("accounts.mfa.recovery_code_used")] == [{"codes_left": 9}]
