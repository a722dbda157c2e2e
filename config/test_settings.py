"""Test-only overrides on top of the real settings.

Tests run in production mode (DEBUG false) against whatever DATABASE_URL/REDIS_URL say, so the
settings module itself needs a strong secret key and a signing key; both are made per process.
"""

import os
import secrets

from config.key_material import new_rsa_key

os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(64))
os.environ.setdefault("OIDC_RSA_PRIVATE_KEY", new_rsa_key())
os.environ.setdefault("AUDIT_CHAIN_KEYS", secrets.token_urlsafe(48))
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("LOG_FORMAT", "text")

from config.settings import *  # noqa: F403

# Fast hashing keeps a suite full of sign-ins quick; one test covers the Argon2 configuration.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]  # noqa: F405
STATIC_ROOT = None  # static files come from the finders in tests
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
WHITENOISE_USE_FINDERS = True

if CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache":  # noqa: F405
    # Tests only ever delete their own keys, even on a shared Redis.
    CACHES["default"]["KEY_PREFIX"] = f"test-{os.getpid()}"  # noqa: F405
else:
    # Without REDIS_URL (a local run) the locmem cache is per process; CI always sets REDIS_URL.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]
