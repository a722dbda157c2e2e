"""Sign-up does not tell which addresses have accounts (issue 12, finding 4): a taken address is
answered after the same expensive work as a new one (one password hash) and with the same side
effects deferred to the commit (one e-mail), so the two paths' timings overlap. The timings
themselves are measured in bench/signup_timing.py, never in a test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core import mail
from django.test import Client

from accounts.models import User
from accounts.tests.headless import APP, USER_AGENT, verified_user

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-enough-pass-8812"


class CountingHasher(MD5PasswordHasher):
    """The tests' fast hasher, counting the hashes it computes."""

    algorithm = "counting_md5"
    computed: ClassVar[int] = 0

    def encode(self, password: str, salt: str) -> str:
        type(self).computed += 1
        return super().encode(password, salt)


@pytest.fixture(autouse=True)
def counting_hasher(settings: Any) -> type[CountingHasher]:
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher", *settings.PASSWORD_HASHERS]
    CountingHasher.computed = 0
    return CountingHasher


def sign_up(kind: str, email: str, username: str, capture: Callable[..., Any]) -> tuple[Any, int, int]:
    """(response, hashes computed, e-mails sent before the commit) of one sign-up; then the commit."""
    CountingHasher.computed = 0
    with capture(execute=True):
        if kind == "page":
            response = Client().post(
                "/accounts/signup/",
                {"email": email, "username": username, "password1": PASSWORD, "password2": PASSWORD},
            )
        else:
            response = Client().post(
                f"{APP}/auth/signup",
                {"email": email, "username": username, "password": PASSWORD},
                content_type="application/json",
                headers={"User-Agent": USER_AGENT},
            )
        sent_before_commit = len(mail.outbox)
    return response, CountingHasher.computed, sent_before_commit


@pytest.mark.parametrize("kind", ["app", "page"])
def test_a_taken_address_costs_the_same_hash_and_the_same_deferred_mail_as_a_new_one(
    kind: str, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    verified_user(username="owner", email="taken@example.com")

    new, new_hashes, new_early_mail = sign_up(
        kind, "new@example.com", "newcomer", django_capture_on_commit_callbacks
    )
    new_mail = [message.to for message in mail.outbox]
    mail.outbox.clear()
    taken, taken_hashes, taken_early_mail = sign_up(
        kind, "taken@example.com", "someone", django_capture_on_commit_callbacks
    )

    assert (new.status_code, taken.status_code) == ((401, 401) if kind == "app" else (302, 302))
    assert new_hashes == taken_hashes == 1
    assert new_early_mail == taken_early_mail == 0
    assert (new_mail, [message.to for message in mail.outbox]) == (
        [["new@example.com"]],
        [["taken@example.com"]],
    )
    assert list(User.objects.order_by("username").values_list("username", flat=True)) == ["newcomer", "owner"]


def test_a_sign_up_with_a_taken_address_is_in_its_owners_security_log(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """Only the owner who verified the address reads it; nothing in the answer differs."""
    from audit.models import AuditEvent

    owner = verified_user(username="owner", email="taken@example.com")

    sign_up("app", "taken@example.com", "someone", django_capture_on_commit_callbacks)

    [event] = AuditEvent.objects.filter(action="accounts.user.sign_up_with_taken_address")
    assert (event.actor_type, event.target_id, event.outcome) == ("anonymous", str(owner.pk), "failure")
    assert event.metadata == {"email": "taken@example.com"}
