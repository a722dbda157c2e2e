"""The hourly cleanup of expired OAuth rows: small batches, each its own short transaction, live
tokens kept, safe to run again (docs/decisions/0015)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from math import ceil
from typing import Any

import pytest
from django.db import connection
from django.db.models.sql.constants import GET_ITERATOR_CHUNK_SIZE
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_device_grant_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

from accounts.models import User
from accounts.tests.factories import UserFactory
from config.celery import app as celery_app
from oauth_provider.models import Application, TokenFamily
from oauth_provider.services.tokens import tokens_clear_expired
from oauth_provider.tasks import tokens_clear_expired as tokens_clear_expired_task
from oauth_provider.tests.token_flows import refresh, registered_client, tokens, userinfo

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()
IDToken = get_id_token_model()
Grant = get_grant_model()
DeviceGrant = get_device_grant_model()


def deletes_of(queries: list[dict[str, Any]], table: str) -> int:
    """DELETE statements by primary key on `table` (cascades to other tables not counted)."""
    pattern = re.compile(rf'^DELETE FROM "{table}" WHERE .*"{table}"\."id" IN')  # noqa: S608 (a regex)
    return sum(1 for query in queries if pattern.match(query["sql"]))


def access_tokens(user: User, application: Application, *, count: int, expires: Any, prefix: str) -> None:
    AccessToken.objects.bulk_create(
        AccessToken(
            user=user, application=application, token=f"{prefix}-{number}", expires=expires, scope="openid"
        )
        for number in range(count)
    )


def test_thousands_of_expired_access_tokens_go_in_batches_and_live_ones_stay() -> None:
    user, application = UserFactory.create(), registered_client().application
    now = timezone.now()
    access_tokens(user, application, count=2500, expires=now - timedelta(minutes=1), prefix="expired")
    access_tokens(user, application, count=40, expires=now + timedelta(minutes=5), prefix="live")

    with CaptureQueriesContext(connection) as captured:
        deleted = tokens_clear_expired(batch_size=1000)

    assert deleted["access_tokens"] == 2500
    # Three batches (1000 + 1000 + 500), each its own short transaction: a savepoint here, inside
    # the test's transaction. Django's deletion splits each batch into statements of at most
    # GET_ITERATOR_CHUNK_SIZE primary keys.
    savepoints = [query for query in captured.captured_queries if query["sql"].startswith("SAVEPOINT")]
    assert len(savepoints) == 3
    statements_per_batch = [ceil(size / GET_ITERATOR_CHUNK_SIZE) for size in (1000, 1000, 500)]
    assert deletes_of(captured.captured_queries, "oauth2_provider_accesstoken") == sum(statements_per_batch)
    assert AccessToken.objects.count() == 40
    assert not AccessToken.objects.filter(expires__lt=now).exists()


def test_every_kind_of_dead_row_goes_and_every_live_one_stays(settings: Any) -> None:
    user, application = UserFactory.create(), registered_client().application
    now = timezone.now()
    hour = timedelta(hours=1)
    # Authorization codes and device codes.
    for number in range(3):
        Grant.objects.create(
            user=user,
            application=application,
            code=f"old-{number}",
            expires=now - hour,
            redirect_uri="https://a.example/cb",
        )
    Grant.objects.create(
        user=user,
        application=application,
        code="fresh",
        expires=now + hour,
        redirect_uri="https://a.example/cb",
    )
    for number in range(2):
        DeviceGrant.objects.create(
            client_id=application.client_id,
            device_code=f"old-{number}",
            user_code=f"OLD{number}",
            expires=now - hour,
        )
    DeviceGrant.objects.create(
        client_id=application.client_id, device_code="fresh", user_code="FRESH", expires=now + hour
    )
    # ID tokens: expired and alone, expired but still with an access token, live.
    IDToken.objects.create(user=user, application=application, expires=now - hour)
    bound_id_token = IDToken.objects.create(user=user, application=application, expires=now - hour)
    live_id_token = IDToken.objects.create(user=user, application=application, expires=now + hour)
    # Refresh tokens: long revoked, just revoked (kept for reuse detection), orphaned, idle for
    # too long, in a family past its absolute lifetime, and a live one.
    live = tokens(registered_client(), user=user)
    idle_access = AccessToken.objects.create(
        user=user,
        application=application,
        token="idle",
        expires=now - timedelta(days=31),
        id_token=bound_id_token,
    )
    RefreshToken.objects.create(user=user, application=application, token="idle", access_token=idle_access)
    RefreshToken.objects.create(
        user=user, application=application, token="old-revoked", revoked=now - timedelta(days=31)
    )
    RefreshToken.objects.create(user=user, application=application, token="new-revoked", revoked=now - hour)
    RefreshToken.objects.create(user=user, application=application, token="orphan")
    old_family = uuid.uuid4()
    TokenFamily.objects.create(
        family=old_family,
        application=application,
        grant_type="authorization_code",
        started_at=now - timedelta(days=91),
    )
    capped_access = AccessToken.objects.create(
        user=user, application=application, token="capped", expires=now + hour
    )
    RefreshToken.objects.create(
        user=user,
        application=application,
        token="capped",
        access_token=capped_access,
        token_family=old_family,
    )

    deleted = tokens_clear_expired(batch_size=2)

    assert deleted == {
        "refresh_tokens": 4,  # long revoked, orphan, idle, past the family lifetime
        "access_tokens": 1,  # the idle one, once its refresh token had gone
        "id_tokens": 2,  # the lone one, and the idle access token's once that had gone
        "authorization_codes": 3,
        "device_codes": 2,
        "token_families": 1,
    }
    assert set(RefreshToken.objects.values_list("token", flat=True)) == {
        "",
        "new-revoked",
    }  # "" is hashed at rest
    assert list(Grant.objects.values_list("code", flat=True)) == ["fresh"]
    assert list(DeviceGrant.objects.values_list("device_code", flat=True)) == ["fresh"]
    assert live_id_token in IDToken.objects.all()
    assert set(AccessToken.objects.values_list("token", flat=True)) == {"", "capped"}
    assert userinfo(live["access_token"]).status_code == 200
    assert refresh(registered_client(), live["refresh_token"]).status_code == 400  # another client's
    assert TokenFamily.objects.filter(family=old_family).count() == 0


def test_a_second_run_finds_nothing_and_deletes_nothing() -> None:
    user, application = UserFactory.create(), registered_client().application
    access_tokens(
        user, application, count=30, expires=timezone.now() - timedelta(minutes=1), prefix="expired"
    )
    first = tokens_clear_expired(batch_size=10)

    with CaptureQueriesContext(connection) as captured:
        second = tokens_clear_expired(batch_size=10)

    assert first["access_tokens"] == 30
    assert set(second.values()) == {0}
    assert not [query for query in captured.captured_queries if query["sql"].startswith("DELETE")]


def test_the_task_runs_the_cleanup_and_beat_runs_the_task() -> None:
    user, application = UserFactory.create(), registered_client().application
    access_tokens(user, application, count=3, expires=timezone.now() - timedelta(minutes=1), prefix="expired")

    result = tokens_clear_expired_task.delay().get(timeout=10)

    assert result["access_tokens"] == 3
    assert (
        celery_app.conf.beat_schedule["oauth-tokens-clear-expired"]["task"]
        == "oauth_provider.tokens_clear_expired"
    )
