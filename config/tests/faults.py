# ruff: noqa: S607  (our own servers, started from fixed argument lists)
"""Real dependencies to break: a private Redis and PostgreSQL, and the service itself.

Fault tests start their own `redis-server` and PostgreSQL cluster (never the shared ones CI runs
the suite on), the service in production mode against them (gunicorn, optionally a Celery worker),
and then stop, hang (SIGSTOP) and restart the dependencies under a small bounded load. Nothing here
mocks a failure: what the service sees is what it would see in production.

    redis = RedisServer(folder).start()
    postgres = PostgresServer(folder).start()
    service = Service(folder, redis=redis, postgres=postgres).start()
    service.request("GET", "/health/ready")
    with redis.hung():
        ...
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
POSTGRES_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/bin"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} within {timeout} s")


def scratch_folder(prefix: str) -> Path:
    """A folder the PostgreSQL user can use too (pytest's own are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    folder.chmod(0o755)
    return folder


# --- Redis -----------------------------------------------------------------------------------


class RedisServer:
    """One `redis-server` on a free port, keeping its data in `folder` only when told to save."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or start again, loading a snapshot a `stop(save=True)` left)."""
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self.answers, timeout=10, what=f"Redis on port {self.port} did not answer")
        return self

    def command(self, *words: str, timeout: float = 2) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), *words], capture_output=True, text=True, timeout=timeout
        )
        return result.stdout.strip()

    def answers(self) -> bool:
        try:
            return self.command("PING", timeout=1) == "PONG"
        except subprocess.TimeoutExpired:
            return False

    def stop(self, *, save: bool = False) -> None:
        """Shut down; with `save`, keep a snapshot that the next start loads (`SHUTDOWN SAVE`)."""
        if self.process is None:
            return
        self.resume()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.command("SHUTDOWN", "SAVE" if save else "NOSAVE")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def restart(self, *, save: bool = False) -> None:
        self.stop(save=save)
        if not save:
            (self.folder / "dump.rdb").unlink(missing_ok=True)
        self.start()

    def hang(self) -> None:
        """Freeze the server: connections stay open and nothing answers (SIGSTOP)."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    @contextlib.contextmanager
    def hung(self) -> Iterator[None]:
        self.hang()
        try:
            yield
        finally:
            self.resume()

    @contextlib.contextmanager
    def stopped(self, *, save: bool = False) -> Iterator[None]:
        self.stop(save=save)
        try:
            yield
        finally:
            if not save:
                (self.folder / "dump.rdb").unlink(missing_ok=True)
            self.start()


# --- PostgreSQL ------------------------------------------------------------------------------


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


class PostgresServer:
    """A private PostgreSQL cluster (initdb) on a free port, trust authentication, fsync off."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        self.database = "identity"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *command: str, timeout: float = 60) -> None:
        subprocess.run(
            _as_postgres_user([str(POSTGRES_BIN / command[0]), *command[1:]]),
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self.data.mkdir()
            if os.geteuid() == 0:
                owner = pwd.getpwnam("postgres")
                for path in (self.folder, self.data):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
            first_start = True
        else:
            first_start = False
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "postgres.log"),
            "-o",
            options,
            "-w",
            "start",
        )
        if first_start:
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", self.database)
        return self

    def stop(self) -> None:
        """A fast shutdown: connections are cut, as when the server or its host goes away."""
        self.resume()
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def pids(self) -> list[int]:
        """The postmaster and every backend."""
        postmaster = (self.data / "postmaster.pid").read_text().splitlines()[0]
        children = subprocess.run(
            ["pgrep", "-P", postmaster], capture_output=True, text=True, check=False
        ).stdout.split()
        return [int(postmaster), *map(int, children)]

    def hang(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()

    @contextlib.contextmanager
    def hung(self) -> Iterator[None]:
        self.hang()
        try:
            yield
        finally:
            self.resume()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


# --- the service -------------------------------------------------------------------------------


@dataclass
class Answer:
    """One HTTP answer (or the failure to get one: status 0)."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


def _rsa_key() -> str:
    from config.key_material import new_rsa_key

    return new_rsa_key()


@dataclass
class Service:
    """The service in production mode against a private Redis and PostgreSQL.

    `start()` migrates the database, then starts gunicorn (2 workers, 4 threads) and, with
    `worker=True`, a Celery worker on the same Redis. Mail goes to files in `folder/mail`.
    """

    folder: Path
    redis: RedisServer
    postgres: PostgresServer
    environment: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mail = self.folder / "mail"
        self.mail.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.folder),
            "PYTHONPATH": str(PROJECT_ROOT),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "OIDC_RSA_PRIVATE_KEY": _rsa_key(),
            "AUDIT_CHAIN_KEYS": secrets.token_urlsafe(32),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "SITE_URL": f"http://127.0.0.1:{self.port}",
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            "CELERY_BROKER_URL": self.redis.url,
            "EMAIL_URL": f"filemail://{self.mail}",
            "LOG_FORMAT": "json",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "4",
            "DATA_DIR": str(self.folder),
            **self.environment,
        }

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *arguments: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *arguments],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def shell(self, code: str) -> str:
        """Run Python in a Django shell of the service (its settings, its database)."""
        return self.manage("shell", "-c", code)

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self, *, worker: bool = False) -> Service:
        self.manage("migrate", "--noinput")
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        self._spawn("web", [gunicorn, "-c", "config/gunicorn.conf.py", "config.wsgi:application"])
        wait_until(
            lambda: self.request("GET", "/health/live", timeout=1).status == 200,
            timeout=60,
            what=f"the service did not come up:\n{self.log('web')}",
        )
        if worker:
            self.start_worker()
        return self

    def start_worker(self, *, beat: bool = False) -> None:
        """A Celery worker (solo pool) on the service's broker; with `beat`, its embedded beat too
        (the periodic jobs, the outbox relay among them)."""
        schedule = ["--beat", "--schedule", str(self.folder / "beat-schedule")] if beat else []
        self._spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "-l",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                *schedule,
            ],
        )

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.processes.clear()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> Answer:
        """One request on a new connection; a connection failure or timeout is status 0."""
        payload = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        all_headers = {"Accept": "application/json", **(headers or {})}
        if payload is not None:
            all_headers.setdefault("Content-Type", "application/json")
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            content = response.read()
            return Answer(
                response.status,
                {name.lower(): value for name, value in response.getheaders()},
                content,
                time.monotonic() - started,
            )
        except OSError as error:
            return Answer(0, {}, b"", time.monotonic() - started, error=repr(error))
        finally:
            connection.close()

    def create_user(self, username: str, password: str) -> None:
        """A user with a verified address, made in the service's own database."""
        self.shell(
            "from allauth.account.models import EmailAddress\n"
            "from accounts.services import user_create\n"
            f"user = user_create(username={username!r}, email={username + '@example.com'!r}, "
            f"password={password!r}, email_verified=True)\n"
        )

    def sign_in(self, username: str, password: str) -> dict[str, Any]:
        """The headless app sign-in; its `meta` (session token, JWT pair)."""
        answer = self.request(
            "POST", "/_allauth/app/v1/auth/login", body={"username": username, "password": password}
        )
        if answer.status != 200:
            raise AssertionError(f"sign-in failed: {answer.status} {answer.body[:500]!r}")
        meta: dict[str, Any] = answer.json()["meta"]
        return meta


# Fault tests load the service as one very busy user from one address: its rate limits, which are
# not what they test, are lifted.
NO_RATE_LIMITS = {
    "API_THROTTLE_USER": "1000000/minute",
    "RATELIMIT_SIGNIN": "10000/m",
    "RATELIMIT_SIGNUP": "10000/m",
    "RATELIMIT_PASSWORD_RESET": "10000/m",
}


@contextlib.contextmanager
def running_service(
    prefix: str,
    *,
    environment: Mapping[str, str] | None = None,
    users: tuple[str, ...] = (),
    password: str = "",
) -> Iterator[Service]:
    """A Redis, a PostgreSQL and the service on them (rate limits lifted, `environment` on top),
    with `users` made (verified, `password`); everything stopped and removed afterwards."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is needed for the fault tests (CI installs it)")
    folder = scratch_folder(prefix)
    redis = RedisServer(folder).start()
    postgres = PostgresServer(folder).start()
    service = Service(
        folder, redis=redis, postgres=postgres, environment={**NO_RATE_LIMITS, **(environment or {})}
    )
    try:
        service.start()
        for username in users:
            service.create_user(username, password)
        yield service
    finally:
        service.stop()
        redis.stop()
        postgres.destroy()


@dataclass
class Load:
    """A small bounded load: `concurrency` threads repeating requests until stopped."""

    make_request: Callable[[], Answer]
    concurrency: int = 4
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _pool: ThreadPoolExecutor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = self.make_request()
            with self._lock:
                self.answers.append(answer)

    def __enter__(self) -> Load:
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency)
        for _ in range(self.concurrency):
            self._pool.submit(self._run)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def take(self) -> list[Answer]:
        """The answers so far, emptying the list."""
        with self._lock:
            taken, self.answers = self.answers, []
        return taken
