"""Field rules for users. Each error's code names the rule that failed."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

USERNAME_MIN_LENGTH = 3
USERNAME_MAX_LENGTH = 32
USERNAME_PATTERN = rf"^[a-z0-9_]{{{USERNAME_MIN_LENGTH},{USERNAME_MAX_LENGTH}}}$"
_USERNAME_CHARACTERS = re.compile(r"^[a-z0-9_]*$")


@deconstructible
class UsernameValidator:
    """At least 3 lowercase letters, digits and underscores (the field's max_length caps it at 32)."""

    def __call__(self, value: str) -> None:
        if len(value) < USERNAME_MIN_LENGTH:
            raise ValidationError(
                "Usernames have at least %(limit)d characters.",
                code="username_too_short",
                params={"limit": USERNAME_MIN_LENGTH},
            )
        if not _USERNAME_CHARACTERS.fullmatch(value):
            raise ValidationError(
                "Usernames contain only lowercase letters, digits and underscores.",
                code="username_invalid_characters",
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UsernameValidator)


def display_name_matches_username(display_name: str, username: str) -> bool:
    """A display name may differ from the username only by letter case and spaces for underscores."""
    return display_name.replace(" ", "_").lower() == username
