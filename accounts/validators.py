"""Field rules for users. Each error's code names the rule that failed."""

from __future__ import annotations

import re
import unicodedata

import idna
from confusable_homoglyphs import categories as unicode_scripts
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


# --- e-mail addresses: one spelling per mailbox ---------------------------------------------------

# Invisible and format characters (Cf: zero-width spaces and joiners, bidi overrides, soft
# hyphens...), controls (Cc), line and paragraph separators, and code points with no meaning
# (private use, surrogates, unassigned). Each could make an address look like another one.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})
# Scripts ignored when deciding whether a domain label mixes scripts (digits, hyphens, marks).
SCRIPT_NEUTRAL = frozenset({"COMMON", "INHERITED"})
# The combinations of scripts one label may use beside a single script: Unicode's "highly
# restrictive" level (UTS #39 §5.2), since Japanese, Chinese and Korean mix them by nature.
SCRIPT_COMBINATIONS = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)


def _label_scripts(label: str) -> frozenset[str]:
    return frozenset(unicode_scripts.alias(character) or "UNKNOWN" for character in label) - SCRIPT_NEUTRAL


def _label_mixes_scripts(label: str) -> bool:
    scripts = _label_scripts(label)
    return len(scripts) > 1 and not any(scripts <= allowed for allowed in SCRIPT_COMBINATIONS)


def email_address_canonical(value: str) -> str:
    """The one spelling of an address, compared and stored; refuses look-alikes.

    Refuses invisible, format and control characters anywhere and a domain label that mixes
    scripts (a Cyrillic "a", U+0430, among Latin letters), then normalizes: NFKC (fullwidth and other
    compatibility forms become plain letters), and the domain mapped by UTS #46 and kept in its
    Unicode form, lowercase (`BÜCHER.example` and `xn--bcher-kva.example` are one domain).
    The syntax itself is checked by the e-mail field's validator.
    """
    if any(unicodedata.category(character) in INVISIBLE_CATEGORIES for character in value):
        raise ValidationError(
            "E-mail addresses cannot contain invisible, formatting or control characters.",
            code="email_invisible_characters",
        )
    value = unicodedata.normalize("NFKC", value).strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return value
    if domain.isascii() and "xn--" not in domain.lower():
        return f"{local}@{domain.lower()}"
    try:
        domain = idna.decode(idna.encode(domain, uts46=True))
    except idna.IDNAError:
        raise ValidationError("Enter a valid e-mail address.", code="invalid") from None
    if any(_label_mixes_scripts(label) for label in domain.split(".")):
        raise ValidationError(
            "This domain mixes letters of several alphabets, as look-alike addresses do.",
            code="email_mixed_script_domain",
        )
    return f"{local}@{domain}"
