# A benchmark, not the service: SQL built from constants (S608), and git run by name (S607).
# ruff: noqa: S607, S608
"""Staff user list at scale: search, filters, orderings and pages over 100,000 users, API and admin.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/identity_bench_users \\
        REDIS_URL=redis://127.0.0.1:6379/10 python bench/users_list.py --write docs/benchmarks.md

Loads USERS synthetic users with their roles, e-mail addresses, second factors and social accounts
(INSERT ... SELECT over generate_series; skipped when the table already holds that many, unless
--reload), then for every case of GET /api/v1/users/ (pages, orderings, each filter, searches,
combinations), the user detail and `me`, and the admin changelist it takes the SQL the request
really runs, shows the plans of the page query and of its COUNT (EXPLAIN ANALYZE, BUFFERS) and
times them, and times the whole request against a bare Django JSON view on the same client,
interleaved, so every request is also a ratio within one run. `--write docs/benchmarks.md`
replaces this benchmark's section there (keeping its hand-written notes).
Never point it at a database whose users matter: --reload truncates the users table and every
table that refers to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
os.environ.setdefault("API_THROTTLE_USER", "1000000/minute")  # the benchmark is one very busy user
os.environ.setdefault("JWT_ACCESS_TOKEN_LIFETIME_SECONDS", "7200")  # one token lasts the whole run

import django  # noqa: E402

django.setup()

from allauth.account.models import EmailAddress  # noqa: E402
from allauth.mfa.models import Authenticator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib import admin  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import prefetch_related_objects  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import include, path  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from accounts.models import User  # noqa: E402
from accounts.models.users import MFA_FACTOR_TYPES  # noqa: E402
from accounts.services import device_session_start, user_create  # noqa: E402
from accounts.services.moderation import user_set_roles  # noqa: E402

TABLE = "accounts_user"
SECTION = "bench/users_list.py"
SECTION_START = f"<!-- {SECTION}: start -->"
SECTION_NOTES = f"<!-- {SECTION}: notes (written by hand, kept by --write) -->"
SECTION_END = f"<!-- {SECTION}: end -->"
BARE_PATH = "/bench/bare/"
LIST_PATH = "/api/v1/users/"
ADMIN_PATH = "/admin/accounts/user/"

USERS = 100_000
YEARS = 3
ADMINS = 30
MODERATORS = 150
TESTERS = 200


def words(text: str) -> list[str]:
    return text.split()


# Common names first: the load draws them with random()^k, so a few names are very common.
FIRST_NAMES = words(
    "james mary john patricia robert jennifer michael linda david elizabeth william barbara richard "
    "susan joseph jessica thomas sarah charles karen daniel lisa matthew nancy anthony betty mark "
    "sandra donald margaret steven ashley andrew kimberly paul emily joshua donna kenneth michelle "
    "kevin carol brian amanda george melissa timothy deborah ronald stephanie jason rebecca edward "
    "laura jeffrey sharon ryan cynthia jacob kathleen gary amy nicholas angela eric anna jonathan "
    "maria stephen olivia larry emma justin sophia scott mia brandon lucas benjamin chloe samuel lea "
    "noah hannah liam lena mohammed fatima ahmed aisha wei mei hiroshi yuki raj priya arjun ananya "
    "carlos sofia diego lucia mateo valentina pierre camille lukas marie jan eva olga ivan sven "
    "ingrid kwame amara chen jun"
)
LAST_NAMES = words(
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez "
    "gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white harris "
    "sanchez clark ramirez lewis robinson walker young allen king wright scott torres nguyen hill "
    "flores green adams nelson baker hall rivera campbell mitchell carter roberts muller schmidt "
    "schneider fischer weber meyer wagner becker schulz hoffmann dubois moreau laurent lefebvre rossi "
    "russo ferrari esposito bianchi romano silva santos oliveira souza pereira costa kowalski nowak "
    "wisniewski novak horvat kovacs nagy popescu ivanov petrov smirnov sokolov kuznetsov jensen "
    "nielsen hansen larsen andersen johansson karlsson nilsson eriksson larsson olsen virtanen "
    "korhonen murphy kelly obrien byrne walsh ryan mccarthy gallagher doherty kennedy tanaka suzuki "
    "takahashi watanabe ito yamamoto nakamura kobayashi kato wang li zhang liu chen yang huang zhao "
    "wu zhou kim park choi jung kang patel sharma singh kumar gupta shah mehta iyer reddy khan ali "
    "hussain ahmed rahman hassan ibrahim mensah okafor adeyemi okonkwo mwangi otieno banda dlamini "
    "nkosi cohen levi mizrahi friedman katz yilmaz kaya demir sahin celik ozturk aydin haddad khoury "
    "nasser fernandez gomez diaz morales jimenez ruiz alvarez romero navarro vasquez castillo ortiz "
    "gutierrez chavez ramos vargas mendoza quintero zielinski wojcik kaminski lewandowski dabrowski"
)
# One user in a thousand has one of these: the "rare substring" searches.
RARE_LAST_NAMES = ("thistlewood", "fairweather", "ravensworth", "abernathy", "quillfeather")
ADJECTIVES = words(
    "quiet brave happy lucky silent swift clever cosmic crimson golden lazy mighty noble rapid shy "
    "sunny wild witty zen frosty misty dark bright fuzzy salty spicy sleepy jolly grumpy tiny"
)
NOUNS = words(
    "falcon panda tiger otter wolf fox raven koala lynx badger dragon phoenix comet pixel ninja "
    "pirate wizard rocket cactus mango pepper walrus yeti owl shark lemur moose bison gecko turtle"
)
# Per mille: free mail providers, then company domains, then one rare domain.
DOMAIN_WEIGHTS = {
    "gmail.com": 339,
    "outlook.com": 100,
    "yahoo.com": 80,
    "hotmail.com": 70,
    "icloud.com": 60,
    "proton.me": 40,
    "qq.com": 30,
    "gmx.de": 30,
    "web.de": 20,
    "orange.fr": 20,
    "mail.ru": 20,
    "live.com": 20,
    "yandex.ru": 10,
    "aol.com": 10,
    "acme.io": 30,
    "globex.com": 30,
    "initech.net": 20,
    "hooli.xyz": 20,
    "umbrella-corp.com": 20,
    "stark-industries.com": 10,
    "wayne-enterprises.com": 10,
    "cyberdyne.ai": 10,
    "tyrell-corp.com": 1,
}
DOMAINS = [domain for domain, weight in DOMAIN_WEIGHTS.items() for _ in range(weight)]
# Secondary (non-primary) addresses live on domains no primary address uses, so they never clash.
SECONDARY_DOMAINS = ["alumni.example.edu", "corp.example.net"]

# Rows are inserted in sign-up order, as a real table fills: created_at grows with g (sign-ups per
# day growing over the years), so the heap is roughly in created_at order and ids are random UUIDs.
# Usernames and e-mail addresses get a number only when the name is taken, like at a real sign-up.
LOAD_USERS_SQL = f"""
WITH drawn AS (
    SELECT g,
        (%(first_names)s::text[])[1 + floor(power(random(), 2) * {len(FIRST_NAMES)})::int] AS first,
        CASE WHEN random() < 0.001
             THEN (%(rare_last_names)s::text[])[1 + floor(random() * {len(RARE_LAST_NAMES)})::int]
             ELSE (%(last_names)s::text[])[1 + floor(power(random(), 2.5) * {len(LAST_NAMES)})::int]
        END AS last,
        (%(adjectives)s::text[])[1 + floor(random() * {len(ADJECTIVES)})::int] AS adjective,
        (%(nouns)s::text[])[1 + floor(random() * {len(NOUNS)})::int] AS noun,
        lpad(mod(50 + floor(random() * 58)::int, 100)::text, 2, '0') AS year,
        floor(random() * 6)::int AS username_pattern,
        floor(random() * 5)::int AS email_pattern,
        (%(domains)s::text[])[1 + floor(random() * {len(DOMAINS)})::int] AS domain,
        %(start)s::timestamptz + %(span)s::interval * sqrt(g::float8 / %(users)s)
            + random() * interval '1 hour' AS created,
        random() AS active_draw,
        random() AS login_draw,
        random() AS login_when,
        random() AS case_draw
    FROM generate_series(1, %(users)s) AS g
),
named AS (
    SELECT *,
        CASE username_pattern
            WHEN 0 THEN first || '_' || last
            WHEN 1 THEN first || last
            WHEN 2 THEN left(first, 1) || last
            WHEN 3 THEN first || '_' || year
            WHEN 4 THEN last || '_' || first
            ELSE adjective || '_' || noun
        END AS username_base,
        CASE email_pattern
            WHEN 0 THEN first || '.' || last
            WHEN 1 THEN first || '_' || last
            WHEN 2 THEN first || last || year
            WHEN 3 THEN left(first, 1) || '.' || last
            ELSE left(first, 1) || last || year
        END AS local_base
    FROM drawn
),
numbered AS (
    SELECT *,
        username_base || CASE WHEN row_number() OVER username_taken = 1 THEN ''
                              ELSE (row_number() OVER username_taken)::text END AS username,
        local_base || CASE WHEN row_number() OVER email_taken = 1 THEN ''
                           ELSE '.' || row_number() OVER email_taken END || '@' || domain AS email
    FROM named
    WINDOW username_taken AS (PARTITION BY username_base ORDER BY g),
           email_taken AS (PARTITION BY local_base, domain ORDER BY g)
)
INSERT INTO {TABLE} (id, password, last_login, is_superuser, username, display_name, email, description,
    is_active, is_staff, is_external_only, created_at, updated_at, deleted_at, deactivation_reason,
    purged_at)
SELECT
    md5('bench-user' || g)::uuid,
    '!' || md5('password' || g),
    CASE WHEN login_draw < 0.9 THEN created + (now() - created) * sqrt(login_when) END,
    false,
    username,
    CASE WHEN case_draw < 0.6 THEN initcap(replace(username, '_', ' ')) ELSE username END,
    email,
    CASE WHEN case_draw < 0.2 THEN 'Hi, I am ' || initcap(first) || '.' ELSE '' END,
    active_draw >= 0.03,
    false,
    false,
    created,
    created,
    NULL,
    CASE WHEN active_draw < 0.02 THEN 'Spam.' ELSE '' END,
    NULL
FROM numbered
"""

LOAD_RELATED_SQL = [
    # Every user has the `user` role; a few hundred are admins, moderators or testers.
    """
    INSERT INTO accounts_user_groups (user_id, group_id)
    SELECT u.id, grp.id FROM accounts_user AS u CROSS JOIN auth_group AS grp WHERE grp.name = 'user'
    """,
    f"""
    WITH ranked AS (SELECT id, row_number() OVER (ORDER BY md5(id::text)) AS n FROM accounts_user)
    INSERT INTO accounts_user_groups (user_id, group_id)
    SELECT ranked.id, grp.id FROM ranked JOIN auth_group AS grp ON grp.name = CASE
        WHEN n <= {ADMINS} THEN 'admin'
        WHEN n <= {ADMINS + MODERATORS} THEN 'moderator'
        ELSE 'tester' END
    WHERE n <= {ADMINS + MODERATORS + TESTERS}
    """,
    f"""
    WITH ranked AS (SELECT id, row_number() OVER (ORDER BY md5(id::text)) AS n FROM accounts_user)
    UPDATE accounts_user SET is_staff = true, is_superuser = ranked.n <= {ADMINS}
    FROM ranked WHERE ranked.id = accounts_user.id AND ranked.n <= {ADMINS + MODERATORS}
    """,
    # allauth's addresses: the primary one (85 % verified), and a second one for 5 % of users.
    """
    INSERT INTO account_emailaddress (user_id, email, verified, "primary")
    SELECT id, email, random() < 0.85, true FROM accounts_user
    """,
    """
    INSERT INTO account_emailaddress (user_id, email, verified, "primary")
    SELECT id, username || '@' || (%(secondary_domains)s::text[])[1 + floor(random() * 2)::int],
        random() < 0.5, false
    FROM accounts_user WHERE random() < 0.05
    """,
    # Second factors: TOTP for 10 % of users, most of whom also keep recovery codes.
    """
    INSERT INTO mfa_authenticator (user_id, type, data, created_at, last_used_at)
    SELECT id, 'totp', jsonb_build_object('secret', upper(substr(md5('totp' || id::text), 1, 32))),
        created_at + (now() - created_at) * random(), last_login
    FROM accounts_user WHERE random() < 0.10
    """,
    """
    INSERT INTO mfa_authenticator (user_id, type, data, created_at, last_used_at)
    SELECT user_id, 'recovery_codes',
        jsonb_build_object('seed', md5('seed' || user_id::text), 'used_mask', 0), created_at, NULL
    FROM mfa_authenticator WHERE type = 'totp' AND random() < 0.7
    """,
    # Social accounts for 20 % of users: GitHub 13 %, Google 10 % (3 % have both).
    """
    WITH drawn AS (SELECT id, created_at, last_login, random() AS r FROM accounts_user)
    INSERT INTO socialaccount_socialaccount (user_id, provider, uid, last_login, date_joined, extra_data)
    SELECT id, provider.name, md5(provider.name || id::text), coalesce(last_login, created_at),
        created_at, '{}'::jsonb
    FROM drawn CROSS JOIN (VALUES ('github'), ('google')) AS provider(name)
    WHERE (provider.name = 'github' AND r < 0.13)
       OR (provider.name = 'google' AND (r < 0.03 OR (r >= 0.13 AND r < 0.20)))
    """,
]
RELATED_TABLES = (
    "accounts_user_groups",
    "account_emailaddress",
    "mfa_authenticator",
    "socialaccount_socialaccount",
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def scalar(sql: str, params: list[Any] | dict[str, Any] | None = None) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def loaded_users() -> int:
    return int(scalar(f"SELECT count(*) FROM {TABLE} WHERE username NOT LIKE 'bench\\_%%'"))


def load(users: int, *, reload: bool) -> float | None:
    present = loaded_users()
    if present >= users and not reload:
        log(f"{present} users already loaded; --reload to start over")
        return None
    log(f"loading {users} users with their roles, addresses, second factors and social accounts ...")
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE} CASCADE")
        cursor.execute("SELECT setseed(0.42)")
        cursor.execute(
            LOAD_USERS_SQL,
            {
                "first_names": FIRST_NAMES,
                "last_names": LAST_NAMES,
                "rare_last_names": list(RARE_LAST_NAMES),
                "adjectives": ADJECTIVES,
                "nouns": NOUNS,
                "domains": DOMAINS,
                "start": datetime.now(UTC) - timedelta(days=365 * YEARS, hours=1),
                "span": f"{365 * YEARS} days",
                "users": users,
            },
        )
        for sql in LOAD_RELATED_SQL:
            cursor.execute(sql, {"secondary_domains": SECONDARY_DOMAINS} if "%(" in sql else None)
    seconds = time.perf_counter() - started
    log(f"loaded in {seconds:.0f} s; VACUUM ANALYZE ...")
    with connection.cursor() as cursor:
        for table in (TABLE, *RELATED_TABLES):
            cursor.execute(f"VACUUM ANALYZE {table}")
    return seconds


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class PlanStats:
    summary: str = ""
    seq_scans: list[str] = field(default_factory=list)
    seq_scan_rows: dict[str, int] = field(default_factory=dict)  # rows each sequential scan read
    sorts: list[str] = field(default_factory=list)
    largest_sort: int = 0
    user_rows_read: int = 0
    rows: int = 0
    buffers: int = 0
    jit_ms: float = 0.0  # time PostgreSQL spent compiling the query (JIT), part of its run time
    text: str = ""  # the plan as EXPLAIN prints it, for the slow cases


@dataclass(eq=False)  # compared and hashed by identity
class Measure:
    group: str
    name: str
    url: str = ""
    error: str = ""
    queries: int = 0
    matches: int | None = None
    page_sql: str = ""
    count_sql: str = ""
    selects: list[str] = field(default_factory=list)
    page: PlanStats = field(default_factory=PlanStats)
    count: PlanStats = field(default_factory=PlanStats)
    page_ms: list[float] = field(default_factory=list)
    count_ms: list[float] = field(default_factory=list)
    all_sql_ms: list[float] = field(default_factory=list)
    request_ms: list[float] = field(default_factory=list)
    bare_ms: list[float] = field(default_factory=list)  # the bare view, interleaved with the request

    @property
    def ratio(self) -> float:
        if not self.request_ms or not self.bare_ms:
            return 0.0
        return statistics.median(self.request_ms) / statistics.median(self.bare_ms)

    def flags(self) -> list[str]:
        return [text for _query, _category, text in self.findings()]

    def findings(self) -> list[tuple[str, str, str]]:
        """What makes a case slow at this size: (the query, a category from CATEGORIES, details)."""
        found: list[tuple[str, str, str]] = []
        for label, stats in (("page", self.page), ("COUNT", self.count)):
            if TABLE in stats.seq_scans:
                found.append((label, f"users seq scan {label}", f"seq scan of {TABLE} ({label})"))
        for label, stats in (("page", self.page), ("COUNT", self.count)):
            for relation, rows in stats.seq_scan_rows.items():
                if relation != TABLE and rows >= 10_000:
                    found.append(
                        (
                            label,
                            f"related seq scan {label}",
                            f"seq scan of {rows:,} rows of {relation} ({label})",
                        )
                    )
        for label, stats in (("page", self.page), ("COUNT", self.count)):
            if stats.jit_ms >= 10:
                found.append((label, "jit", f"JIT compilation {stats.jit_ms:.0f} ms ({label})"))
        for label, stats in (("page", self.page), ("COUNT", self.count)):
            if stats.largest_sort >= 10_000:
                found.append((label, "sort", f"sort of {stats.largest_sort:,} rows ({label})"))
        if self.page.user_rows_read >= 10_000:
            found.append(("page", "rows", f"page reads {self.page.user_rows_read:,} users"))
        if self.count_ms and self.page_ms:
            count, page = statistics.median(self.count_ms), statistics.median(self.page_ms)
            if count >= 5 and count > page:
                found.append(
                    ("COUNT", "count", f"COUNT dominates ({count:.0f} ms against {page:.0f} ms for the page)")
                )
        return found


# The kinds of slowness the benchmark looks for, in the order the report lists them.
CATEGORIES = {
    "related seq scan page": "The page query reads a whole related table (an uncorrelated EXISTS, hashed)",
    "jit": "PostgreSQL JIT-compiles the query (its cost estimate passed jit_above_cost)",
    "rows": "The page query reads 10,000+ users (an OFFSET walk, or an index walk the filter rarely passes)",
    "sort": "A sort of 10,000+ rows",
    "users seq scan page": "A sequential scan of the users table for the page",
    "users seq scan COUNT": "A sequential scan of the users table for the COUNT",
    "related seq scan COUNT": "The COUNT reads a whole related table (a hash semi/anti join)",
    "count": "The COUNT costs more than the page",
}


PASS_THROUGH = {"Gather", "Gather Merge", "Result", "Subquery Scan", "Materialize", "Hash", "Memoize"}
SUBPLANS = {"SubPlan", "InitPlan"}


def node_label(node: dict[str, Any]) -> str:
    kind = str(node["Node Type"])
    if kind in ("Index Scan", "Index Only Scan") and node.get("Scan Direction") == "Backward":
        kind += " Backward"
    if node.get("Index Name"):
        kind += f" {node['Index Name']}"
    elif node.get("Relation Name"):
        kind += f" {node['Relation Name']}"
    if kind == "Aggregate":
        kind = {"Hashed": "HashAggregate", "Sorted": "GroupAggregate"}.get(str(node.get("Strategy")), kind)
    if node.get("Partial Mode", "Simple") != "Simple":
        kind = f"{node['Partial Mode']} {kind}"
    if node.get("Parallel Aware"):
        kind = f"Parallel {kind}"
    return kind


def render(node: dict[str, Any]) -> str:
    """The plan on one line: `A > B` for a single input, `A (B ; C)` for joins, `[per row: …]` for
    the correlated subplans (the EXISTS columns)."""
    children = node.get("Plans", [])
    inputs = [child for child in children if child.get("Parent Relationship") not in SUBPLANS]
    subplans = [child for child in children if child.get("Parent Relationship") in SUBPLANS]
    rendered = [render(child) for child in inputs]
    if node["Node Type"] in PASS_THROUGH and len(rendered) == 1 and not subplans:
        return rendered[0]
    text = node_label(node)
    # A correlated subplan (it names the outer row) runs once per row; an uncorrelated one runs
    # once, and PostgreSQL hashes its result to probe per row ("hashed SubPlan").
    correlated = [f"{TABLE}." in json.dumps(subplan) for subplan in subplans]
    once = [render(subplan) for subplan, outer in zip(subplans, correlated, strict=True) if not outer]
    per_row = [render(subplan) for subplan, outer in zip(subplans, correlated, strict=True) if outer]
    if once:
        text += " [once, hashed: " + "; ".join(once) + "]"
    if per_row:
        text += " [per row: " + "; ".join(per_row) + "]"
    if len(rendered) == 1:
        text += " > " + rendered[0]
    elif rendered:
        text += " (" + " ; ".join(rendered) + ")"
    return text


def plan_stats(root: dict[str, Any]) -> PlanStats:
    stats = PlanStats(summary=render(root))

    def walk(node: dict[str, Any]) -> None:
        loops = int(node.get("Actual Loops", 1) or 1)
        read = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        read = int((read + node.get("Rows Removed by Index Recheck", 0)) * loops)
        if node["Node Type"] == "Seq Scan":
            relation = str(node.get("Relation Name", ""))
            stats.seq_scans.append(relation)
            stats.seq_scan_rows[relation] = stats.seq_scan_rows.get(relation, 0) + read
        if node.get("Relation Name") == TABLE:
            stats.user_rows_read += read
        if node["Node Type"] in ("Sort", "Incremental Sort"):
            sorted_rows = sum(
                int(child.get("Actual Rows", 0) * (child.get("Actual Loops", 1) or 1))
                for child in node.get("Plans", [])
                if child.get("Parent Relationship") not in SUBPLANS
            )
            method = str(node.get("Sort Method", ""))
            disk = " on disk" if node.get("Sort Space Type") == "Disk" else ""
            stats.sorts.append(f"{method or node['Node Type']} of {sorted_rows:,} rows{disk}")
            stats.largest_sort = max(stats.largest_sort, sorted_rows)
        for child in node.get("Plans", []):
            walk(child)

    walk(root)
    stats.rows = int(root.get("Actual Rows", 0))
    stats.buffers = int(root.get("Shared Hit Blocks", 0) + root.get("Shared Read Blocks", 0))
    return stats


def explain(sql: str) -> PlanStats:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql)
        document = cursor.fetchone()[0]
    document = json.loads(document) if isinstance(document, str) else document
    stats = plan_stats(document[0]["Plan"])
    stats.jit_ms = float(document[0].get("JIT", {}).get("Timing", {}).get("Total", 0.0))
    if stats.jit_ms:
        stats.summary += f" (JIT {stats.jit_ms:.0f} ms)"
    return stats


def explain_text(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


def time_sql(sqls: list[str], runs: int) -> list[float]:
    timings = []
    with connection.cursor() as cursor:
        for _ in range(runs):
            started = time.perf_counter()
            for sql in sqls:
                cursor.execute(sql)
                cursor.fetchall()
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def reads(captured: list[dict[str, Any]]) -> list[str]:
    return [query["sql"] for query in captured if query["sql"].lstrip().upper().startswith("SELECT")]


def on_users(sql: str) -> bool:
    return f'FROM "{TABLE}"' in sql


def page_query(selects: list[str]) -> str:
    """The query that reads the page or the record: a users SELECT, not a COUNT, preferring the one
    with ORDER BY (a list), then the one with the annotated flags (a detail), then any."""
    candidates = [sql for sql in selects if on_users(sql) and "COUNT(" not in sql]
    for wanted in ("ORDER BY", "EXISTS("):
        matching = [sql for sql in candidates if wanted in sql]
        if matching:
            return matching[-1]
    return candidates[-1] if candidates else ""


def count_query(selects: list[str]) -> str:
    return next((sql for sql in selects if on_users(sql) and "COUNT(" in sql), "")


def measure_request(
    group: str,
    name: str,
    client: Client,
    url: str,
    params: dict[str, str],
    runs: int,
    *,
    matches: Callable[[Any], int | None] = lambda response: None,
) -> Measure:
    measure = Measure(group=group, name=name, url=url)
    try:
        client.get(url, params)  # warm the caches (token state, sessions, plans) as a busy server has
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url, params)
        if response.status_code != 200:
            raise AssertionError(f"HTTP {response.status_code}: {response.content[:300]!r}")
        measure.matches = matches(response)
    except Exception as error:  # a part being rewritten while the benchmark runs: report, go on
        measure.error = f"{type(error).__name__}: {error}"[:400]
        log(f"{group} / {name}: FAILED {measure.error}")
        return measure
    measure.queries = len(captured.captured_queries)
    measure.selects = reads(captured.captured_queries)
    measure.page_sql = page_query(measure.selects)
    measure.count_sql = count_query(measure.selects)
    if measure.page_sql:
        measure.page = explain(measure.page_sql)
        measure.page_ms = time_sql([measure.page_sql], runs)
    if measure.count_sql:
        measure.count = explain(measure.count_sql)
        measure.count_ms = time_sql([measure.count_sql], runs)
    measure.all_sql_ms = time_sql(measure.selects, runs)
    for _ in range(runs):
        started = time.perf_counter()
        client.get(BARE_PATH)
        measure.bare_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        client.get(url, params)
        measure.request_ms.append((time.perf_counter() - started) * 1000)
    if measure.flags():
        for label, sql in (("page", measure.page_sql), ("COUNT", measure.count_sql)):
            if sql:
                measure_plan = measure.page if label == "page" else measure.count
                measure_plan.text = explain_text(sql)
    log(
        f"{group} / {name}: {measure.queries} queries, page {median(measure.page_ms)} ms, "
        f"COUNT {median(measure.count_ms)} ms, request {median(measure.request_ms)} ms "
        f"(x{measure.ratio:.1f}); {measure.page.summary}"
    )
    return measure


def api_matches(response: Any) -> int | None:
    body = response.json()
    return int(body["count"]) if isinstance(body, dict) and "count" in body else None


def admin_matches(response: Any) -> int | None:
    context = getattr(response, "context_data", None) or {}
    changelist = context.get("cl")
    return int(changelist.result_count) if changelist is not None else None


# --- the cases ----------------------------------------------------------------------------------


def bare_json(request: HttpRequest) -> JsonResponse:
    """The floor: a Django JSON view behind the whole middleware stack, with no database query."""
    return JsonResponse({"status": "ok"})


def mount_bare_view() -> None:
    """Serve the bare view next to the project's URLs, without touching config/urls.py."""
    module = types.ModuleType("bench_users_list_urls")
    module.__dict__["urlpatterns"] = [
        path(BARE_PATH.strip("/") + "/", bare_json),
        path("", include(settings.ROOT_URLCONF)),
    ]
    sys.modules[module.__name__] = module
    settings.ROOT_URLCONF = module.__name__


def bench_user(username: str, roles: list[str]) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        user = user_create(username=username, email=f"{username}@example.com", email_verified=True)
    user_set_roles(user=user, roles=roles)
    return user


def time_bare(client: Client, runs: int) -> list[float]:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(BARE_PATH)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def api_client(user: User) -> APIClient:
    """A client with a real first-party JWT: the request pays for authentication as in production."""
    _, pair = device_session_start(user=user, user_agent="bench/users_list", ip_address=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access_token}")
    return client


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


Case = tuple[str, dict[str, str]]


def list_cases() -> dict[str, list[Case]]:
    now = datetime.now(UTC).replace(microsecond=0)
    some_username = scalar(f"SELECT username FROM {TABLE} ORDER BY md5(username) LIMIT 1")
    eighteen_months_ago = now - timedelta(days=548)
    return {
        "pages and orderings": [
            ("first page", {}),
            ("page 1000 (offset 49,950)", {"page": "1000"}),
            ("last page", {"page": "last"}),
            ("page_size=200", {"page_size": "200"}),
            ("page_size=200, page 250", {"page_size": "200", "page": "250"}),
            ("ordering=-username", {"ordering": "-username"}),
            ("ordering=created_at", {"ordering": "created_at"}),
            ("ordering=-created_at", {"ordering": "-created_at"}),
            ("ordering=-created_at, page 1000", {"ordering": "-created_at", "page": "1000"}),
            ("ordering=last_login", {"ordering": "last_login"}),
            ("ordering=-last_login", {"ordering": "-last_login"}),
            ("ordering=-last_login, page 1000", {"ordering": "-last_login", "page": "1000"}),
        ],
        "each filter alone": [
            ("role=admin", {"role": "admin"}),
            ("role=moderator", {"role": "moderator"}),
            ("role=tester", {"role": "tester"}),
            ("role=user", {"role": "user"}),
            ("is_active=false", {"is_active": "false"}),
            ("is_active=true", {"is_active": "true"}),
            ("email_verified=true", {"email_verified": "true"}),
            ("email_verified=false", {"email_verified": "false"}),
            ("has_mfa=true", {"has_mfa": "true"}),
            ("has_mfa=false", {"has_mfa": "false"}),
            ("social_provider=github", {"social_provider": "github"}),
            ("social_provider=google", {"social_provider": "google"}),
            ("social_provider=gitlab (none)", {"social_provider": "gitlab"}),
            ("created_after (last 7 days)", {"created_after": iso(now - timedelta(days=7))}),
            ("created_after (last year)", {"created_after": iso(now - timedelta(days=365))}),
            ("created_before (2 years ago)", {"created_before": iso(now - timedelta(days=730))}),
            (
                "created range (one month, 18 months ago)",
                {
                    "created_after": iso(eighteen_months_ago),
                    "created_before": iso(eighteen_months_ago + timedelta(days=30)),
                },
            ),
        ],
        "search": [
            ("search=son (common substring)", {"search": "son"}),
            ("search=maria (first name)", {"search": "maria"}),
            ("search=thistlewood (rare substring)", {"search": "thistlewood"}),
            (f"search={some_username} (one username)", {"search": some_username}),
            ("search=qxzv (no match)", {"search": "qxzv"}),
            ("search=gmail.com (common domain)", {"search": "gmail.com"}),
            ("search=@globex.com (company domain)", {"search": "@globex.com"}),
            ("search=tyrell-corp (rare domain)", {"search": "tyrell-corp"}),
            ("search=li (two letters)", {"search": "li"}),
            ("search=son, page 50", {"search": "son", "page": "50"}),
        ],
        "combined filters": [
            (
                "search=son + is_active + email_verified",
                {"search": "son", "is_active": "true", "email_verified": "true"},
            ),
            ("role=moderator + has_mfa=false", {"role": "moderator", "has_mfa": "false"}),
            (
                "social_provider=github + last year + -last_login",
                {
                    "social_provider": "github",
                    "created_after": iso(now - timedelta(days=365)),
                    "ordering": "-last_login",
                },
            ),
            (
                "has_mfa + email_verified=false + -created_at",
                {"has_mfa": "true", "email_verified": "false", "ordering": "-created_at"},
            ),
            (
                "search=gmail.com + has_mfa + -last_login",
                {"search": "gmail.com", "has_mfa": "true", "ordering": "-last_login"},
            ),
            (
                "is_active=false + created_before 2 years",
                {"is_active": "false", "created_before": iso(now - timedelta(days=730))},
            ),
        ],
    }


def admin_cases() -> list[Case]:
    model_admin = admin.site._registry.get(User)
    columns = ["action_checkbox", *(model_admin.list_display if model_admin else ())]

    def column(name: str) -> str:
        return str(columns.index(name)) if name in columns else ""

    some_username = scalar(f"SELECT username FROM {TABLE} ORDER BY md5(username) LIMIT 1")
    cases: list[Case] = [
        ("changelist", {}),
        ("page 500 (offset 49,900)", {"p": "500"}),
        ("q=son", {"q": "son"}),
        ("q=gmail.com", {"q": "gmail.com"}),
        ("q=thistlewood", {"q": "thistlewood"}),
        (f"q={some_username}", {"q": some_username}),
        ("q=li (two letters)", {"q": "li"}),
        ("role=moderator", {"role": "moderator"}),
        ("is_active=0", {"is_active": "0"}),
        ("email_verified=0", {"email_verified": "0"}),
        ("has_mfa=1", {"has_mfa": "1"}),
        ("social_provider=github", {"social_provider": "github"}),
        ("joined=30", {"joined": "30"}),
        ("joined=older", {"joined": "older"}),
        ("q=son + email_verified=1 + is_active=1", {"q": "son", "email_verified": "1", "is_active": "1"}),
    ]
    for label, name in (("last sign-in", "last_sign_in"), ("joined", "joined")):
        if column(name):
            cases.append((f"sorted by {label}, newest first (o=-{column(name)})", {"o": f"-{column(name)}"}))
    return cases


# --- the report ---------------------------------------------------------------------------------


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def cell(text: str) -> str:
    return text.replace("|", "\\|") or "-"


def table(measures: list[Measure]) -> list[str]:
    lines = [
        "| case | queries | matches | plan of the page query | plan of the COUNT | users read "
        "(page / COUNT) | buffers (page / COUNT) | slow because | page ms | COUNT ms | all queries ms "
        "| request ms | x bare |",
        "|---|---:|---:|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for m in measures:
        if m.error:
            lines.append(f"| {cell(m.name)} | **failed**: {cell(m.error)} |||||||||||")
            continue
        flags = m.flags()
        lines.append(
            f"| {cell(m.name)} | {m.queries} | {'-' if m.matches is None else f'{m.matches:,}'} | "
            f"{cell(m.page.summary)} | {cell(m.count.summary)} | "
            f"{m.page.user_rows_read:,} / {m.count.user_rows_read:,} | "
            f"{m.page.buffers:,} / {m.count.buffers:,} | "
            f"{'**' + '; '.join(flags) + '**' if flags else 'no'} | {median(m.page_ms)} | "
            f"{median(m.count_ms)} | {median(m.all_sql_ms)} | {median(m.request_ms)} | {m.ratio:.1f} |"
        )
    return lines


def slow_cases(measures: list[Measure]) -> list[str]:
    """Each kind of slowness with the cases that show it, and the plan of the slowest of them."""
    lines: list[str] = []
    for category, title in CATEGORIES.items():
        cases = list(
            dict.fromkeys(
                (m, query)
                for m in measures
                if not m.error
                for query, found_category, _text in m.findings()
                if found_category == category
            )
        )
        if not cases:
            continue

        def cost(case: tuple[Measure, str]) -> float:
            timings = case[0].page_ms if case[1] == "page" else case[0].count_ms
            return statistics.median(timings) if timings else 0.0

        worst, query = max(cases, key=cost)
        names = ", ".join(f"{m.group} / {m.name}" for m, _query in cases)
        stats = worst.page if query == "page" else worst.count
        lines += [
            f"- **{title}** — {len(cases)} case(s): {names}.",
            "",
            f"  <details><summary>{query} plan of the slowest, {worst.group} / {worst.name} "
            f"({cost((worst, query)):.1f} ms)</summary>",
            "",
            "  ```",
            *(f"  {line}" for line in stats.text.splitlines()),
            "  ```",
            "",
            "  </details>",
            "",
        ]
    return lines or ["None: no case scans or sorts the users table, and no COUNT dominates."]


# --- candidate fixes, measured beside what runs today (no project code is changed) ----------------


def time_call(call: Callable[[], Any], runs: int) -> list[float]:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def page_as_today(offset: int) -> Callable[[], Any]:
    """The page as `for_staff_list` reads it: flags as EXISTS columns, roles and providers prefetched."""
    return lambda: list(User.objects.for_staff_list().order_by("username")[offset : offset + 50])


def page_flags_afterwards(offset: int) -> Callable[[], Any]:
    """The same page and the same flags: the page first, then one query per flag for its 50 users."""

    def read() -> Any:
        users = list(User.objects.order_by("username")[offset : offset + 50])
        prefetch_related_objects(users, "groups", "socialaccount_set")
        ids = [user.pk for user in users]
        verified = set(
            EmailAddress.objects.filter(user_id__in=ids, primary=True, verified=True).values_list(
                "user_id", flat=True
            )
        )
        mfa = set(
            Authenticator.objects.filter(user_id__in=ids, type__in=MFA_FACTOR_TYPES).values_list(
                "user_id", flat=True
            )
        )
        return users, verified, mfa

    return read


def without_jit(call: Callable[[], Any]) -> Callable[[], Any]:
    def read() -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SET jit = off")
        try:
            return call()
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET jit")

    return read


def run_sql(sql: str) -> Callable[[], Any]:
    def read() -> Any:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()

    return read


def capped_count(count_sql: str, cap: int = 10_000) -> str:
    """The COUNT stopped at `cap` + 1 rows, as a paginator showing "10,000+" would run it."""
    inner = count_sql.replace('SELECT COUNT(*) AS "__count"', "SELECT 1", 1)
    return f"SELECT count(*) FROM ({inner} LIMIT {cap + 1}) AS capped"


def candidate_fixes(api: list[Measure], runs: int) -> list[str]:
    by_name = {m.name: m for m in api if not m.error}
    rows: list[tuple[str, str, Callable[[], Any], str, Callable[[], Any]]] = []
    for label, offset in (("first page", 0), ("page 1000", 49_950)):
        rows.append(
            (
                f"{label}: EXISTS flags in the page query (today) against the page, then the flags of its "
                "50 users by `user_id IN (…)`",
                "today, through the ORM",
                page_as_today(offset),
                "flags afterwards",
                page_flags_afterwards(offset),
            )
        )
    rows.append(
        (
            "page 1000: JIT on (the PostgreSQL default) against `SET jit = off`",
            "today, through the ORM",
            page_as_today(49_950),
            "jit = off",
            without_jit(page_as_today(49_950)),
        )
    )
    rows.append(
        (
            "page 1000: both changes",
            "today, through the ORM",
            page_as_today(49_950),
            "flags afterwards, jit = off",
            without_jit(page_flags_afterwards(49_950)),
        )
    )
    one = next((m for m in by_name.values() if m.name.endswith("(one username)")), None)
    if one is not None and one.page_sql.rstrip().endswith("LIMIT 1"):
        rows.append(
            (
                f"{one.name}: the paginator's `LIMIT 1` (one match counted) against a fixed `LIMIT 50`",
                "LIMIT 1 (today)",
                run_sql(one.page_sql),
                "LIMIT 50",
                run_sql(one.page_sql.rstrip()[: -len("LIMIT 1")] + "LIMIT 50"),
            )
        )
    for name in (
        "first page",
        "email_verified=true",
        "search=gmail.com (common domain)",
        "search=li (two letters)",
        "role=user",
    ):
        m = by_name.get(name)
        if m is not None and m.count_sql:
            rows.append(
                (
                    f"{name}: exact COUNT against a COUNT capped at 10,000",
                    "exact (today)",
                    run_sql(m.count_sql),
                    "capped",
                    run_sql(capped_count(m.count_sql)),
                )
            )
    lines = [
        "| what | today | ms | candidate | ms | candidate / today |",
        "|---|---|---:|---|---:|---:|",
    ]
    for what, today_label, today, candidate_label, candidate in rows:
        today(), candidate()  # warm both
        today_ms: list[float] = []
        candidate_ms: list[float] = []
        for _ in range(runs):
            today_ms += time_call(today, 1)
            candidate_ms += time_call(candidate, 1)
        lines.append(
            f"| {cell(what)} | {today_label} | {median(today_ms)} | {candidate_label} | "
            f"{median(candidate_ms)} | {statistics.median(candidate_ms) / statistics.median(today_ms):.2f} |"
        )
        log(lines[-1])
    return lines


def headline(api: list[Measure], admin_measures: list[Measure], bare: dict[str, list[float]]) -> list[str]:
    def find(measures: list[Measure], name: str) -> Measure | None:
        return next((m for m in measures if m.name == name and not m.error), None)

    lines = [
        f"- Bare Django JSON view behind the whole middleware stack: {median(bare['API'])} ms on the API "
        f"client (JWT header, no session), {median(bare['admin'])} ms on the admin client (its session "
        "is read and allauth's user session touched on every request). Every request below is also "
        "shown as a multiple of the bare view on its own client (x bare), timed interleaved with it."
    ]
    for label, measures, name in (
        ("API list, first page of 50", api, "first page"),
        ("API list, page 1000", api, "page 1000 (offset 49,950)"),
        ("API list, page_size=200", api, "page_size=200"),
        ("API search, common substring", api, "search=son (common substring)"),
        ("API detail (staff)", api, "staff reads a user"),
        ("API me (staff)", api, "staff reads me"),
        ("admin changelist, first page of 100", admin_measures, "changelist"),
        ("admin changelist, search", admin_measures, "q=son"),
    ):
        m = find(measures, name)
        if m is not None:
            lines.append(
                f"- {label}: {median(m.request_ms)} ms (x {m.ratio:.1f} bare), {m.queries} queries, "
                f"SQL {median(m.all_sql_ms)} ms of which COUNT {median(m.count_ms)} ms."
            )
    valid = [m for m in api + admin_measures if not m.error and m.request_ms]
    if valid:
        worst = max(valid, key=lambda m: m.ratio)
        lines.append(
            f"- Slowest request: {worst.group} / {worst.name}, {median(worst.request_ms)} ms "
            f"(x {worst.ratio:.1f} bare)."
        )
    failed = [m for m in api + admin_measures if m.error]
    if failed:
        lines.append(
            f"- **{len(failed)} case(s) failed**: " + "; ".join(f"{m.name}: {m.error}" for m in failed)
        )
    return lines


def data_summary(load_seconds: float | None) -> str:
    counts = {
        "users": scalar(f"SELECT count(*) FROM {TABLE}"),
        "verified": scalar('SELECT count(*) FROM account_emailaddress WHERE "primary" AND verified'),
        "addresses": scalar("SELECT count(*) FROM account_emailaddress"),
        "totp": scalar("SELECT count(*) FROM mfa_authenticator WHERE type = 'totp'"),
        "recovery": scalar("SELECT count(*) FROM mfa_authenticator WHERE type = 'recovery_codes'"),
        "github": scalar("SELECT count(*) FROM socialaccount_socialaccount WHERE provider = 'github'"),
        "google": scalar("SELECT count(*) FROM socialaccount_socialaccount WHERE provider = 'google'"),
        "inactive": scalar(f"SELECT count(*) FROM {TABLE} WHERE NOT is_active"),
        "never": scalar(f"SELECT count(*) FROM {TABLE} WHERE last_login IS NULL"),
        "staff_roles": scalar(
            "SELECT count(*) FROM accounts_user_groups JOIN auth_group ON auth_group.id = group_id "
            "WHERE auth_group.name <> 'user'"
        ),
    }
    size = scalar(f"SELECT pg_size_pretty(pg_total_relation_size('{TABLE}'))")
    loaded = (
        f"Loaded with `INSERT ... SELECT ... FROM generate_series` in {load_seconds:.0f} s, then "
        "`VACUUM ANALYZE`."
        if load_seconds
        else "Loaded by an earlier run, then `VACUUM ANALYZE`."
    )
    return (
        f"- Data: {counts['users']:,} users ({size} with indexes) created over {YEARS} years, sign-ups "
        "growing, rows in sign-up order; usernames, display names and e-mail addresses built from "
        f"{len(FIRST_NAMES)} first names and {len(LAST_NAMES)} last names drawn with a skew (plus 5 rare "
        f"ones for one user in a thousand) and {len(DOMAIN_WEIGHTS)} domains (34 % gmail.com); "
        f"{counts['inactive']:,} inactive, {counts['never']:,} never signed in; every user in the `user` "
        f"group and {counts['staff_roles']} admin/moderator/tester memberships; {counts['addresses']:,} "
        f"allauth addresses, {counts['verified']:,} primary and verified; {counts['totp']:,} TOTP "
        f"authenticators ({counts['recovery']:,} with recovery codes); {counts['github']:,} GitHub and "
        f"{counts['google']:,} Google accounts. {loaded}"
    )


def write_section(target: Path, text: str) -> None:
    """Replace this benchmark's section, keeping the hand-written notes at its end."""
    current = target.read_text() if target.exists() else "# Benchmarks\n\n"
    notes = f"{SECTION_NOTES}\n"
    if SECTION_START in current:
        before, rest = current.split(SECTION_START, 1)
        inside, after = rest.split(SECTION_END, 1)
        if SECTION_NOTES in inside:
            notes = SECTION_NOTES + inside.split(SECTION_NOTES, 1)[1]
        after = after.lstrip("\n")
        current = before + text + notes + SECTION_END + "\n" + ("\n" + after if after else "")
    else:
        current = current.rstrip("\n") + "\n\n" + text + notes + SECTION_END + "\n"
    target.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--runs", type=int, default=9, help="timed runs per case (medians reported)")
    parser.add_argument("--reload", action="store_true", help="truncate the users and load them again")
    parser.add_argument("--write", type=Path, help="replace this benchmark's section of that Markdown file")
    args = parser.parse_args()

    if connection.vendor != "postgresql":
        sys.exit("Point DATABASE_URL at PostgreSQL: this measures PostgreSQL plans.")
    call_command("migrate", verbosity=0)
    load_seconds = load(args.users, reload=args.reload)
    load_before = os.getloadavg()[0]
    mount_bare_view()

    staff = bench_user("bench_admin", ["admin"])
    member = bench_user("bench_member", [])
    other = User.objects.filter(
        id=scalar(f"SELECT id FROM {TABLE} ORDER BY md5(id::text) DESC LIMIT 1")
    ).get()
    staff_api = api_client(staff)
    member_api = api_client(member)

    admin_client = Client()
    admin_client.force_login(staff)
    for _ in range(20):  # connections, caches and the code paths warm, as on a server that is up
        staff_api.get(BARE_PATH)
        staff_api.get(LIST_PATH)
        admin_client.get(BARE_PATH)
    bare = {"API": time_bare(staff_api, args.runs * 3), "admin": time_bare(admin_client, args.runs * 3)}

    api: list[Measure] = []
    for group, cases in list_cases().items():
        for name, params in cases:
            api.append(
                measure_request(group, name, staff_api, LIST_PATH, params, args.runs, matches=api_matches)
            )
    detail = "detail and me"
    api += [
        measure_request(detail, "staff reads a user", staff_api, f"{LIST_PATH}{other.pk}/", {}, args.runs),
        measure_request(detail, "staff reads me", staff_api, f"{LIST_PATH}me/", {}, args.runs),
        measure_request(detail, "user reads a profile", member_api, f"{LIST_PATH}{other.pk}/", {}, args.runs),
        measure_request(detail, "user reads me", member_api, f"{LIST_PATH}me/", {}, args.runs),
    ]

    admin_measures = [
        measure_request("admin", name, admin_client, ADMIN_PATH, params, args.runs, matches=admin_matches)
        for name, params in admin_cases()
    ]

    fixes = candidate_fixes(api, args.runs)
    load_after = os.getloadavg()[0]
    cpu_count = os.cpu_count()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
        ).stdout.strip()
    except OSError:
        commit = "?"
    groups = list(dict.fromkeys(m.group for m in api))
    report = [
        SECTION_START,
        f"## Staff user list: search, filters, orderings and pages at {args.users:,} users",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; commit {commit} (plus the working tree, "
        "which other work was changing during the run).",
        f"- Machine: {cpu_count} cores, {memory_gib:.0f} GiB RAM; Python {platform.python_version()}; "
        f"Django {django.get_version()}; PostgreSQL {scalar('SHOW server_version')} (default configuration: "
        f"shared_buffers {scalar('SHOW shared_buffers')}, work_mem {scalar('SHOW work_mem')}, jit "
        f"{scalar('SHOW jit')}). Load average {load_before:.1f} when the cases started, "
        f"{load_after:.1f} when they ended (other work shares the machine: read the ratios).",
        data_summary(load_seconds),
        "- Command: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/identity_bench_users "
        "REDIS_URL=redis://127.0.0.1:6379/10 "
        f".venv/bin/python bench/users_list.py --runs {args.runs} --write docs/benchmarks.md`",
        "- Method: each case is a real request through Django's test client — the API with a real "
        "first-party JWT of an admin (authentication, policies, filters, pagination, serializer), the "
        "admin with a signed-in admin session (the changelist rendered). The request runs once to warm "
        "up, once with its queries captured; the users query that reads the page (or the record) and "
        "its COUNT are explained with `EXPLAIN (ANALYZE, BUFFERS)` and re-run, and all the request's "
        f"SELECTs are re-run together; then {args.runs} requests alternate with {args.runs} requests of a "
        "bare Django JSON view on the same client (x bare = median request / median bare of the same "
        'runs). "users read" = rows of accounts_user the plan touched (returned + filtered out, times '
        'loops); "buffers" = 8 KiB pages touched; "matches" = the total the response reports. In the '
        "plans, `A > B` is A reading from B, `A (B ; C)` a join, `[per row: …]` a correlated subquery "
        "run for each row (the `email_verified` / `has_mfa` EXISTS columns) and `[once, hashed: …]` the "
        "same subquery run once over the whole table and hashed. All timings are medians in ms.",
        "",
        "### Headline",
        "",
        *headline(api, admin_measures, bare),
        "",
    ]
    for group in groups:
        path_label = (
            "GET /api/v1/users/{id}/ and /api/v1/users/me/"
            if group == detail
            else f"GET /api/v1/users/ (admin, page of 50 unless said) — {group}"
        )
        report += [f"### {path_label}", "", *table([m for m in api if m.group == group]), ""]
    report += [
        "### Admin changelist (/admin/accounts/user/, page of 100)",
        "",
        *table(admin_measures),
        "",
        "### Candidate fixes, measured in the same run (no project code changed)",
        "",
        "Each pair runs alternately on the same connection; the ORM rows include building the model "
        "instances, so they compare the whole read, not only the SQL.",
        "",
        *fixes,
        "",
        "### Slow cases, with their plans",
        "",
        *slow_cases(api + admin_measures),
        "",
    ]
    text = "\n".join(report) + "\n"
    print(text)
    if args.write:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
