# A benchmark, not the service: SQL built from constants, checks that abort the run, and git.
# ruff: noqa: S101, S607, S608
"""Audit trail at scale: list filters, cursor pages, the admin and the export over a million events.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/identity_bench python bench/audit_events.py

Loads EVENTS synthetic events (one INSERT ... SELECT over generate_series; skipped when the table
already holds that many, unless --reload), then for every filter of GET /api/v1/audit-events/
(and of the user's own trail and the admin) takes the SQL the view really runs, shows its plan
(EXPLAIN ANALYZE, BUFFERS) and times it. Finally it streams the export and measures rows per
second and Python memory. `--write docs/benchmarks.md` replaces this benchmark's section there.
Never point it at a database whose audit trail matters: --reload truncates the table.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
os.environ.setdefault("API_THROTTLE_USER", "1000000/minute")  # the benchmark is one very busy user

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from accounts.models import User  # noqa: E402
from audit.filters import AuditEventFilter  # noqa: E402
from audit.models import AuditEvent  # noqa: E402

TABLE = "audit_auditevent"
SECTION_START = "<!-- bench/audit_events.py: start -->"
SECTION_END = "<!-- bench/audit_events.py: end -->"

ACTIONS = [
    "accounts.user.signed_in",
    "accounts.user.token_refreshed",
    "accounts.user.signed_out",
    "accounts.user.sign_in_failed",
    "oauth.token.issued",
    "oauth.token.refreshed",
    "oauth.consent.granted",
    "accounts.user.session_revoked",
    "accounts.user.profile_updated",
    "files.file.uploaded",
    "featureflags.flag.evaluated",
    "accounts.user.password_changed",
    "accounts.user.email_verified",
    "oauth.token.revoked",
    "accounts.user.mfa_authenticated",
    "accounts.user.signed_up",
    "accounts.user.password_reset",
    "accounts.user.locked_out",
    "accounts.organization.member_added",
    "accounts.organization.member_removed",
    "files.file.deleted",
    "accounts.user.email_changed",
    "oauth.client.registered",
    "admin.object.changed",
    "accounts.user.mfa_enabled",
    "featureflags.flag.changed",
    "admin.object.added",
    "accounts.user.deactivated",
    "admin.object.deleted",
    "audit.events.pruned",
]
USERS = 5000
CLIENTS = 50
ORGANIZATIONS = 300
IPS = 50_000
DAYS = 365

# Skewed like real traffic: random()^k favours low numbers (sign-ins, a few very active users).
LOAD_SQL = f"""
INSERT INTO {TABLE} (event_id, occurred_at, action, outcome, actor_type, actor_id, actor_label,
    target_type, target_id, target_label, ip_address, user_agent, request_id, changes, metadata,
    previous_hash, hash)
SELECT
    md5('event' || g)::uuid,
    %(start)s::timestamptz + (g * %(step)s + random() * 2) * interval '1 second',
    (%(actions)s::text[])[1 + floor(power(random(), 2.5) * {len(ACTIONS)})::int],
    CASE WHEN random() < 0.08 THEN 'failure' ELSE 'success' END,
    actor.kind,
    CASE actor.kind WHEN 'user' THEN md5('user' || actor.number)::uuid::text
                    WHEN 'client' THEN 'client-' || mod(actor.number, {CLIENTS}) ELSE '' END,
    CASE actor.kind WHEN 'user' THEN 'user_' || actor.number
                    WHEN 'client' THEN 'Client ' || mod(actor.number, {CLIENTS})
                    WHEN 'system' THEN 'system' ELSE '' END,
    target.kind,
    CASE target.kind WHEN 'accounts.user' THEN md5('user' || target.number)::uuid::text
                     WHEN 'oauth_provider.application' THEN 'client-' || mod(target.number, {CLIENTS})
                     WHEN 'accounts.organization'
                         THEN md5('org' || mod(target.number, {ORGANIZATIONS}))::uuid::text
                     ELSE '' END,
    CASE WHEN target.kind = '' THEN '' ELSE target.kind || ' ' || target.number END,
    CASE WHEN actor.kind = 'system' THEN NULL
         ELSE '10.0.0.0'::inet + floor(power(random(), 2) * {IPS})::int END,
    (ARRAY['Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0', 'Mozilla/5.0 (iPhone) Safari/18',
           'okhttp/4.12', 'python-requests/2.32', 'curl/8.5'])[1 + floor(random() * 5)::int],
    md5('request' || (g / 2)),
    CASE WHEN random() < 0.1 THEN '{{"is_active": [true, false]}}'::jsonb ELSE '{{}}'::jsonb END,
    '{{"via": "/accounts/login/"}}'::jsonb,
    encode(sha256(('event' || (g - 1))::bytea), 'hex'),
    encode(sha256(('event' || g)::bytea), 'hex')
FROM generate_series(1, %(events)s) AS g
CROSS JOIN LATERAL (
    SELECT CASE WHEN r < 0.85 THEN 'user' WHEN r < 0.90 THEN 'client'
                WHEN r < 0.95 THEN 'system' ELSE 'anonymous' END AS kind,
           floor(power(random(), 3) * {USERS})::int AS number
    FROM (SELECT random() + g * 0 AS r) AS draw
) AS actor
CROSS JOIN LATERAL (
    SELECT CASE WHEN r < 0.70 THEN 'accounts.user' WHEN r < 0.80 THEN 'oauth_provider.application'
                WHEN r < 0.85 THEN 'accounts.organization' ELSE '' END AS kind,
           CASE WHEN random() < 0.6 THEN actor.number
                ELSE floor(power(random(), 3) * {USERS})::int END AS number
    FROM (SELECT random() + g * 0 AS r) AS draw
) AS target
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def scalar(sql: str, params: list[Any] | None = None) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def load(events: int, *, reload: bool) -> float | None:
    present = scalar(f"SELECT count(*) FROM {TABLE}")
    if present >= events and not reload:
        log(f"{present} events already loaded; --reload to start over")
        return None
    log(f"loading {events} events ...")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE} RESTART IDENTITY")  # the trigger traps UPDATE and DELETE only
        cursor.execute("SELECT setseed(0.42)")
        cursor.execute(
            LOAD_SQL,
            {
                "start": datetime.now(UTC) - timedelta(days=DAYS),
                "step": DAYS * 86400 / events,
                "actions": ACTIONS,
                "events": events,
            },
        )
    seconds = time.perf_counter() - started
    log(f"loaded in {seconds:.0f} s; VACUUM ANALYZE ...")
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {TABLE}")
    return seconds


@dataclass
class Measure:
    name: str
    sql: str = ""
    plan: str = ""
    seq_scan: bool = False
    sort: str = ""
    rows: int = 0
    buffers: int = 0
    sql_ms: list[float] = field(default_factory=list)
    request_ms: list[float] = field(default_factory=list)
    all_sql_ms: list[float] = field(default_factory=list)  # every audit query of the request


def plan_summary(plan: dict[str, Any]) -> tuple[str, bool, str]:
    """The plan's nodes, top-down ("Limit > Index Scan Backward audit_action_idx"), and red flags."""
    steps: list[str] = []
    seq_scan = False
    sorts: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        nonlocal seq_scan
        kind = node["Node Type"]
        if kind in ("Index Scan", "Index Only Scan") and node.get("Scan Direction") == "Backward":
            kind += " Backward"
        if node.get("Index Name"):
            kind += f" {node['Index Name']}"
        if node["Node Type"] == "Seq Scan":
            seq_scan = True
            kind += f" {node.get('Relation Name', '')}"
        if node["Node Type"] in ("Sort", "Incremental Sort"):
            sorted_rows = sum(child.get("Actual Rows", 0) for child in node.get("Plans", []))
            method = "top-N " if node.get("Sort Method") == "top-N heapsort" else ""
            sorts.append(f"{method}sort of {sorted_rows} rows")
        if node["Node Type"] not in ("Gather", "Gather Merge", "Result", "Subquery Scan", "CTE Scan"):
            steps.append(kind)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan)
    return " > ".join(steps), seq_scan, ", ".join(sorts)


def explain(measure: Measure) -> None:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + measure.sql)
        document = cursor.fetchone()[0]
    document = json.loads(document) if isinstance(document, str) else document
    root = document[0]["Plan"]
    measure.plan, measure.seq_scan, measure.sort = plan_summary(root)
    measure.rows = root.get("Actual Rows", 0)
    measure.buffers = root.get("Shared Hit Blocks", 0) + root.get("Shared Read Blocks", 0)


def time_sql(measure: Measure, runs: int) -> None:
    with connection.cursor() as cursor:
        for _ in range(runs):
            started = time.perf_counter()
            cursor.execute(measure.sql)
            cursor.fetchall()
            measure.sql_ms.append((time.perf_counter() - started) * 1000)


def audit_queries(captured: list[dict[str, Any]]) -> list[str]:
    return [query["sql"] for query in captured if f'FROM "{TABLE}"' in query["sql"]]


def main_query(captured: list[dict[str, Any]]) -> str:
    """The query that reads the page: the audit SELECT with ORDER BY (not helpers or counts)."""
    candidates = [sql for sql in audit_queries(captured) if "ORDER BY" in sql and "COUNT(" not in sql]
    return candidates[-1]


def measure_request(
    name: str, get: Callable[[], Any], runs: int, *, pick: Callable[[list[dict[str, Any]]], str] = main_query
) -> Measure:
    with CaptureQueriesContext(connection) as captured:
        response = get()
    assert response.status_code == 200, (name, response.status_code, response.content[:500])
    measure = Measure(name=name, sql=pick(captured.captured_queries))
    explain(measure)
    time_sql(measure, runs)
    with connection.cursor() as cursor:
        for _ in range(runs):
            started = time.perf_counter()
            for sql in audit_queries(captured.captured_queries):
                cursor.execute(sql)
                cursor.fetchall()
            measure.all_sql_ms.append((time.perf_counter() - started) * 1000)
    for _ in range(runs):
        started = time.perf_counter()
        get()
        measure.request_ms.append((time.perf_counter() - started) * 1000)
    log(f"{name}: {statistics.median(measure.sql_ms):.2f} ms SQL; {measure.plan}")
    return measure


def cursor_at(event_id: int) -> str:
    """A DRF cursor positioned at an event (as the `next` link of an earlier page would be)."""
    return base64.b64encode(f"p={event_id}".encode()).decode()


def middle_cursor(queryset: Any) -> str:
    """A cursor at the middle of a result (as a `next` link half-way down would be), or none."""
    matches = queryset.count()
    return cursor_at(queryset.values_list("id", flat=True)[matches // 2]) if matches > 100 else ""


def api_cases() -> tuple[list[tuple[str, dict[str, str]]], str, str]:
    """Every list filter, on its first page and on a deep page; and two users to read their own."""
    now = datetime.now(UTC)
    active_user = scalar(
        f"SELECT actor_id FROM {TABLE} WHERE actor_type = 'user' "
        "GROUP BY actor_id ORDER BY count(*) DESC LIMIT 1"
    )
    quiet_user = scalar(
        f"SELECT actor_id FROM {TABLE} WHERE actor_type = 'user' GROUP BY actor_id ORDER BY count(*) LIMIT 1"
    )
    some_ip = scalar(
        f"SELECT host(ip_address) FROM {TABLE} WHERE id = mod(777777, (SELECT max(id) FROM {TABLE}))"
    )
    some_request = scalar(
        f"SELECT request_id FROM {TABLE} WHERE id = mod(424242, (SELECT max(id) FROM {TABLE}))"
    )
    day = (now - timedelta(days=180)).replace(microsecond=0)
    iso = "%Y-%m-%dT%H:%M:%SZ"
    filters: list[tuple[str, dict[str, str]]] = [
        ("no filter", {}),
        ("action (common)", {"action": ACTIONS[0]}),
        ("action (rare)", {"action": ACTIONS[-1]}),
        ("outcome=failure", {"outcome": "failure"}),
        ("actor (most active user)", {"actor_type": "user", "actor_id": active_user}),
        ("actor (quiet user)", {"actor_type": "user", "actor_id": quiet_user}),
        ("actor_id alone", {"actor_id": active_user}),
        ("actor_type=anonymous", {"actor_type": "anonymous"}),
        ("target (user)", {"target_type": "accounts.user", "target_id": active_user}),
        ("target_id alone", {"target_id": active_user}),
        ("target_type=accounts.organization", {"target_type": "accounts.organization"}),
        ("occurred_after (last 24 h)", {"occurred_after": (now - timedelta(days=1)).strftime(iso)}),
        (
            "30 days, 6 months back",
            {
                "occurred_after": day.strftime(iso),
                "occurred_before": (day + timedelta(days=30)).strftime(iso),
            },
        ),
        (
            "one day, 6 months back",
            {"occurred_after": day.strftime(iso), "occurred_before": (day + timedelta(days=1)).strftime(iso)},
        ),
        ("occurred_before (6 months back)", {"occurred_before": day.strftime(iso)}),
        ("request_id", {"request_id": some_request}),
        ("ip_address", {"ip_address": some_ip}),
        (
            "actor + action + outcome",
            {"actor_type": "user", "actor_id": active_user, "action": ACTIONS[0], "outcome": "success"},
        ),
    ]
    cases: list[tuple[str, dict[str, str]]] = []
    for name, params in filters:
        cases.append((name, params))
        deep = middle_cursor(AuditEventFilter(params, queryset=AuditEvent.objects.order_by("-id")).qs)
        if deep:
            cases.append((f"{name}, deep page", {**params, "cursor": deep}))
    return cases, active_user, quiet_user


def stream_export(api: APIClient, *, rows: int, export_format: str, trace: bool) -> tuple[int, float, int]:
    """Stream `rows` rows of the export; return rows read, seconds, and the tracemalloc peak."""
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    response = api.get("/api/v1/audit-events/export/", {"as": export_format})
    assert response.streaming
    lines = -1 if export_format == "csv" else 0  # the CSV header
    for chunk in cast(Any, response).streaming_content:
        lines += chunk.count(b"\n")
        if lines >= rows:
            break
    response.close()
    seconds = time.perf_counter() - started
    peak = 0
    if trace:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return lines, seconds, peak


def postgres_version() -> str:
    return scalar("SHOW server_version")


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def table(measures: list[Measure]) -> list[str]:
    lines = [
        "| case | plan of the page query (top-down) | rows | buffers | seq scan | sort "
        "| page query ms | all audit queries ms | request ms |",
        "|---|---|---:|---:|---|---|---:|---:|---:|",
    ]
    for m in measures:
        lines.append(
            f"| {m.name} | {m.plan} | {m.rows} | {m.buffers} | {'**yes**' if m.seq_scan else 'no'} | "
            f"{m.sort or 'none'} | {median(m.sql_ms)} | {median(m.all_sql_ms)} | {median(m.request_ms)} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9, help="timed runs per case (medians reported)")
    parser.add_argument("--export-rows", type=int, default=200_000)
    parser.add_argument("--reload", action="store_true", help="truncate and load the events again")
    parser.add_argument("--write", type=Path, help="replace this benchmark's section of that Markdown file")
    args = parser.parse_args()

    if connection.vendor != "postgresql":
        sys.exit("Point DATABASE_URL at PostgreSQL: this measures PostgreSQL plans.")
    call_command("migrate", verbosity=0)
    load_seconds = load(args.events, reload=args.reload)
    total = scalar(f"SELECT count(*) FROM {TABLE}")

    staff, _ = User.objects.get_or_create(
        username="bench_staff",
        defaults={
            "display_name": "bench_staff",
            "email": "bench_staff@example.com",
            "is_staff": True,
            "is_superuser": True,
        },
    )
    api = APIClient()
    api.force_authenticate(staff)

    cases, active_user, quiet_user = api_cases()
    measures = [
        measure_request(name, partial(api.get, "/api/v1/audit-events/", params), args.runs)
        for name, params in cases
    ]

    own: list[Measure] = []
    for label, user_id in (("most active user", active_user), ("quiet user", quiet_user)):
        name = f"bench_{user_id[:8]}"
        user, _ = User.objects.get_or_create(
            id=user_id, defaults={"username": name, "display_name": name, "email": f"{name}@example.com"}
        )
        client = APIClient()
        client.force_authenticate(user)
        deep = middle_cursor(AuditEvent.objects.about_user(user_id).order_by("-id"))
        pages = [("first page", {}), ("deep page", {"cursor": deep})] if deep else [("first page", {})]
        for page, params in pages:
            own.append(
                measure_request(
                    f"{label}, {page}",
                    partial(client.get, "/api/v1/users/me/audit-events/", params),
                    args.runs,
                )
            )

    admin_client = Client()
    admin_client.force_login(staff)
    admin: list[Measure] = []
    # As the "Past 7 days" choice of the date filter writes it.
    seven_days_ago = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7)
    admin_cases = [
        ("changelist", {}),
        ("changelist, page 50", {"p": "50"}),
        ("timeline of the most active user", {"about_user": active_user}),
        ("search by user ID", {"q": active_user}),
        ("action filter", {"action": ACTIONS[3]}),
        (
            "outcome + last 7 days",
            {
                "outcome__exact": "failure",
                "occurred_at__gte": str(seven_days_ago),
            },
        ),
    ]
    for name, params in admin_cases:
        admin.append(
            measure_request(name, partial(admin_client.get, "/admin/audit/auditevent/", params), args.runs)
        )
    with CaptureQueriesContext(connection) as captured:
        admin_client.get("/admin/audit/auditevent/")
    admin_queries = audit_queries(captured.captured_queries)
    count_measure = Measure(
        name="changelist: capped count", sql=next(q for q in admin_queries if "COUNT(" in q)
    )
    explain(count_measure)
    time_sql(count_measure, args.runs)
    actions_measure = Measure(
        name="changelist: action list (loose index scan)",
        sql=next(q for q in admin_queries if "RECURSIVE" in q),
    )
    explain(actions_measure)
    time_sql(actions_measure, args.runs)
    admin += [count_measure, actions_measure]

    export_rows: list[str] = []
    for export_format in ("csv", "jsonl"):
        rates = []
        for _ in range(3):
            rows, seconds, _peak = stream_export(
                api, rows=args.export_rows, export_format=export_format, trace=False
            )
            rates.append(rows / seconds)
        small = stream_export(api, rows=args.export_rows // 10, export_format=export_format, trace=True)
        large = stream_export(api, rows=args.export_rows, export_format=export_format, trace=True)
        export_rows.append(
            f"| {export_format} | {args.export_rows} | {statistics.median(rates):,.0f} | "
            f"{small[2] / 1024 / 1024:.1f} MiB ({small[0]} rows) | "
            f"{large[2] / 1024 / 1024:.1f} MiB ({large[0]} rows) |"
        )
        log(export_rows[-1])
    maxrss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table_size = scalar(f"SELECT pg_size_pretty(pg_total_relation_size('{TABLE}'))")

    python_version = platform.python_version()
    cpu_count = os.cpu_count()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = "?"
    report = [
        SECTION_START,
        "## Audit trail: list filters, cursor pages, admin and export at 1 million events",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; commit {commit} (plus the working tree).",
        f"- Machine: {cpu_count} cores, {memory_gib:.0f} GiB RAM; Python {python_version}; "
        f"PostgreSQL {postgres_version()} (default configuration: shared_buffers "
        f"{scalar('SHOW shared_buffers')}, work_mem {scalar('SHOW work_mem')}).",
        f"- Data: {total:,} events over {DAYS} days ({table_size} with indexes), {len(ACTIONS)} actions "
        f"(skewed), {USERS:,} users + {CLIENTS} OAuth clients as actors (skewed: a few very active), "
        f"85 % user / 5 % client / 5 % system / 5 % anonymous actors, 8 % failures, {IPS:,} IPs. "
        + (
            f"Loaded with one `INSERT ... SELECT ... FROM generate_series` in {load_seconds:.0f} s, then "
            "`VACUUM ANALYZE`."
            if load_seconds
            else "Loaded by an earlier run, then `VACUUM ANALYZE`."
        ),
        "- Command: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/identity_bench "
        f".venv/bin/python bench/audit_events.py --runs {args.runs} --write docs/benchmarks.md`",
        "- Method: each case is a real request through Django (test client, DRF view or admin, "
        "serializers included); the audit SELECT it ran is captured, explained with "
        "`EXPLAIN (ANALYZE, BUFFERS)` and re-run; medians of "
        f'{args.runs} runs. "Deep page" follows a cursor positioned at the middle of that case\'s '
        "matches, as a `next` link half-way down the list would be. "
        '"buffers" = 8 KiB pages the page query touched; "rows" = rows it returned (page size + 1); '
        '"all audit queries" adds the helper queries of the request (target types, action list, '
        'the admin\'s capped count); "request" is the whole request through Django. All medians.',
        "",
        "### GET /api/v1/audit-events/ (staff), page of 50",
        "",
        *table(measures),
        "",
        "### GET /api/v1/users/me/audit-events/",
        "",
        *table(own),
        "",
        "### Admin changelist (/admin/audit/auditevent/)",
        "",
        *table(admin),
        "",
        "### Export (GET /api/v1/audit-events/export/), streamed through Django",
        "",
        "| format | rows streamed | rows/s (median of 3) | Python peak, 1/10 of the rows "
        "| Python peak, all rows |",
        "|---|---:|---:|---:|---:|",
        *export_rows,
        "",
        f"Peak resident memory of the whole benchmark process: {maxrss_mib:.0f} MiB.",
        SECTION_END,
    ]
    text = "\n".join(report) + "\n"
    print(text)
    if args.write:
        current = args.write.read_text() if args.write.exists() else "# Benchmarks\n\n"
        if SECTION_START in current:
            before, rest = current.split(SECTION_START, 1)
            after = rest.split(SECTION_END, 1)[1].lstrip("\n")
            current = before + text + ("\n" + after if after else "")
        else:
            current = current.rstrip("\n") + "\n\n" + text
        args.write.write_text(current)


if __name__ == "__main__":
    main()
