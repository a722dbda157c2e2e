# ruff: noqa: S603, S607  (a benchmark starting the server and git from fixed argument lists)
"""gunicorn `sync` against `gthread` workers, measured as ratios within one run.

For each worker class it starts gunicorn with `config/gunicorn.conf.py` (production mode, DEBUG
off), signs a user in through the headless API, then drives three cases from client threads on
keep-alive connections:

- "bare": `GET /health/live`, answered by middleware before any view (the floor of the stack);
- "api read": `GET /api/v1/users/me/` with a JWT (authentication, revocation check, policies,
  serializer);
- "api read + slow clients": the same, while some extra connections sit idle on keep-alive, the
  way mobile clients and slow networks hold them.

It reports requests per second and latency percentiles, and the ratios that matter: api/bare for
each class, gthread/sync for each case. Needs PostgreSQL and Redis, like production:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/identity_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/gunicorn_workers.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
USERNAME = "bench_gunicorn"
PASSWORD = secrets.token_urlsafe(18)
SECTION = "bench/gunicorn_workers.py"


def rsa_private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


OIDC_KEY = rsa_private_key_pem()


@dataclass
class Result:
    case: str
    worker_class: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000 if ordered else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_environment(port: int, worker_class: str, workers: int, threads: int) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        OIDC_RSA_PRIVATE_KEY=OIDC_KEY,
        AUDIT_CHAIN_KEYS=secrets.token_urlsafe(32),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="false",
        SITE_URL=f"http://127.0.0.1:{port}",
        HOST="127.0.0.1",
        PORT=str(port),
        GUNICORN_WORKER_CLASS=worker_class,
        WEB_CONCURRENCY=str(workers),
        GUNICORN_THREADS=str(threads),
        API_THROTTLE_USER="100000000/minute",
        API_THROTTLE_ANON="100000000/minute",
        ACCOUNT_EMAIL_VERIFICATION="none",
    )
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    return environment


def prepare_database(environment: dict[str, str]) -> None:
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=environment, check=True
    )
    script = (
        "from accounts.models import User\n"
        "from accounts.services import user_create, user_set_password\n"
        f"user = User.objects.filter(username={USERNAME!r}).first()\n"
        f"user = user_set_password(user=user, password={PASSWORD!r}) if user else "
        f"user_create(username={USERNAME!r}, email='{USERNAME}@example.com', password={PASSWORD!r}, "
        "email_verified=True)\n"
    )
    subprocess.run([PYTHON, "manage.py", "shell", "-c", script], cwd=ROOT, env=environment, check=True)


def wait_until_up(port: int, server: subprocess.Popen[bytes]) -> None:
    for _ in range(120):
        if server.poll() is not None:
            raise RuntimeError("gunicorn exited before serving")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/health/live")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError("gunicorn did not come up")


def sign_in(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"username": USERNAME, "password": PASSWORD})
    connection.request(
        "POST",
        "/_allauth/app/v1/auth/login",
        body=body,
        headers={"Content-Type": "application/json", "User-Agent": "bench/1"},
    )
    response = connection.getresponse()
    payload = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"sign-in failed: {response.status} {payload}")
    return str(payload["meta"]["access_token"])


def drive(
    port: int, path: str, headers: dict[str, str], *, clients: int, seconds: float, result: Result
) -> None:
    """`clients` threads, each on one keep-alive connection, request `path` until time is up."""
    deadline = time.perf_counter() + seconds
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies: list[float] = []
        errors = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
            except OSError:
                errors += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.close()
        with lock:
            result.latencies.extend(latencies)
            result.errors += errors

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started


def slow_clients(port: int, count: int) -> list[socket.socket]:
    """Connections whose request trickles in: the request line is sent, the headers never finish.

    A mobile client on a poor network looks like this to the server for seconds at a time.
    """
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sockets.append(sock)
    return sockets


def run_worker_class(worker_class: str, args: argparse.Namespace) -> list[Result]:
    port = free_port()
    environment = server_environment(port, worker_class, args.workers, args.threads)
    prepare_database(environment)
    server = subprocess.Popen(
        [
            GUNICORN,
            "-c",
            "config/gunicorn.conf.py",
            "--access-logfile",
            "/dev/null",
            "config.wsgi:application",
        ],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(port, server)
        token = sign_in(port)
        auth = {"Authorization": f"Bearer {token}", "User-Agent": "bench/1"}
        cases = [
            ("bare", "/health/live", {"User-Agent": "bench/1"}, 0),
            ("api read", "/api/v1/users/me/", auth, 0),
            ("api read + slow clients", "/api/v1/users/me/", auth, args.idle),
        ]
        results = []
        for name, path, headers, idle in cases:
            drive(
                port, path, headers, clients=args.clients, seconds=1.0, result=Result(name, worker_class)
            )  # warm-up
            held = slow_clients(port, idle) if idle else []
            try:
                result = Result(name, worker_class)
                drive(port, path, headers, clients=args.clients, seconds=args.seconds, result=result)
                results.append(result)
            finally:
                for sock in held:
                    sock.close()
        return results
    finally:
        server.terminate()
        server.wait(timeout=30)


def report(results: list[Result], args: argparse.Namespace) -> str:
    by_key = {(result.worker_class, result.case): result for result in results}
    lines = [
        f"<!-- {SECTION}: start -->",
        "## gunicorn workers: `sync` against `gthread`",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit {commit()}.",
        f"- Machine: {os.cpu_count()} cores; Python {platform.python_version()}; database "
        f"{os.environ.get('DATABASE_URL', 'embedded SQLite').split('@')[-1]}; "
        f"cache {os.environ.get('REDIS_URL', 'locmem')}.",
        f"- Server: `config/gunicorn.conf.py`, DEBUG off, {args.workers} workers "
        f"({args.threads} threads each for gthread); clients: {args.clients} keep-alive connections from "
        f"threads on the same machine for {args.seconds:g} s per case; {args.idle} slow clients "
        "(request headers never completed) in the last case.",
        "- Command: `DATABASE_URL=... REDIS_URL=... .venv/bin/python bench/gunicorn_workers.py "
        "--write docs/benchmarks.md`",
        "",
        "| worker class | case | requests/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        lines.append(
            f"| {result.worker_class} | {result.case} | {result.rps:,.0f} | {result.percentile(0.5):.1f} | "
            f"{result.percentile(0.95):.1f} | {result.percentile(0.99):.1f} | {result.errors} |"
        )
    lines += ["", "Ratios (same run):", ""]
    for worker_class in args.classes:
        bare, api = by_key.get((worker_class, "bare")), by_key.get((worker_class, "api read"))
        if bare and api and bare.rps:
            lines.append(f"- {worker_class}: api read / bare = {api.rps / bare.rps:.2f}")
    if {"sync", "gthread"} <= set(args.classes):
        for case in ("bare", "api read", "api read + slow clients"):
            sync, gthread = by_key[("sync", case)], by_key[("gthread", case)]
            if sync.rps:
                lines.append(
                    f"- {case}: gthread / sync = {gthread.rps / sync.rps:.2f} (requests/s), "
                    f"p95 {gthread.percentile(0.95):.1f} ms against {sync.percentile(0.95):.1f} ms"
                )
    lines += ["", f"<!-- {SECTION}: end -->"]
    return "\n".join(lines)


def commit() -> str:
    completed = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return completed.stdout.strip() or "unknown"


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- {SECTION}: start -->", f"<!-- {SECTION}: end -->"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--classes", nargs="+", default=["sync", "gthread"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--idle", type=int, default=4, help="slow clients in the last case")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--write", type=Path, help="write the results into this Markdown file")
    args = parser.parse_args()
    results = [result for worker_class in args.classes for result in run_worker_class(worker_class, args)]
    section = report(results, args)
    print(section)
    if args.write:
        write_section(args.write, section)


if __name__ == "__main__":
    main()
