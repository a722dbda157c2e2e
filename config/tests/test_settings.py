"""Settings from the environment: the embedded default, production refusals, `check --deploy`.

Each case loads the real settings module in a fresh interpreter with exactly the given variables.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config.keys import new_rsa_key

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DUMP_SETTINGS = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "DATABASE_ENGINE": settings.DATABASES["default"]["ENGINE"],
    "DATABASE_NAME": str(settings.DATABASES["default"]["NAME"]),
    "CACHE_BACKEND": settings.CACHES["default"]["BACKEND"],
    "CELERY_TASK_ALWAYS_EAGER": settings.CELERY_TASK_ALWAYS_EAGER,
    "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    "EMAIL_BACKEND": settings.EMAIL_BACKEND,
    "EMAIL_FILE_PATH": getattr(settings, "EMAIL_FILE_PATH", None),
    "EMAIL_HOST": settings.EMAIL_HOST,
    "EMAIL_PORT": settings.EMAIL_PORT,
    "EMAIL_HOST_USER": settings.EMAIL_HOST_USER,
    "MEDIA_ROOT": str(settings.MEDIA_ROOT),
    "OIDC_KEY": settings.OAUTH2_PROVIDER["OIDC_RSA_PRIVATE_KEY"],
    "SECRET_KEY": settings.SECRET_KEY,
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "CORS_ALLOWED_ORIGINS": settings.CORS_ALLOWED_ORIGINS,
    "TRUSTED_PROXIES": settings.TRUSTED_PROXIES,
    "LOG_FORMAT": settings.LOG_FORMAT,
    "HSTS": settings.SECURE_HSTS_SECONDS,
}))
"""


def run_python(code: str, environment: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env={**base, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def load_settings(environment: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    completed = run_python(DUMP_SETTINGS, environment, tmp_path)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def production_environment(tmp_path: Path, **overrides: str) -> dict[str, str]:
    return {
        "DATA_DIR": str(tmp_path / "data"),
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "OIDC_RSA_PRIVATE_KEY": new_rsa_key(),
        "SITE_URL": "https://id.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        **overrides,
    }


def test_embedded_default_runs_with_nothing_set(tmp_path: Path) -> None:
    data = tmp_path / "data"

    loaded = load_settings({"DATA_DIR": str(data)}, tmp_path)

    assert loaded["DEBUG"] is True
    assert loaded["DATABASE_ENGINE"] == "django.db.backends.sqlite3"
    assert loaded["DATABASE_NAME"] == str(data / "db.sqlite3")
    assert loaded["CACHE_BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    assert loaded["CELERY_TASK_ALWAYS_EAGER"] is True
    assert loaded["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    assert loaded["MEDIA_ROOT"] == str(data / "media")
    assert loaded["LOG_FORMAT"] == "text"
    assert loaded["HSTS"] == 0
    assert loaded["OIDC_KEY"].startswith("-----BEGIN PRIVATE KEY-----")


def test_embedded_default_generates_its_keys_once(tmp_path: Path) -> None:
    data = tmp_path / "data"

    first = load_settings({"DATA_DIR": str(data)}, tmp_path)
    second = load_settings({"DATA_DIR": str(data)}, tmp_path)

    assert first["OIDC_KEY"] == second["OIDC_KEY"]
    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    assert len(first["SECRET_KEY"]) >= 50
    key_file = data / "oidc_rsa_private_key.pem"
    assert key_file.read_text() == first["OIDC_KEY"]
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (data / "secret_key").stat().st_mode & 0o777 == 0o600


def test_services_come_from_the_environment(tmp_path: Path) -> None:
    loaded = load_settings(
        production_environment(
            tmp_path,
            DATABASE_URL="postgres://app:pw@db.internal:5432/identity",
            REDIS_URL="redis://cache.internal:6379/2",
            DJANGO_ALLOWED_HOSTS="id.example.com,id2.example.com",
            CORS_ALLOWED_ORIGINS="https://app.example.com",
            TRUSTED_PROXIES="10.0.0.0/8,192.0.2.1",
            MEDIA_ROOT=str(tmp_path / "media-elsewhere"),
        ),
        tmp_path,
    )

    assert loaded["DEBUG"] is False
    assert loaded["DATABASE_ENGINE"] == "django.db.backends.postgresql"
    assert loaded["CACHE_BACKEND"] == "django_redis.cache.RedisCache"
    assert loaded["CELERY_BROKER_URL"] == "redis://cache.internal:6379/2"
    assert loaded["CELERY_TASK_ALWAYS_EAGER"] is False
    assert loaded["ALLOWED_HOSTS"] == ["id.example.com", "id2.example.com"]
    assert loaded["CORS_ALLOWED_ORIGINS"] == ["https://app.example.com"]
    assert loaded["TRUSTED_PROXIES"] == ["10.0.0.0/8", "192.0.2.1"]
    assert loaded["MEDIA_ROOT"] == str(tmp_path / "media-elsewhere")
    assert loaded["LOG_FORMAT"] == "json"
    assert loaded["HSTS"] == 31_536_000


@pytest.mark.parametrize(
    ("email_url", "expected"),
    [
        ("consolemail://", {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}),
        (
            "filemail:///srv/mail/outbox",
            {
                "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
                "EMAIL_FILE_PATH": "/srv/mail/outbox",
            },
        ),
        (
            "smtp://mailer:mail-pass@smtp.example.com:587",
            {
                "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "EMAIL_HOST": "smtp.example.com",
                "EMAIL_PORT": 587,
                "EMAIL_HOST_USER": "mailer",
            },
        ),
    ],
)
def test_email_url_takes_django_environ_forms(
    tmp_path: Path, email_url: str, expected: dict[str, Any]
) -> None:
    loaded = load_settings({"DATA_DIR": str(tmp_path / "data"), "EMAIL_URL": email_url}, tmp_path)

    assert {key: loaded[key] for key in expected} == expected


@pytest.mark.parametrize(
    "secret_key",
    [
        "",
        "short-key",
        "x" * 64,
        "django-insecure-" + secrets.token_urlsafe(50),
    ],
)
def test_production_refuses_a_missing_or_weak_secret_key(tmp_path: Path, secret_key: str) -> None:
    completed = run_python(
        DUMP_SETTINGS, production_environment(tmp_path, DJANGO_SECRET_KEY=secret_key), tmp_path
    )

    assert completed.returncode != 0
    assert "DJANGO_SECRET_KEY is missing or weak" in completed.stderr
    if secret_key:
        assert secret_key not in completed.stderr


def test_production_refuses_to_run_without_a_shared_signing_key(tmp_path: Path) -> None:
    completed = run_python(DUMP_SETTINGS, production_environment(tmp_path, OIDC_RSA_PRIVATE_KEY=""), tmp_path)

    assert completed.returncode != 0
    assert "OIDC_RSA_PRIVATE_KEY is required" in completed.stderr


def test_check_deploy_reports_nothing_in_production_mode(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **production_environment(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "System check identified no issues (0 silenced)."


def test_check_deploy_fails_in_production_without_a_shared_cache(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=PROJECT_ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            **production_environment(tmp_path, REDIS_URL=""),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode != 0
    assert "django_ratelimit.E003" in completed.stderr


def test_env_example_lists_every_variable_the_service_reads() -> None:
    sources = (PROJECT_ROOT / "config" / "settings.py").read_text() + (
        PROJECT_ROOT / "config" / "gunicorn.conf.py"
    ).read_text()
    read = set(re.findall(r"""env\.\w+\(\s*"([A-Z0-9_]+)\"""", sources))
    read |= set(re.findall(r"""os\.environ\.get\(\s*["']([A-Z0-9_]+)["']""", sources))
    listed = set(re.findall(r"^([A-Z0-9_]+)=", (PROJECT_ROOT / ".env.example").read_text(), re.MULTILINE))

    assert len(read) > 30
    assert read - listed == set()
