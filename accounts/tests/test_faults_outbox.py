"""Jobs and e-mails under real Redis and worker failures (issue 13, findings 3, 4 and 10).

The service runs in production mode (gunicorn, and a Celery worker with its embedded beat, which
runs the outbox relay) against a private PostgreSQL, a private Redis as the broker and another as
the cache (production uses one Redis for both; two let a test break the cache alone), and a small
SMTP server of the test's own that records every message and can stall a conversation. Nothing is
mocked: Redis is stopped, hung (SIGSTOP) and restarted empty, the worker is killed with SIGKILL.

The settings module wraps the production one with short outbox timings (a 4 s lease, 3 s before an
unstarted job is published again, a 6 s broker visibility timeout) so that what takes minutes in
production takes seconds here; docs/decisions/0019-outbox.md gives the production values.
"""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest

from config.tests.faults import (
    PROJECT_ROOT,
    Answer,
    PostgresServer,
    RedisServer,
    Service,
    scratch_folder,
    wait_until,
)

pytestmark = pytest.mark.faults

PASSWORD = "a-Long-enough-pass-8812"
NOTICE_SUBJECT = "[Identity] New sign-in to your account"
SETTINGS_SHIM = """\
from config.settings import *  # noqa: F403

# Production timings are minutes (docs/decisions/0019-outbox.md); the scenarios need seconds.
ACCOUNTS_JOBS_LEASE_SECONDS = 4
ACCOUNTS_JOBS_REPUBLISH_SECONDS = 3
# A web process that failed to publish leaves its jobs to the relay this long: the scenario of a
# Redis restarted empty stops the worker (and its relay) and needs the web process to publish.
ACCOUNTS_JOBS_PUBLISH_PAUSE_SECONDS = 1
# kombu looks for unacknowledged messages older than the visibility timeout every 10 s x throttle.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
    "visibility_timeout": 6,
    "unacked_restore_throttle": 1,
}
"""
# One user agent per scenario: each is a device the account has not used, so each sign-in queues
# one new-device notice naming it.
USER_AGENTS = {
    "stopped": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Firefox on Windows",
    ),
    "hung": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        "Chrome on Linux",
    ),
    "restarted": ("curl/8.5.0", "curl"),
    "killed_before": ("Wget/1.21", "Wget"),
    "killed_after": ("okhttp/4.12.0", "okhttp"),
    "cache": ("HTTPie/3.2.2", "HTTPie"),
}


# --- a small SMTP server that can stall ---------------------------------------------------------


@dataclass
class SmtpServer:
    """An SMTP server on a free port keeping every message it receives (RFC 5321, no extensions).

    `hold("data")` stalls the next conversation when the client sends DATA (nothing was handed
    over); `hold("end_of_data")` stalls it after the whole message arrived, before the 250 reply
    that tells the client it was accepted (the message is kept: a real server may deliver it).
    `release()` closes a stalled conversation without an answer and stops holding.
    """

    messages: list[EmailMessage] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    _hold_at: str | None = None
    _released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listener: socket.socket = field(default_factory=socket.socket)

    def start(self) -> SmtpServer:
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def hold(self, at: str) -> None:
        self.held.clear()
        self._released.clear()
        self._hold_at = at

    def release(self) -> None:
        self._hold_at = None
        self._released.set()

    def stop(self) -> None:
        self.release()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._converse, args=(connection,), daemon=True).start()

    def _stall(self) -> None:
        self.held.set()
        self._released.wait(timeout=120)

    def _converse(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as reader:
            connection.sendall(b"220 test-smtp ESMTP\r\n")
            for raw in reader:
                command = raw.decode("ascii", "replace").strip().upper()
                if command.startswith(("EHLO", "HELO")):
                    connection.sendall(b"250 test-smtp\r\n")
                elif command == "DATA":
                    hold_at = self._hold_at
                    if hold_at == "data":
                        self._stall()
                        return
                    connection.sendall(b"354 end with <CRLF>.<CRLF>\r\n")
                    lines = []
                    for line in reader:
                        if line in (b".\r\n", b".\n"):
                            break
                        lines.append(line[1:] if line.startswith(b"..") else line)
                    message = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
                    with self._lock:
                        self.messages.append(message)
                    if hold_at == "end_of_data":
                        self._stall()
                        return
                    connection.sendall(b"250 queued\r\n")
                elif command == "QUIT":
                    connection.sendall(b"221 bye\r\n")
                    return
                else:  # MAIL, RCPT, RSET, NOOP
                    connection.sendall(b"250 OK\r\n")

    def notices(self, device: str) -> list[EmailMessage]:
        """The new-device notices received that name `device`."""
        with self._lock:
            messages = list(self.messages)
        found = []
        for message in messages:
            if message["Subject"] != NOTICE_SUBJECT:
                continue
            text = message.get_body(preferencelist=("plain",))
            if text is not None and f"- Device: {device}\n" in text.get_content().replace("\r\n", "\n"):
                found.append(message)
        return found

    def subjects(self) -> list[str]:
        with self._lock:
            return [str(message["Subject"]) for message in self.messages]


# --- the service ------------------------------------------------------------------------------


@dataclass
class Outbox:
    service: Service
    broker: RedisServer
    cache: RedisServer
    smtp: SmtpServer
    worker_log_offset: int = 0

    def worker_start(self) -> None:
        """The worker with its embedded beat (the relay runs every few seconds), once it is ready."""
        self.worker_log_offset = len(self.service.log("worker"))
        self.service.start_worker(beat=True)
        wait_until(
            lambda: " ready." in self.worker_log(),
            timeout=60,
            what=f"the worker did not start:\n{self.worker_log()[-3000:]}",
        )

    def worker_stop(self, *, kill: bool = False) -> None:
        """Stop the worker: a warm shutdown, or SIGKILL (no goodbye, its task left unacknowledged)."""
        process = self.service.processes.pop("worker")
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout=30)

    def worker_log(self) -> str:
        return self.service.log("worker")[self.worker_log_offset :]

    def sign_in(self, user_agent: str = "") -> Answer:
        headers = {"User-Agent": user_agent} if user_agent else {}
        return self.service.request(
            "POST",
            "/_allauth/app/v1/auth/login",
            body={"username": "outbox", "password": PASSWORD},
            headers=headers,
        )

    def wait_for_notices(self, device: str, count: int, *, timeout: float = 40) -> list[EmailMessage]:
        wait_until(
            lambda: len(self.smtp.notices(device)) >= count,
            timeout=timeout,
            what=(
                f"{count} notice(s) for {device!r} did not arrive (got {len(self.smtp.notices(device))}); "
                f"worker log:\n{self.worker_log()[-4000:]}"
            ),
            interval=0.2,
        )
        return self.smtp.notices(device)


def _redis(folder: Path, name: str) -> RedisServer:
    own = folder / name
    own.mkdir()
    return RedisServer(own).start()


@pytest.fixture(scope="module")
def outbox() -> Iterator[Outbox]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed for the fault tests (CI installs it)")
    folder = scratch_folder("faults-outbox-")
    (folder / "outbox_fault_settings.py").write_text(SETTINGS_SHIM)
    broker = _redis(folder, "broker")
    cache = _redis(folder, "cache")
    postgres = PostgresServer(folder).start()
    smtp = SmtpServer().start()
    service = Service(
        folder,
        redis=broker,
        postgres=postgres,
        environment={
            "DJANGO_SETTINGS_MODULE": "outbox_fault_settings",
            "PYTHONPATH": f"{folder}{os.pathsep}{PROJECT_ROOT}",
            "REDIS_URL": cache.url,
            "CELERY_RESULT_BACKEND": broker.url,
            "EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}",
            "RATELIMIT_SIGNIN": "10000/m",
        },
    )
    running = Outbox(service=service, broker=broker, cache=cache, smtp=smtp)
    try:
        service.start()
        service.create_user("outbox", PASSWORD)
        # The first sign-in makes the one known device (no user agent: "Unknown device").
        assert running.sign_in().status == 200
        running.worker_start()
        yield running
    finally:
        service.stop()
        smtp.stop()
        broker.stop()
        cache.stop()
        postgres.destroy()


def assert_signed_in_at_once(answer: Answer) -> None:
    assert answer.status == 200, (answer.status, answer.body[:500], answer.error)
    # The sign-in itself takes well under a second; 3 s leaves room for a loaded 2-core machine.
    assert answer.seconds < 3, answer.seconds


# --- finding 4: publishing never fails or stalls the request -----------------------------------


def test_a_new_device_sign_in_while_the_broker_is_hung_answers_at_once_and_the_notice_follows_once(
    outbox: Outbox,
) -> None:
    """The broker alone is hung: a hung cache (finding 2) is bounded by the cache's own timeouts.
    First of the module: a process leaves its jobs to the relay for a while after a failed publish,
    and this scenario needs the publish to meet the hung broker."""
    user_agent, device = USER_AGENTS["hung"]

    with outbox.broker.hung():
        answer = outbox.sign_in(user_agent)
        time.sleep(1)
        during = outbox.smtp.notices(device)

    assert_signed_in_at_once(answer)
    # The publish really met the hung broker (and gave up after its timeout).
    assert "broker unavailable: OperationalError: Timeout reading from socket" in outbox.service.log("web")
    assert during == []
    outbox.wait_for_notices(device, 1)
    time.sleep(2)
    assert len(outbox.smtp.notices(device)) == 1


def test_a_new_device_sign_in_while_redis_is_stopped_answers_at_once_and_the_notice_follows_once(
    outbox: Outbox,
) -> None:
    user_agent, device = USER_AGENTS["stopped"]

    with outbox.cache.stopped(), outbox.broker.stopped():
        answer = outbox.sign_in(user_agent)
        time.sleep(1)
        during = outbox.smtp.notices(device)

    assert_signed_in_at_once(answer)
    assert during == []
    outbox.wait_for_notices(device, 1)
    time.sleep(2)
    assert len(outbox.smtp.notices(device)) == 1


# --- finding 10: jobs queued in a Redis that restarts empty --------------------------------------


def test_a_queued_notice_lost_by_a_redis_restarted_empty_is_still_sent_once(outbox: Outbox) -> None:
    user_agent, device = USER_AGENTS["restarted"]
    outbox.worker_stop()
    try:
        assert_signed_in_at_once(outbox.sign_in(user_agent))
        wait_until(
            lambda: outbox.broker.command("LLEN", "celery") not in ("", "0"),
            timeout=10,
            what="the notice was not queued",
        )
        outbox.broker.restart(save=False)
        assert outbox.broker.command("LLEN", "celery") == "0"
    finally:
        outbox.worker_start()
    outbox.wait_for_notices(device, 1)
    time.sleep(4)
    assert len(outbox.smtp.notices(device)) == 1


# --- a data export requested during an outage --------------------------------------------------


def test_a_data_export_requested_while_redis_is_stopped_is_built_once_redis_is_back(outbox: Outbox) -> None:
    signed_in = outbox.sign_in()
    assert signed_in.status == 200
    bearer = {"Authorization": f"Bearer {signed_in.json()['meta']['access_token']}"}

    with outbox.cache.stopped(), outbox.broker.stopped():
        answer = outbox.service.request("POST", "/api/v1/users/me/export/", headers=bearer)
        time.sleep(1)
        during = outbox.service.request(
            "GET", f"/api/v1/users/me/export/{answer.json()['id']}/", headers=bearer
        )

    assert answer.status == 202, answer.body[:500]
    assert answer.seconds < 3, answer.seconds
    assert during.json()["status"] == "pending"
    status_url = f"/api/v1/users/me/export/{answer.json()['id']}/"

    def ready() -> bool:
        return outbox.service.request("GET", status_url, headers=bearer).json()["status"] == "ready"

    wait_until(ready, timeout=40, what=f"the export was not built:\n{outbox.worker_log()[-4000:]}")
    wait_until(
        lambda: "[Identity] Your data export is ready" in outbox.smtp.subjects(),
        timeout=20,
        what=f"the export's e-mail did not arrive: {outbox.smtp.subjects()}",
    )
    assert outbox.smtp.subjects().count("[Identity] Your data export is ready") == 1


# --- a worker killed mid-send -------------------------------------------------------------------


def test_a_worker_killed_before_the_smtp_server_took_the_notice_sends_it_once_after_the_lease(
    outbox: Outbox,
) -> None:
    """Killed in the SMTP conversation, before DATA: the lease (4 s here) ends, the relay publishes
    the job again and a worker sends it; the broker's own redelivery of the killed worker's message
    (after its visibility timeout, 6 s here) finds the job done and sends nothing."""
    user_agent, device = USER_AGENTS["killed_before"]
    outbox.smtp.hold("data")
    try:
        assert_signed_in_at_once(outbox.sign_in(user_agent))
        assert outbox.smtp.held.wait(timeout=20), outbox.worker_log()[-3000:]
        outbox.worker_stop(kill=True)
    finally:
        outbox.smtp.release()
        outbox.worker_start()

    [notice] = outbox.wait_for_notices(device, 1)
    # The killed worker's own message comes back too (kombu restores unacknowledged messages older
    # than the visibility timeout every 10 s): it finds the job done.
    wait_until(
        lambda: "(account/email/new_device) not claimed, its job is done; skipped" in outbox.worker_log(),
        timeout=40,
        what=f"the killed worker's message was not redelivered:\n{outbox.worker_log()[-4000:]}",
    )
    assert outbox.smtp.notices(device) == [notice]


def test_a_worker_killed_after_the_smtp_server_took_the_notice_sends_it_again_with_the_same_message_id(
    outbox: Outbox,
) -> None:
    """The one window left (docs/decisions/0019-outbox.md): the server has the message but the worker
    dies before it hears the 250 and records the job done. After the lease the notice is sent again,
    with the same Message-ID, which lets mail clients and providers show one copy."""
    user_agent, device = USER_AGENTS["killed_after"]
    outbox.smtp.hold("end_of_data")
    try:
        assert_signed_in_at_once(outbox.sign_in(user_agent))
        assert outbox.smtp.held.wait(timeout=20), outbox.worker_log()[-3000:]
        outbox.worker_stop(kill=True)
    finally:
        outbox.smtp.release()
        outbox.worker_start()

    first, second = outbox.wait_for_notices(device, 2)
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Message-ID"].endswith("@127.0.0.1>")


# --- finding 3: the cache unreachable, the broker working ---------------------------------------


def test_a_notice_is_sent_exactly_once_while_the_cache_is_unreachable(outbox: Outbox) -> None:
    user_agent, device = USER_AGENTS["cache"]

    with outbox.cache.stopped():
        assert_signed_in_at_once(outbox.sign_in(user_agent))
        outbox.wait_for_notices(device, 1, timeout=20)
        time.sleep(3)
        assert len(outbox.smtp.notices(device)) == 1
