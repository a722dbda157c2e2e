"""Factories for accounts models."""

from __future__ import annotations

from typing import cast

import factory

from accounts.models import User

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

