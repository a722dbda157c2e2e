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

from config.key_material import new_rsa_key

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
        "AUDIT_CHAIN_KEYS": secrets.token_urlsafe(48),
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
    assert "Production mode (DJANGO_DEBUG=false) refuses to start: DJANGO_SECRET_KEY is " in completed.stderr
    if secret_key:
        assert secret_key not in completed.stderr


def test_production_refuses_to_run_without_a_shared_signing_key(tmp_path: Path) -> None:
    completed = run_python(DUMP_SETTINGS, production_environment(tmp_path, OIDC_RSA_PRIVATE_KEY=""), tmp_path)

    assert completed.returncode != 0
    assert "refuses to start: OIDC_RSA_PRIVATE_KEY is empty" in completed.stderr


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


# --- empty values, the example file, weak keys (issue 12, item 15) ------------------------------

DUMP_ALL_SETTINGS = """
import json, django
from django.conf import settings
django.setup()

def canonical(value):  # sets in a stable order (string hashing differs between processes)
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(canonical(item) for item in value)) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{canonical(key)}: {canonical(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return type(value).__name__ + "[" + ", ".join(canonical(item) for item in value) + "]"
    return repr(value)

print(json.dumps({name: canonical(getattr(settings, name)) for name in dir(settings) if name.isupper()}))
"""

SIGN_A_JWT = """
import django
from django.conf import settings
django.setup()
from rest_framework_simplejwt.tokens import AccessToken
token = AccessToken()
token["sub"] = "someone"
print(settings.SIMPLE_JWT["SIGNING_KEY"] == settings.SECRET_KEY, AccessToken(str(token))["sub"])
"""


def env_example() -> dict[str, str]:
    """The assignments of .env.example, as `cp .env.example .env` would give them to the service."""
    text = (PROJECT_ROOT / ".env.example").read_text()
    return dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", text, re.MULTILINE))


def run_manage(
    arguments: list[str], environment: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_empty_variable_means_its_default(tmp_path: Path) -> None:
    """Every variable .env.example lists, set but empty, configures exactly what leaving it unset does."""
    required = production_environment(tmp_path)
    names = set(env_example()) - set(required)

    unset = load_all_settings(required, tmp_path)
    empty = load_all_settings({**required, **dict.fromkeys(names, "")}, tmp_path)

    assert len(names) > 60
    assert {name: value for name, value in empty.items() if unset.get(name) != value} == {}


def load_all_settings(environment: dict[str, str], tmp_path: Path) -> dict[str, str]:
    completed = run_python(DUMP_ALL_SETTINGS, environment, tmp_path)
    assert completed.returncode == 0, completed.stderr
    loaded: dict[str, str] = json.loads(completed.stdout.strip().splitlines()[-1])
    return loaded


def test_the_copied_example_file_refuses_to_start_until_its_keys_are_set(tmp_path: Path) -> None:
    completed = run_python(DUMP_SETTINGS, env_example(), tmp_path)

    assert completed.returncode != 0
    assert "Production mode (DJANGO_DEBUG=false) refuses to start: " in completed.stderr
    assert "DJANGO_SECRET_KEY is an example placeholder" in completed.stderr
    assert "OIDC_RSA_PRIVATE_KEY is an example placeholder" in completed.stderr
    assert "AUDIT_CHAIN_KEYS is empty" in completed.stderr


def test_the_copied_example_file_with_its_keys_set_runs_on_the_defaults(tmp_path: Path) -> None:
    """`cp .env.example .env`, then the keys it asks for: JWTs are signed, mail has a sender,
    data stays in the data folder (every other empty value took its default)."""
    environment = {
        **env_example(),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "OIDC_RSA_PRIVATE_KEY": new_rsa_key(),
        "AUDIT_CHAIN_KEYS": secrets.token_urlsafe(48),
    }

    loaded = load_all_settings(environment, tmp_path)
    signed = run_python(SIGN_A_JWT, environment, tmp_path)
    deploy_check = run_manage(["check", "--deploy", "--fail-level", "WARNING"], environment, tmp_path)

    assert (signed.returncode, signed.stdout.split()) == (0, ["True", "someone"]), signed.stderr
    assert loaded["DEFAULT_FROM_EMAIL"] == repr("Identity <no-reply@id.example.com>")
    assert loaded["MFA_TOTP_ISSUER"] == repr("id.example.com")
    assert loaded["DATA_DIR"] == repr(PROJECT_ROOT / "var")
    assert loaded["MEDIA_ROOT"] == repr(PROJECT_ROOT / "var" / "media")
    assert loaded["STATIC_ROOT"] == repr(PROJECT_ROOT / "var" / "static")
    assert loaded["DEBUG"] == "False"
    assert deploy_check.returncode == 0, deploy_check.stderr
    assert deploy_check.stdout.strip() == "System check identified no issues (0 silenced)."


def pem_private_key(*, rsa_bits: int | None) -> str:
    """A PEM private key: RSA of `rsa_bits`, or an elliptic-curve key when None."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = (
        ec.generate_private_key(ec.SECP256R1())
        if rsa_bits is None
        else rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


STRONG = secrets.token_urlsafe(40)


WEAK_KEYS = [
    (
        "DJANGO_SECRET_KEY",
        "change-me-" + secrets.token_urlsafe(48),
        "DJANGO_SECRET_KEY is an example placeholder",
    ),
    ("JWT_SIGNING_KEY", secrets.token_urlsafe(16), "JWT_SIGNING_KEY is shorter than 32 characters"),
    (
        "JWT_SIGNING_KEY",
        "your-jwt-signing-key-goes-here-0123456789",
        "JWT_SIGNING_KEY is an example placeholder",
    ),
    ("JWT_SIGNING_KEY", "a" * 40, "JWT_SIGNING_KEY is made of fewer than 5 distinct characters"),
    ("MFA_ENCRYPTION_KEYS", f"{STRONG}, ", "MFA_ENCRYPTION_KEYS value 2 is empty"),
    (
        "MFA_ENCRYPTION_KEYS",
        f"{STRONG},short-old-key",
        "MFA_ENCRYPTION_KEYS value 2 is shorter than 32 characters",
    ),
    (
        "AUDIT_CHAIN_KEYS",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "AUDIT_CHAIN_KEYS value 1 is an example placeholder",
    ),
    (
        "DJANGO_SECRET_KEY_FALLBACKS",
        "...",
        "DJANGO_SECRET_KEY_FALLBACKS value 1 is an example placeholder",
    ),
    (
        "OIDC_RSA_PRIVATE_KEY",
        "-----BEGIN PRIVATE KEY-----\\nnot a key\\n-----END PRIVATE KEY-----",
        "OIDC_RSA_PRIVATE_KEY is not a PEM private key without a password",
    ),
    (
        "OIDC_RSA_PRIVATE_KEY",
        pem_private_key(rsa_bits=1024),
        "OIDC_RSA_PRIVATE_KEY is an RSA key shorter than 2048 bits",
    ),
    ("OIDC_RSA_PRIVATE_KEY", pem_private_key(rsa_bits=None), "OIDC_RSA_PRIVATE_KEY is not an RSA key"),
    ("OIDC_RSA_PRIVATE_KEY", "", "OIDC_RSA_PRIVATE_KEY is empty"),
    ("AUDIT_CHAIN_KEYS", " , ", "AUDIT_CHAIN_KEYS is empty"),
]


@pytest.mark.parametrize(
    ("variable", "value", "problem"), WEAK_KEYS, ids=[problem for _, _, problem in WEAK_KEYS]
)
def test_production_refuses_an_empty_short_or_example_key(
    tmp_path: Path, variable: str, value: str, problem: str
) -> None:
    environment = production_environment(tmp_path, **{variable: value})

    started = run_python(DUMP_SETTINGS, environment, tmp_path)
    deploy_check = run_manage(["check", "--deploy"], environment, tmp_path)

    for completed in (started, deploy_check):
        assert completed.returncode != 0
        assert f"refuses to start: {problem}." in completed.stderr
        if len(value) >= 8:  # a key is never echoed
            assert value not in completed.stderr


def test_check_deploy_fails_on_a_weak_key_in_debug_mode_too(tmp_path: Path) -> None:
    """Production mode refuses such keys before any check runs; with DJANGO_DEBUG still on,
    the deploy check is where they show."""
    value = "short-jwt-key"

    completed = run_manage(
        ["check", "--deploy"],
        {"DATA_DIR": str(tmp_path / "data"), "DJANGO_DEBUG": "true", "JWT_SIGNING_KEY": value},
        tmp_path,
    )

    assert completed.returncode != 0
    assert "(config.E001) JWT_SIGNING_KEY is shorter than 32 characters." in completed.stderr
    assert value not in completed.stderr


def test_gunicorn_takes_its_defaults_for_empty_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    for name in (
        "HOST",
        "PORT",
        "WEB_CONCURRENCY",
        "GUNICORN_THREADS",
        "GUNICORN_TIMEOUT",
        "GUNICORN_WORKER_CLASS",
    ):
        monkeypatch.setenv(name, "")

    loaded = runpy.run_path(str(PROJECT_ROOT / "config" / "gunicorn.conf.py"))

    assert (
        loaded["bind"],
        loaded["workers"],
        loaded["threads"],
        loaded["timeout"],
        loaded["worker_class"],
    ) == (
        "127.0.0.1:8000",
        2,
        4,
        30,
        "gthread",
    )


def test_the_image_build_collects_static_files_with_stand_in_keys(tmp_path: Path) -> None:
    """The Dockerfile runs collectstatic in production mode with stand-in keys (nothing is signed):
    the one command the key rules let through. Anything else is refused with them."""
    environment = {
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "build-only-not-secret-collectstatic-0000000000000000000000",
        "OIDC_RSA_PRIVATE_KEY": "build-only-placeholder-not-a-key",
        "DATA_DIR": str(tmp_path / "build"),
    }

    collected = run_manage(["collectstatic", "--noinput"], environment, tmp_path)
    checked = run_manage(["check"], environment, tmp_path)

    assert collected.returncode == 0, collected.stderr
    assert (tmp_path / "build" / "static" / "staticfiles.json").is_file()
    assert checked.returncode != 0
    assert "refuses to start: OIDC_RSA_PRIVATE_KEY is an example placeholder" in checked.stderr


def test_a_random_key_is_never_taken_for_an_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated keys are random text: a marker of the examples may not match one by chance (the
    base64 body of one PEM key in a few hundred held "xxxx" in some letter case)."""
    from config import key_material

    assert key_material.key_problem("aB3dE5gH7jK9mN1pQ3sT5vW7yZ9-XxXx_b2D4f6H8") is None
    # Every PKCS #8 RSA key's body starts with "MII": were bodies scanned, this would refuse it.
    monkeypatch.setattr(key_material, "PLACEHOLDER_MARKERS", (*key_material.PLACEHOLDER_MARKERS, "mii"))
    assert key_material.rsa_key_problem(new_rsa_key()) is None
    assert key_material.rsa_key_problem("change-me") == "an example placeholder"
    assert key_material.rsa_key_problem("") == "empty"
    assert key_material.rsa_key_problem("not-a-pem-but-long-enough-to-be-a-key-1234") == (
        "not a PEM private key without a password"
    )
