"""The user model's rules, through the service that creates users and at the database."""

from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from accounts.models import User
from accounts.services import user_create, user_update_profile
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def error_codes(error: ValidationError) -> dict[str, list[str]]:
    return {field: [item.code or "" for item in items] for field, items in error.error_dict.items()}


def create(**fields: object) -> User:
    values: dict[str, object] = {
        "username": "alice",
        "email": "alice@example.com",
        "password": DEFAULT_PASSWORD,
    }
    values.update(fields)
    return user_create(**values)  # type: ignore[arg-type]


def test_user_create_makes_a_user_with_a_uuid_key_and_timestamps() -> None:
    user = create()

    user.refresh_from_db()
    assert isinstance(user.pk, uuid.UUID)
    assert user.username == "alice"
    assert user.display_name == "alice"
    assert user.email == "alice@example.com"
    assert user.description == ""
    assert user.is_active is True
    assert user.is_external_only is False
    assert user.deleted_at is None
    assert user.created_at is not None
    assert user.updated_at >= user.created_at
    assert user.check_password(DEFAULT_PASSWORD)


@pytest.mark.parametrize(
    ("username", "code"),
    [
        ("ab", "username_too_short"),
        ("a" * 33, "max_length"),
        ("Alice", "username_invalid_characters"),
        ("alice-smith", "username_invalid_characters"),
        ("alice smith", "username_invalid_characters"),
        ("élodie", "username_invalid_characters"),
    ],
)
def test_user_create_rejects_a_username_breaking_a_rule(username: str, code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        create(username=username)

    assert error_codes(caught.value) == {"username": [code]}
    assert not User.objects.exists()


@pytest.mark.parametrize("username", ["abc", "a" * 32, "user_01", "___", "007"])
def test_user_create_accepts_usernames_within_the_rules(username: str) -> None:
    assert create(username=username).username == username


def test_user_create_rejects_a_taken_username() -> None:
    create()

    with pytest.raises(ValidationError) as caught:
        create(email="other@example.com")

    assert error_codes(caught.value) == {"username": ["unique"]}
    assert User.objects.count() == 1


@pytest.mark.parametrize("display_name", ["Alice Smith", "ALICE_SMITH", "alice smith", "aLiCe_sMiTh"])
def test_display_name_may_differ_by_case_and_spaces_for_underscores(display_name: str) -> None:
    user = create(username="alice_smith", display_name=display_name)

    assert user.display_name == display_name


@pytest.mark.parametrize(
    "display_name", ["Alice", "Alice  Smith", "Alice-Smith", "alice_smith2", "Alicia Smith"]
)
def test_display_name_may_not_differ_otherwise(display_name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        create(username="alice_smith", display_name=display_name)

    assert error_codes(caught.value) == {"display_name": ["display_name_mismatch"]}
    assert not User.objects.exists()


@pytest.mark.parametrize("other_email", ["alice@example.com", "ALICE@example.com", "Alice@Example.COM"])
def test_email_is_unique_regardless_of_case(other_email: str) -> None:
    create()

    with pytest.raises(ValidationError) as caught:
        create(username="alice2", email=other_email)

    assert error_codes(caught.value) == {"email": ["email_taken"]}
    assert User.objects.count() == 1


def test_email_uniqueness_is_a_database_constraint() -> None:
    create()
    twin = User(username="alice2", display_name="alice2", email="ALICE@EXAMPLE.COM")

    with pytest.raises(IntegrityError), transaction.atomic():
        twin.save()  # skips full_clean(): only the database stands in the way

    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("column", "value"),
    [("username", "Bad Name"), ("display_name", "somebody else")],
)
def test_username_and_display_name_rules_are_database_constraints(column: str, value: str) -> None:
    user = create()

    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE accounts_user SET {column} = %s WHERE id = %s", [value, user.pk.hex])  # noqa: S608

    user.refresh_from_db()
    assert (user.username, user.display_name) == ("alice", "alice")


def test_description_is_limited_to_256_characters() -> None:
    user = create(description="x" * 256)

    with pytest.raises(ValidationError) as caught:
        user_update_profile(user=user, description="x" * 257)

    assert error_codes(caught.value) == {"description": ["max_length"]}
    user.refresh_from_db()
    assert user.description == "x" * 256


def test_a_user_without_password_is_external_only() -> None:
    user = create(password=None)

    assert user.is_external_only is True
    assert user.has_usable_password() is False


def test_user_create_rejects_a_weak_password_and_saves_nothing() -> None:
    with pytest.raises(ValidationError) as caught:
        create(password="alice")

    codes = [item.code for item in caught.value.error_list]
    assert "password_too_short" in codes
    assert not User.objects.exists()


def test_sign_in_name_lookup_is_case_insensitive() -> None:
    user = UserFactory(username="bob")

    assert User.objects.get_by_natural_key("BOB") == user


def test_create_superuser_makes_a_staff_superuser() -> None:
    user = User.objects.create_superuser("root_user", "root@example.com", DEFAULT_PASSWORD)

    assert (user.is_staff, user.is_superuser, user.display_name) == (True, True, "root_user")
