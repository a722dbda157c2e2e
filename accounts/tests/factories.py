"""Factories for accounts models."""

from __future__ import annotations

from typing import cast

import factory

from accounts.models import Membership, Organization, OrganizationRole, User

DEFAULT_PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user_{n}")
    display_name = factory.LazyAttribute(lambda user: user.username)
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password(DEFAULT_PASSWORD)

    @factory.post_generation
    def initial_roles(self, create: bool, extracted: object, **kwargs: object) -> None:
        """Every user has the `user` role, as `accounts.services.user_create` gives it. Staff roles
        are given explicitly (`user_set_roles`); the `is_staff` flag alone grants none."""
        if create:
            from django.contrib.auth.models import Group

            cast(User, self).groups.add(Group.objects.get_or_create(name="user")[0])


class OrganizationFactory(factory.django.DjangoModelFactory[Organization]):
    """An organization without members; add them with `MembershipFactory`."""

    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.Sequence(lambda n: f"organization-{n}")


class MembershipFactory(factory.django.DjangoModelFactory[Membership]):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = OrganizationRole.MEMBER


# --- second factors and step-up in tests ---------------------------------------------------------


def totp_enrol(user: User) -> str:
    """Give `user` a TOTP authenticator (as allauth's enrolment does) and return its secret."""
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


def totp_code(secret: str, *, steps_from_now: int = 0) -> str:
    """The TOTP code of `secret` for the current 30-second step (or one `steps_from_now` away)."""
    import time

    from allauth.mfa import app_settings
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

    counter = int(time.time()) // app_settings.TOTP_PERIOD + steps_from_now
    return format_hotp_value(hotp_value(secret, counter))


def recovery_codes_enrol(user: User) -> list[str]:
    """Give `user` recovery codes (they back up a real factor) and return them."""
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes

    return RecoveryCodes.activate(user).generate_codes()


def mark_reauthenticated(client: object, *, seconds_ago: float = 0) -> None:
    """Record in a test client's session that its user just re-authenticated (step-up)."""
    import time

    from allauth.account.internal.flows.login import AUTHENTICATION_METHODS_SESSION_KEY

    session = client.session  # type: ignore[attr-defined]
    records = list(session.get(AUTHENTICATION_METHODS_SESSION_KEY, []))
    records.append({"method": "password", "at": time.time() - seconds_ago, "reauthenticated": True})
    session[AUTHENTICATION_METHODS_SESSION_KEY] = records
    session.save()


# --- signing in through the pages, as a browser does -----------------------------------------------

from typing import Any  # noqa: E402  (helpers appended below the lead's)

from django.test import Client  # noqa: E402


def sign_in_through_pages(
    client: Client,
    user: User,
    *,
    code: str | None = None,
    next_url: str = "",
    password: str = DEFAULT_PASSWORD,
) -> Any:
    """Sign `user` in as a browser does: allauth's sign-in page, then the second-factor page with
    `code` when given. Returns the last response (a redirect to `next_url` once signed in)."""
    path = f"/accounts/login/?next={next_url}" if next_url else "/accounts/login/"
    response = client.post(path, {"login": user.username, "password": password})
    if code is not None:
        assert response["Location"] == "/accounts/2fa/authenticate/", response
        response = client.post("/accounts/2fa/authenticate/", {"code": code})
    return response
