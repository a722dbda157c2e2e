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


def sign_up_in_parallel(
    bodies: list[dict[str, str]], path: str = "/_allauth/app/v1/auth/signup"
) -> list[Any]:
    """Post every body at once (a barrier releases them together); the responses, in body order."""
    responses: list[Any] = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def sign_up(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            client = Client(raise_request_exception=False)
            if path.startswith("/_allauth/"):
                responses[index] = client.post(path, bodies[index], content_type="application/json")
            else:
                responses[index] = client.post(path, bodies[index])
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_up, args=(index,)) for index in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def test_concurrent_signups_with_one_username_give_the_losers_the_usual_400(
    require_postgresql: None, settings: Any
) -> None:
    """The review's finding 6 (issue 13): the same username with different addresses, at once — the
    losers got a 500 (50 of 50 trials); they get what a sequential duplicate gets."""
    settings.RATELIMIT_SIGNUP = "1000/m"
    settings.ACCOUNT_RATE_LIMITS = False
    password = "a-Long-enough-pass-8812"
    bodies = [{"email": f"twin{n}@example.com", "username": "twin", "password": password} for n in range(8)]

    responses = sign_up_in_parallel(bodies)
    sequential = Client().post(
        "/_allauth/app/v1/auth/signup",
        {"email": "late@example.com", "username": "twin", "password": password},
        content_type="application/json",
    )

    assert sequential.status_code == 400
    assert User.objects.filter(username="twin").count() == 1
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [400] * 7 + [401]  # one account (verify your e-mail), seven clean refusals
    for response in responses:
        if response.status_code == 400:
            assert response.json() == sequential.json()


def test_concurrent_signups_on_the_page_with_one_username_show_the_form_again(
    require_postgresql: None, settings: Any
) -> None:
    settings.RATELIMIT_SIGNUP = "1000/m"
    settings.ACCOUNT_RATE_LIMITS = False
    password = "a-Long-enough-pass-8812"
    bodies = [
        {
            "email": f"page{n}@example.com",
            "username": "pagetwin",
            "password1": password,
            "password2": password,
        }
        for n in range(6)
    ]

    responses = sign_up_in_parallel(bodies, path="/accounts/signup/")

    assert User.objects.filter(username="pagetwin").count() == 1
    assert sorted(response.status_code for response in responses) == [200] * 5 + [302]
    for response in responses:
        if response.status_code == 200:
            assert "A user with that username already exists." in response.content.decode()
