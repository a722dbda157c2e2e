"""Look-alike e-mail addresses and usernames (issue 12, finding 5): invisible and format characters
are refused, addresses are normalized (NFKC, UTS #46 for the domain) before the uniqueness check,
and domains mixing scripts are refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client

from accounts.models import User
from accounts.tests.factories import UserFactory
from accounts.tests.headless import APP, USER_AGENT, verified_user

pytestmark = pytest.mark.django_db

PASSWORD = "a-Long-enough-pass-8812"


@pytest.fixture(autouse=True)
def _send_mail_on_commit(django_capture_on_commit_callbacks: Callable[..., Any]) -> None:
    global capture_on_commit
    capture_on_commit = django_capture_on_commit_callbacks


capture_on_commit: Callable[..., Any]


def sign_up(email: str, username: str = "newcomer") -> Any:
    """A sign-up over the headless API, its e-mails sent (they go out once the request commits)."""
    with capture_on_commit(execute=True):
        return Client().post(
            f"{APP}/auth/signup",
            {"email": email, "username": username, "password": PASSWORD},
            content_type="application/json",
            headers={"User-Agent": USER_AGENT},
        )


def error_codes(response: Any) -> list[tuple[str, str | None]]:
    return [(error["code"], error["param"]) for error in response.json()["errors"]]


def test_sign_up_refuses_the_reviewers_look_alike_address() -> None:
    """The review's finding: `someone@example.com` + U+200B made a second account whose mail went
    to someone@example.com (Django's syntax check lets it through: IDNA maps the character away)."""
    verified_user(email="someone@example.com")

    response = sign_up("someone@example.com\u200b")

    assert response.status_code == 400, response.content
    assert error_codes(response) == [("email_invisible_characters", "email")]
    assert User.objects.count() == 1
    assert mail.outbox == []


INVISIBLE = {
    "zero-width-space": "\u200b",
    "zero-width-joiner": "\u200d",
    "word-joiner": "\u2060",
    "bom": "\ufeff",
    "rtl-override": "\u202e",
    "soft-hyphen": "\u00ad",
    "bell": "\u0007",
}


@pytest.mark.parametrize("character", INVISIBLE.values(), ids=INVISIBLE.keys())
@pytest.mark.parametrize(
    "spelling",
    ["someone@example.com{}", "some{}one@example.com", "someone@exam{}ple.com", "{}someone@example.com"],
)
def test_sign_up_refuses_invisible_and_control_characters_anywhere_in_the_address(
    character: str, spelling: str
) -> None:
    """Refused before any account or e-mail: ours where the syntax check would let the address
    through, the syntax check's own `invalid` where it already refuses it."""
    verified_user(email="someone@example.com")

    response = sign_up(spelling.format(character))

    assert response.status_code == 400, response.content
    [(code, field)] = error_codes(response)
    assert (code in {"email_invisible_characters", "invalid"}, field) == (True, "email")
    assert User.objects.count() == 1
    assert mail.outbox == []


@pytest.mark.parametrize(
    "email",
    [
        "someone@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",  # fullwidth "example": NFKC makes it ASCII
        "SOMEONE@EXAMPLE.COM",
    ],
)
def test_a_normalized_copy_of_a_taken_address_is_the_taken_address(email: str) -> None:
    """Answered as for any taken address (no enumeration): no second account, and the owner is told."""
    verified_user(email="someone@example.com")

    response = sign_up(email)

    assert response.status_code in (200, 401), response.content
    assert User.objects.count() == 1
    assert [message.to for message in mail.outbox] == [["someone@example.com"]]
    assert "already" in mail.outbox[0].subject.lower() or "already" in str(mail.outbox[0].body).lower()


def test_an_internationalized_domain_is_stored_in_one_spelling() -> None:
    response = sign_up("reader@B\u00dcCHER.example", username="reader")

    assert response.status_code == 401, response.content  # signed up, the address to verify
    user = User.objects.get(username="reader")
    assert user.email == "reader@b\u00fccher.example"
    assert list(EmailAddress.objects.filter(user=user).values_list("email", flat=True)) == [
        "reader@b\u00fccher.example"
    ]


@pytest.mark.parametrize("spelling", ["reader@xn--bcher-kva.example", "reader@B\u00dcCHER.EXAMPLE"])
def test_an_internationalized_domain_is_one_address_in_either_spelling(spelling: str) -> None:
    verified_user(username="reader", email="reader@b\u00fccher.example")

    response = sign_up(spelling, username="reader_two")

    assert response.status_code == 401, response.content
    assert User.objects.filter(username="reader_two").exists() is False
    assert [message.to for message in mail.outbox] == [["reader@b\u00fccher.example"]]


@pytest.mark.parametrize(
    "email",
    [
        "someone@ex\u0430mple.com",  # a Cyrillic a (U+0430) among Latin letters
        "someone@\u0440\u0430ypal.com",  # Cyrillic er and a, then Latin
        "someone@g\u03bfogle.com",  # a Greek omicron
    ],
)
def test_sign_up_refuses_a_domain_that_mixes_scripts(email: str) -> None:
    response = sign_up(email)

    assert response.status_code == 400, response.content
    assert error_codes(response) == [("email_mixed_script_domain", "email")]
    assert User.objects.count() == 0


@pytest.mark.parametrize("email", ["ivan@пример.example", "taro@日本語ドメイン.example", "li@例子.example"])
def test_sign_up_accepts_a_domain_in_one_script(email: str) -> None:
    """Whole labels in one writing system (Japanese mixes Han and kana by nature) are ordinary."""
    response = sign_up(email)

    assert response.status_code in (200, 401), response.content
    assert User.objects.get(username="newcomer").email == email


@pytest.mark.parametrize(
    "username",
    [
        "new\u200bcomer",
        "newcomer\u200d",
        "\u202enewcomer",
        "\uff4e\uff45\uff57\uff43\uff4f\uff4d\uff45\uff52",
    ],
)
def test_sign_up_refuses_invisible_or_look_alike_characters_in_a_username(username: str) -> None:
    UserFactory.create(username="newcomer")

    response = sign_up("fresh@example.com", username=username)

    assert response.status_code == 400, response.content
    assert error_codes(response) == [("username_invalid_characters", "username")]
    assert User.objects.count() == 1


def test_adding_an_address_with_an_invisible_character_is_refused() -> None:
    from accounts.tests.test_audit_events import browser_signed_in

    user = verified_user(email="kept@example.com")
    client = browser_signed_in(user)

    response = client.post(
        "/_allauth/browser/v1/account/email",
        {"email": "kept@example.com\u200b"},
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    assert error_codes(response) == [("email_invisible_characters", "email")]
    assert list(EmailAddress.objects.filter(user=user).values_list("email", flat=True)) == [
        "kept@example.com"
    ]


def test_an_invitation_to_a_look_alike_address_is_refused() -> None:
    from rest_framework.test import APIClient

    from accounts.services.organizations import organization_create

    owner = verified_user(email="owner@example.com")
    organization = organization_create(actor=owner, name="Acme", slug="acme")
    client = APIClient()
    client.force_authenticate(owner)

    response = client.post(
        f"/api/v1/organizations/{organization.pk}/invitations/",
        {"email": "someone@ex\u0430mple.com"},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert [(error["code"], error["attr"]) for error in response.json()["errors"]] == [
        ("email_mixed_script_domain", "email")
    ]
