"""The README's run command on the embedded default, end to end, as a newcomer would use it."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def running_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`make run` with no configuration at all, in a fresh data folder; yields (base URL, output)."""
    if shutil.which("make") is None:
        pytest.fail("make is required to run the README's run command")
    data = tmp_path_factory.mktemp("embedded")
    port = free_port()
    log = data / "run.log"
    environment = {"PATH": os.environ["PATH"], "HOME": str(data), "DATA_DIR": str(data), "PORT": str(port)}
    with log.open("w") as output:
        process = subprocess.Popen(
            ["make", "run"],  # noqa: S607
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/health/live", timeout=2):  # noqa: S310
                    break
            except OSError:  # refused, reset, or timed out while gunicorn boots its workers
                if process.poll() is not None:
                    pytest.fail(f"make run exited early:\n{log.read_text()}")
                time.sleep(0.5)
        else:
            pytest.fail(f"the service did not come up:\n{log.read_text()}")
        yield base, log.read_text()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def fetch(url: str, opener: urllib.request.OpenerDirector | None = None, **kwargs: object) -> tuple[int, str]:
    request = urllib.request.Request(url, **kwargs)  # type: ignore[arg-type]  # noqa: S310
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_run_serves_readiness_schema_and_landing_page(running_service: tuple[str, str]) -> None:
    base, _ = running_service

    status, body = fetch(f"{base}/health/ready")
    assert status == 200
    assert json.loads(body)["status"] == "ok"
    status, body = fetch(f"{base}/api/v1/schema/")
    assert status == 200
    assert body.startswith("openapi: 3.")
    status, body = fetch(f"{base}/")
    assert status == 200
    assert 'href="/admin/"' in body


def test_run_prints_demo_credentials_that_sign_in_to_the_admin(running_service: tuple[str, str]) -> None:
    base, output = running_service
    match = re.search(r"username admin\s+password (\S+)", output)
    assert match is not None, output
    assert re.search(r"client_id demo-client\s+client_secret \S+", output)

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, page = fetch(f"{base}/admin/login/", opener)
    assert status == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token.group(1),
            "username": "admin",
            "password": match.group(1),
            "next": "/admin/",
        }
    ).encode()
    status, page = fetch(
        f"{base}/admin/login/", opener, data=form, headers={"Referer": f"{base}/admin/login/"}
    )

    assert status == 200
    assert "Users, clients and settings" in page
