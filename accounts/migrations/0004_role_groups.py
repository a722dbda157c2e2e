"""The four roles as Django groups; every existing user gets the `user` role."""

from __future__ import annotations

from typing import Any

from django.db import migrations

ROLES = ("admin", "moderator", "tester", "user")


def create_role_groups(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("accounts", "User")
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLES}
    groups["user"].user_set.add(*User.objects.all())
    groups["admin"].user_set.add(*User.objects.filter(is_superuser=True))


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_users_roles_blocks_organizations_exports"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_role_groups, migrations.RunPython.noop)]
