"""The README's run command on the embedded default, end to end, as a newcomer would use it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def test_run_prints_the_discovery_url_where_discovery_answers(running_service: tuple[str, str]) -> None:
    base, output = running_service
    match = re.search(r"OIDC discovery\s+(\S+)", output)
    assert match is not None, output

    status, body = fetch(match.group(1))

    assert match.group(1) == f"{base}/.well-known/openid-configuration"
    assert status == 200
    assert json.loads(body)["issuer"] == base


def totp_now(secret: str, *, steps_from_now: int = 0) -> str:
    """The code an authenticator app shows for `secret` (RFC 6238: HMAC-SHA1, 30 s, 6 digits)."""
    key = base64.b32decode(secret, casefold=True)
    counter = int(time.time()) // 30 + steps_from_now
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**6:06d}"


def post_form(opener: urllib.request.OpenerDirector, url: str, page: str, fields: dict[str, str]) -> Any:
    """Submit a page's form as a browser would (its CSRF token included); the final response."""
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None, page
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), **fields}).encode()
    request = urllib.request.Request(url, data=data, headers={"Referer": url})  # noqa: S310
    return opener.open(request, timeout=10)


def test_run_prints_demo_credentials_that_sign_in_to_the_admin(running_service: tuple[str, str]) -> None:
    base, output = running_service
    match = re.search(r"username admin\s+password (\S+)", output)
    assert match is not None, output
    assert re.search(r"client_id demo-client\s+client_secret \S+", output)
    second_factor = re.search(r"TOTP secret ([A-Z2-7]+)\s.*?(otpauth://totp/\S+)", output, re.DOTALL)
    assert second_factor is not None, output
    totp_secret, totp_url = second_factor.groups()
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(totp_url).query)["secret"] == [totp_secret]

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    # The admin sends a newcomer to the sign-in page...
    with opener.open(f"{base}/admin/", timeout=10) as response:
        sign_in_url, page = response.geturl(), response.read().decode()
    assert sign_in_url == f"{base}/accounts/login/?next=%2Fadmin%2F"
    # ... which asks for the password, then for the code of the authenticator app.
    with post_form(opener, sign_in_url, page, {"login": "admin", "password": match.group(1)}) as response:
        second_factor_url, page = response.geturl(), response.read().decode()
    assert second_factor_url == f"{base}/accounts/2fa/authenticate/"
    assert "Two-Factor Authentication" in page
    with post_form(opener, second_factor_url, page, {"code": totp_now(totp_secret)}) as response:
        admin_url, page = response.geturl(), response.read().decode()

    assert admin_url == f"{base}/admin/"
    assert "Users, clients and settings" in page
