# ruff: noqa: S105, S607  (a throw-away password; git from a fixed argument list)
"""Sign-up timing: does the answer's time tell whether an address has an account? (issue 12, finding 4)

With enumeration prevention allauth answers a sign-up with a taken address exactly like a new one,
but used to skip the password hash, the bulk of a new account's time (Argon2: hundreds of ms). This
measures both paths through the headless API with the production password hasher on PostgreSQL,
interleaved in one run, twice: as the service is, and with the taken path's extra work switched off
(how it was before the fix), and reports the distributions and how well they separate.

"separable" is the probability that a random taken-address sign-up is faster than a random new one
(0.5: the timings tell nothing; 1.0: every taken one is faster, the old state).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/identity_bench_signup \\
        .venv/bin/python bench/signup_timing.py --rounds 40 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
os.environ.setdefault("RATELIMIT_SIGNUP", "1000000/m")  # one client signs up many times

import django  # noqa: E402

django.setup()

from allauth.account.models import EmailAddress  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core import mail  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from accounts.models import User  # noqa: E402

SECTION = "bench/signup_timing.py"
SECTION_START = f"<!-- {SECTION}: start -->"
SECTION_END = f"<!-- {SECTION}: end -->"
PASSWORD = "a-Long-enough-pass-8812"
TAKEN = "bench-signup-owner@example.com"
# The production hashers: config.test_settings puts a fast MD5 hasher first for the test suite.
PRODUCTION_HASHERS = [hasher for hasher in settings.PASSWORD_HASHERS if "MD5" not in hasher]


@contextmanager
def before_the_fix() -> Iterator[None]:
    """The taken-address path as it was: none of the new account's work."""
    with mock.patch("accounts.forms.account.user_sign_up_with_taken_address"):
        yield


def sign_up(email: str) -> float:
    username = f"bench_{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    response = Client().post(
        "/_allauth/app/v1/auth/signup",
        {"email": email, "username": username, "password": PASSWORD},
        content_type="application/json",
    )
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 401:  # signed up, the address to verify: the same for both paths
        raise SystemExit(f"unexpected answer {response.status_code}: {response.content[:300]!r}")
    mail.outbox.clear()
    return elapsed


def measure(rounds: int) -> tuple[list[float], list[float]]:
    new, taken = [], []
    for _ in range(rounds):
        new.append(sign_up(f"bench-{uuid.uuid4().hex}@example.com"))
        taken.append(sign_up(TAKEN))
    return new, taken


def separable(new: list[float], taken: list[float]) -> float:
    """P(a taken-address sign-up is faster than a new one), ties counting half."""
    wins = sum((t < n) + 0.5 * (t == n) for t in taken for n in new)
    return wins / (len(new) * len(taken))


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def row(label: str, new: list[float], taken: list[float]) -> str:
    cells = [f"{quantile(values, q):.0f}" for values in (new, taken) for q in (0.1, 0.5, 0.9)]
    ratio = statistics.median(taken) / statistics.median(new)
    return f"| {label} | {' | '.join(cells)} | {ratio:.2f} | {separable(new, taken):.2f} |"


def write_section(target: Path, text: str) -> None:
    current = target.read_text() if target.exists() else ""
    if SECTION_START in current and SECTION_END in current:
        head, rest = current.split(SECTION_START, 1)
        _, tail = rest.split(SECTION_END, 1)
        current = head + text + tail.lstrip("\n")
    else:
        current = current.rstrip("\n") + "\n\n" + text
    target.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=40, help="sign-ups of each kind per variant")
    parser.add_argument("--write", type=Path, help="replace this benchmark's section of that Markdown file")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Point DATABASE_URL at PostgreSQL, as in production.")
    call_command("migrate", verbosity=0)
    owner = User.objects.filter(email=TAKEN).first() or User.objects.create_user(
        f"bench_owner_{uuid.uuid4().hex[:8]}", TAKEN, PASSWORD
    )
    EmailAddress.objects.get_or_create(user=owner, email=TAKEN, defaults={"primary": True, "verified": True})

    with override_settings(PASSWORD_HASHERS=PRODUCTION_HASHERS, ACCOUNT_RATE_LIMITS=False):
        measure(3)  # warm: connections, templates, the hasher's first call
        now_new, now_taken = measure(args.rounds)
        with before_the_fix():
            old_new, old_taken = measure(args.rounds)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    ).stdout.strip()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server_version = cursor.fetchone()[0]
    text = "\n".join(
        [
            SECTION_START,
            "## Sign-up timing: a taken address against a new one",
            "",
            f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; commit {commit} (plus the working tree).",
            f"- Machine: {os.cpu_count()} cores; Python {platform.python_version()}; PostgreSQL "
            f"{server_version}; password hasher {PRODUCTION_HASHERS[0].rsplit('.', 1)[-1]} with its "
            "configured parameters. Load average "
            f"{os.getloadavg()[0]:.1f} at the end (other work shares the machine: read the ratios).",
            "- Command: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/identity_bench_signup "
            f".venv/bin/python bench/signup_timing.py --rounds {args.rounds} --write docs/benchmarks.md`",
            "- Method: `POST /_allauth/app/v1/auth/signup` through Django's test client, a new address "
            f"and a taken (verified) one alternating, {args.rounds} of each per variant; both answer "
            '401 with the pending verification. "before the fix" switches off the taken path\'s '
            'password hash and audit row in the same run. Times in ms; "taken / new" is the ratio of '
            'medians; "separable" is the probability that a taken-address sign-up is faster than a '
            "new one (0.5 = the timing tells nothing).",
            "",
            "| variant | new p10 | new p50 | new p90 | taken p10 | taken p50 | taken p90 | taken / new "
            "| separable |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            row("as the service is", now_new, now_taken),
            row("before the fix", old_new, old_taken),
            "",
            SECTION_END,
            "",
        ]
    )
    print(text)
    if args.write:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
