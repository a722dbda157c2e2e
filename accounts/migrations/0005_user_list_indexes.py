"""Indexes behind the staff user list: ordering by last sign-in (then ID), and substring search.

Both are written per database, so they live here rather than in `User.Meta.indexes`:

- The list orders by last sign-in with "never" as the oldest: `last_login ASC NULLS FIRST, id` and
  its exact reverse, `DESC NULLS LAST, id DESC`. One index in that order serves both directions.
  PostgreSQL needs `NULLS FIRST` spelled out (its default puts NULLs last ascending); SQLite
  sorts NULLs first already, and refuses the clause in an index.
- Search (`UserQuerySet.search`) is `icontains`, which Django writes on PostgreSQL as
  `UPPER(column::text) LIKE UPPER('%term%')`; trigram GIN indexes on exactly that expression
  serve it at any table size. SQLite (the embedded default) has no such index type.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

SEARCH_COLUMNS = ("username", "email", "display_name")
LAST_LOGIN_INDEX = "accounts_user_last_login_idx"


def _search_index_name(column: str) -> str:
    return f"accounts_user_{column}_trgm"


def create_indexes(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.execute(f'CREATE INDEX "{LAST_LOGIN_INDEX}" ON "accounts_user" ("last_login", "id")')
        return
    schema_editor.execute(
        f'CREATE INDEX "{LAST_LOGIN_INDEX}" ON "accounts_user" ("last_login" ASC NULLS FIRST, "id")'
    )
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in SEARCH_COLUMNS:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{_search_index_name(column)}" ON "accounts_user" '  # noqa: S608
            f'USING gin ((UPPER("{column}"::text)) gin_trgm_ops)'
        )


def drop_indexes(apps: Any, schema_editor: Any) -> None:
    schema_editor.execute(f'DROP INDEX IF EXISTS "{LAST_LOGIN_INDEX}"')
    if schema_editor.connection.vendor == "postgresql":
        for column in SEARCH_COLUMNS:
            schema_editor.execute(f'DROP INDEX IF EXISTS "{_search_index_name(column)}"')


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_role_groups"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
