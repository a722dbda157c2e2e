"""Indexes behind the staff user list: ordering by last sign-in, and substring search.

Search (`UserQuerySet.search`) is `icontains`, which Django writes on PostgreSQL as
`UPPER(column::text) LIKE UPPER('%term%')`; trigram GIN indexes on exactly that expression serve
it at any table size. SQLite (the embedded default) has no such index type and needs none.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

SEARCH_COLUMNS = ("username", "email", "display_name")


def _index_name(column: str) -> str:
    return f"accounts_user_{column}_trgm"


def create_search_indexes(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in SEARCH_COLUMNS:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{_index_name(column)}" ON "accounts_user" '  # noqa: S608
            f'USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        )


def drop_search_indexes(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in SEARCH_COLUMNS:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{_index_name(column)}"')


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_role_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="user",
            index=models.Index(fields=["last_login"], name="accounts_user_last_login_idx"),
        ),
        migrations.RunPython(create_search_indexes, drop_search_indexes),
    ]
