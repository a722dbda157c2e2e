"""Concurrent sign-ups with one address in different letter cases: one account, no 500."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery.result import _set_task_join_will_block  # type: ignore[attr-defined]  # not in the stubs
from django.db import connection
from django.test import Client

from accounts.models import User

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _restore_celery_join_flag() -> Iterator[None]:
    """Eager Celery flips a process-wide "inside a task" flag around each task without a lock, so
    twenty threads queueing e-mails at once can leave it set; later `result.get()` calls would
    then refuse. Put it back."""
    yield
    _set_task_join_will_block(False)


SIGNUPS = 20


def test_twenty_concurrent_signups_with_one_address_create_one_account(
    require_postgresql: None, settings: Any
) -> None:
    # Twenty sign-ups from one address in a second: lift the per-IP limits this test is not about.
    settings.RATELIMIT_SIGNUP = "1000/m"
    settings.ACCOUNT_RATE_LIMITS = False
    statuses: list[int] = []
    barrier = threading.Barrier(SIGNUPS)

    def sign_up(number: int) -> None:
        email = "".join(
            char.upper() if (number >> index) & 1 else char for index, char in enumerate("racer@example.com")
        )
        try:
            barrier.wait(timeout=30)
            response = Client().post(
                "/_allauth/app/v1/auth/signup",
                {"email": email, "username": f"racer_{number}", "password": "a-Long-enough-pass-8812"},
                content_type="application/json",
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_up, args=(number,)) for number in range(SIGNUPS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert User.objects.filter(email__iexact="racer@example.com").count() == 1
    assert len(statuses) == SIGNUPS
    assert set(statuses) == {401}  # every caller hears "verify your e-mail", winner or not


def test_a_signup_that_loses_the_race_at_the_database_gets_the_usual_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A competitor commits the same address after this sign-up's form checks but before its insert."""
    from accounts.adapter import AccountAdapter
    from accounts.services import user_create

    original_new_user = AccountAdapter.new_user

    def competitor_commits_first(self: AccountAdapter, request: Any) -> Any:
        user_create(username="winner", email="RACER@example.com", password="a-Long-enough-pass-8812")
        return original_new_user(self, request)

    monkeypatch.setattr(AccountAdapter, "new_user", competitor_commits_first)

    response = Client().post(
        "/_allauth/app/v1/auth/signup",
        {"email": "racer@example.com", "username": "loser", "password": "a-Long-enough-pass-8812"},
        content_type="application/json",
    )

    assert response.status_code == 401
    assert response.json()["data"]["flows"][-1]["id"] == "verify_email"
    assert list(User.objects.values_list("username", flat=True)) == ["winner"]
