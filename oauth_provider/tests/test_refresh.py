"""Refresh tokens: rotation, reuse detection over the whole family, an idle and an absolute
lifetime, and the user's `is_active` (docs/decisions/0015)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from accounts.models import User
from accounts.services.moderation import user_deactivate
from accounts.tests.factories import UserFactory
from oauth_provider.models import TokenFamily
from oauth_provider.services import tokens as token_services
from oauth_provider.tests.token_flows import (
    access_token_row,
    events,
    oauth_error,
    refresh,
    refresh_token_row,
    registered_client,
    token_request,
    tokens,
    userinfo,
)

pytestmark = pytest.mark.django_db


def live_tokens() -> tuple[int, int]:
    """(access tokens, unrevoked refresh tokens)."""
    return (
        get_access_token_model().objects.count(),
        get_refresh_token_model().objects.filter(revoked__isnull=True).count(),
    )


def test_a_refresh_rotates_the_refresh_token_and_replaces_the_access_token() -> None:
    client = registered_client()
    first = tokens(client)

    response = refresh(client, first["refresh_token"])

    assert response.status_code == 200, response.content
    second = response.json()
    assert set(second) == {"access_token", "refresh_token", "id_token", "expires_in", "token_type", "scope"}
    assert second["refresh_token"] != first["refresh_token"]
    assert second["expires_in"] == 600
    assert access_token_row(first["access_token"]) is None
    assert refresh_token_row(first["refresh_token"]).revoked is not None
    new_refresh = refresh_token_row(second["refresh_token"])
    assert new_refresh.token_family == refresh_token_row(first["refresh_token"]).token_family
    assert userinfo(second["access_token"]).status_code == 200
    assert userinfo(first["access_token"]).status_code == 401
    assert TokenFamily.objects.count() == 1  # a rotation continues the family, it starts none
    assert [event.metadata["grant_type"] for event in events("oauth.token.issued")] == [
        "authorization_code",
        "refresh_token",
    ]


def test_a_reused_refresh_token_revokes_its_whole_family() -> None:
    client = registered_client()
    user = UserFactory.create()
    first = tokens(client, user=user)
    second = refresh(client, first["refresh_token"]).json()
    third = refresh(client, second["refresh_token"]).json()
    bystander = tokens(client, user=user)  # another family of the same user and client

    replay = refresh(client, first["refresh_token"])

    assert replay.status_code == 400
    assert replay.json() == oauth_error("invalid_grant")
    assert refresh_token_row(third["refresh_token"]).revoked is not None
    assert access_token_row(third["access_token"]) is None
    assert userinfo(third["access_token"]).status_code == 401
    assert refresh(client, third["refresh_token"]).json() == oauth_error("invalid_grant")
    assert userinfo(bystander["access_token"]).status_code == 200
    reused = events("oauth.token.refresh_reused")
    family = refresh_token_row(first["refresh_token"]).token_family
    assert (reused[0].outcome, reused[0].actor_id, reused[0].target_id) == (
        "failure",
        client.client_id,
        str(user.pk),
    )
    assert reused[0].metadata == {
        "client_id": client.client_id,
        "family": str(family),
        "revoked": {"refresh": 1, "access": 1},
    }


def test_a_refresh_token_presented_by_another_client_is_refused_and_revokes_nothing() -> None:
    owner, other = registered_client(), registered_client(name="Other")
    issued = tokens(owner)

    response = refresh(other, issued["refresh_token"])

    assert response.json() == oauth_error("invalid_grant")
    assert refresh(owner, issued["refresh_token"]).status_code == 200
    assert events("oauth.token.refresh_reused") == []


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_refreshes_with_one_token_give_one_pair_then_reuse_revokes_it(
    require_postgresql: None,
) -> None:
    client = registered_client()
    first = tokens(client)
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    issue = token_services.token_issued_record

    def slow_issue(**kwargs: Any) -> Any:
        time.sleep(0.5)  # the winner holds the refresh token's row lock a while
        return issue(**kwargs)

    def refresh_now() -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(refresh(client, first["refresh_token"]).status_code)
        finally:
            connection.close()

    with mock.patch.object(token_services, "token_issued_record", side_effect=slow_issue):
        threads = [threading.Thread(target=refresh_now) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(statuses) == [200, 400]
    assert [event.metadata["grant_type"] for event in events("oauth.token.issued")] == [
        "authorization_code",
        "refresh_token",
    ]
    assert len(events("oauth.token.refresh_reused")) == 1
    assert live_tokens() == (0, 0)


def test_a_family_ends_at_its_absolute_lifetime_however_often_it_rotates(settings: Any) -> None:
    settings.OAUTH_REFRESH_TOKEN_MAX_AGE_DAYS = 90
    client = registered_client()
    first = tokens(client)
    second = refresh(client, first["refresh_token"]).json()
    family = refresh_token_row(second["refresh_token"]).token_family
    TokenFamily.objects.filter(family=family).update(started_at=timezone.now() - timedelta(days=89, hours=23))
    third = refresh(client, second["refresh_token"]).json()  # still inside the lifetime
    TokenFamily.objects.filter(family=family).update(started_at=timezone.now() - timedelta(days=90))

    response = refresh(client, third["refresh_token"])

    assert response.status_code == 400
    assert response.json() == oauth_error("invalid_grant")
    assert refresh_token_row(third["refresh_token"]).revoked is None  # expired, not reused
    assert events("oauth.token.refresh_reused") == []


def test_an_older_family_without_a_record_ends_from_its_oldest_token(settings: Any) -> None:
    client = registered_client()
    issued = tokens(client)
    refresh_row = refresh_token_row(issued["refresh_token"])
    TokenFamily.objects.all().delete()  # issued before families were recorded
    get_refresh_token_model().objects.filter(pk=refresh_row.pk).update(
        created=timezone.now() - timedelta(days=91)
    )

    assert refresh(client, issued["refresh_token"]).json() == oauth_error("invalid_grant")


def test_an_unused_refresh_token_expires_after_the_idle_lifetime() -> None:
    client = registered_client()
    issued = tokens(client)
    get_access_token_model().objects.filter(pk=access_token_row(issued["access_token"]).pk).update(
        expires=timezone.now() - timedelta(days=30)
    )

    response = refresh(client, issued["refresh_token"])

    assert response.json() == oauth_error("invalid_grant")
    assert events("oauth.token.issued")[-1].metadata["grant_type"] == "authorization_code"


def test_a_deactivated_users_refresh_token_stops_at_once() -> None:
    client = registered_client()
    user = UserFactory.create()
    issued = tokens(client, user=user)
    User.objects.filter(pk=user.pk).update(is_active=False)  # even behind the services' back

    response = refresh(client, issued["refresh_token"])

    assert response.status_code == 400
    assert response.json() == oauth_error("invalid_grant")
    assert userinfo(issued["access_token"]).status_code == 401
    assert len(events("oauth.token.issued")) == 1


def test_deactivating_a_user_revokes_their_refresh_tokens() -> None:
    client = registered_client()
    user = UserFactory.create()
    issued = tokens(client, user=user)

    user_deactivate(user=user, reason="spam")

    assert refresh(client, issued["refresh_token"]).json() == oauth_error("invalid_grant")
    assert refresh_token_row(issued["refresh_token"]).revoked is not None


def test_a_refresh_may_narrow_the_scopes_but_never_widen_them() -> None:
    client = registered_client(allowed_scopes="openid profile offline_access users:read users:write")
    issued = tokens(client, scope="openid offline_access users:read")

    widened = refresh(client, issued["refresh_token"], scope="openid users:read users:write")
    narrowed = refresh(client, issued["refresh_token"], scope="openid users:read")

    assert widened.status_code == 400
    assert widened.json() == oauth_error("invalid_scope")
    assert narrowed.status_code == 200, narrowed.content
    assert narrowed.json()["scope"] == "openid users:read"


def test_a_missing_or_unknown_refresh_token_is_refused() -> None:
    client = registered_client()

    assert refresh(client, "not-a-token").json() == oauth_error("invalid_grant")
    assert refresh(client, "").json() == oauth_error("invalid_grant")
    missing = token_request({"grant_type": "refresh_token", **client.credentials()})
    assert missing.status_code == 400
    assert missing.json() == oauth_error("invalid_request", "Missing refresh token parameter.")
