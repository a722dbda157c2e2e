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
