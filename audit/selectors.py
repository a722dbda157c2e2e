"""Reading the audit trail: helpers that keep lists, filters and search on the indexes at millions of events.

The API's filters are `audit.filters.AuditEventFilter`."""

from __future__ import annotations

from django.db import connection
from django.db.models import Q

from audit.models import AuditEvent, AuditEventQuerySet

# Columns whose distinct values can be listed by walking an index that starts with them.
_INDEXED_LEADING_COLUMNS = frozenset({"action", "actor_type", "target_type", "outcome"})


def audit_event_values(field_name: str) -> list[str]:
    """The distinct values of an indexed column, in order.

    A loose index scan (one index probe per distinct value) instead of `SELECT DISTINCT`, which
    would read every row: these columns hold a few dozen values across millions of events.
    """
    if field_name not in _INDEXED_LEADING_COLUMNS:
        raise ValueError(f"{field_name} does not lead an index of the audit table.")
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    column = connection.ops.quote_name(field_name)  # each of these fields is stored under its name
    # Identifiers come from the model above, never from input.
    sql = (
        f"WITH RECURSIVE walk(value) AS ("  # noqa: S608
        f" SELECT MIN({column}) FROM {table}"
        f" UNION ALL"
        f" SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > walk.value)"
        f" FROM walk WHERE walk.value IS NOT NULL"
        f") SELECT value FROM walk WHERE value IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [row[0] for row in cursor.fetchall()]


def audit_event_search(queryset: AuditEventQuerySet, term: str) -> AuditEventQuerySet:
    """Events whose actor ID, target ID, request ID or action is exactly `term`.

    Each branch names the leading columns of an index (every actor type, every target type), so
    the database combines index scans instead of reading the table.
    """
    term = term.strip()
    if not term:
        return queryset
    return queryset.filter(
        Q(actor_type__in=AuditEvent.ActorType.values, actor_id=term)
        | Q(target_type__in=audit_event_values("target_type"), target_id=term)
        | Q(request_id=term)
        | Q(action=term)
    )
