"""Settings for the identity service: one module, every value from the environment.

With no variables set the *embedded default* runs: SQLite and media in a local data folder,
locmem cache, eager Celery, console e-mail, and keys generated once into the data folder.
Variable names are listed, with comments, in `.env.example`.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from django.core.exceptions import ImproperlyConfigured

from config.environment import Environment
from config.key_material import configured_key_problems, load_or_create_rsa_key, load_or_create_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

# An empty variable (`NAME=`, as `cp .env.example .env` leaves many) means its default.
env = Environment()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "var"))).resolve()

# The embedded default is the no-configuration first run: no database URL given.
EMBEDDED_DEFAULT = not env.str("DATABASE_URL", default="")

# --------------------------------------------------------------------------------------------
# Django
# --------------------------------------------------------------------------------------------

DEBUG = env.bool("DJANGO_DEBUG", default=EMBEDDED_DEFAULT)

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = load_or_create_secret_key(DATA_DIR / "secret_key")
# Production mode checks it, with every other key, at the end of this module.
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])

SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
_site_host = urlparse(SITE_URL).hostname or "localhost"

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    default=sorted({_site_host, "localhost", "127.0.0.1", "[::1]"}) if DEBUG else [_site_host],
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[SITE_URL])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    # allauth's pages of signed-in sessions and security keys load its template filters.
    "django.contrib.humanize",
    # third-party
    "rest_framework",
    "rest_framework_simplejwt",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "drf_standardized_errors",
    "django_filters",
    "corsheaders",
    "csp",
    "django_ratelimit",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.mfa",
    "allauth.headless",
    "allauth.usersessions",
    "oauth2_provider",
    # our apps
    "config",  # its system checks (config/checks.py)
    "accounts",
    "oauth_provider",
    "files",
    "audit",
    "featureflags",
]

MIDDLEWARE = [
    "config.middleware.ClientIPMiddleware",
    "config.middleware.RequestIDMiddleware",
    "config.middleware.JsonErrorBodyMiddleware",
    "config.middleware.HeadlessErrorShapeMiddleware",
    "config.middleware.OAuthErrorShapeMiddleware",
    "config.middleware.RequestBodyGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.HealthCheckMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "config.sign_in_protection.SignInProtectionMiddleware",
    "oauth_provider.rate_limits.OAuthRateLimitMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.MFAEnrolmentMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
    "django_ratelimit.middleware.RatelimitMiddleware",
]

ROOT_URLCONF = "config.urls"
# Request bodies nesting arrays or objects deeper than this are refused (400 json_too_deep) before
# any JSON parser, which recurses once per level, reads them (config.middleware.RequestBodyGuardMiddleware).
REQUEST_JSON_MAX_DEPTH = 64
CSRF_FAILURE_VIEW = "config.views.csrf_failure"
WSGI_APPLICATION = "config.wsgi.application"
SITE_ID = 1

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.mfa_enrolment_resume",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions and WAL let several gunicorn threads write without "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # libpq waits for ever for a server that accepts the connection but never answers (hung, or
    # a host gone behind a half-open route): new connections give up after this many seconds, and
    # the request is a 503 (config/outages.py) instead of a thread held until the server returns.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int(
        "DATABASE_CONNECT_TIMEOUT", default=3
    )
    if not env.bool("DATABASE_JIT", default=False):
        # PostgreSQL's JIT spends 100-200 ms compiling the plan of a deep page of short OLTP queries
        # (bench/users_list.py). Behind a pooler that refuses startup options, set
        # DATABASE_JIT=true and run `ALTER DATABASE ... SET jit = off` instead.
        DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# Seconds any call to Redis (cache, broker, task results) may take to connect, and to answer: a hung
# Redis costs a request at most this, and only until the circuit opens (config/cache.py).
REDIS_TIMEOUT = env.float("REDIS_TIMEOUT", default=0.5)
# Seconds the cache skips a failing Redis (after 3 failed calls in a row) before one call tries it
# again: while it is skipped a request pays nothing for it, and it is used again this soon after
# it answers.
REDIS_CIRCUIT_OPEN_SECONDS = env.float("REDIS_CIRCUIT_OPEN_SECONDS", default=2.0)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="idp"),
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": REDIS_TIMEOUT,
                "SOCKET_TIMEOUT": REDIS_TIMEOUT,
                # `add` answers like an empty cache during an outage; every command goes through
                # a circuit breaker (config/cache.py, issue 13).
                "CLIENT_CLASS": "config.cache.CacheClient",
                "REDIS_CLIENT_CLASS": "config.cache.CircuitBreakerRedis",
                "REDIS_CLIENT_KWARGS": {"circuit_open_seconds": REDIS_CIRCUIT_OPEN_SECONDS},
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# A Redis outage degrades to "no cache" instead of a 500 in every caller, allauth's rate limits
# included: revocation and lockout fall back to the database, per-IP limits open
# (docs/decisions/0005 and 0006). Not a log line per failed call: config/cache.py reports them to
# the outage log, one "cache unavailable" line per interval. Readiness still reports the outage.
DJANGO_REDIS_IGNORE_EXCEPTIONS = True
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = False

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "rules.permissions.ObjectPermissionBackend",  # object-level policies: accounts/policies.py
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    # OAuth client secrets only (OAUTH2_PROVIDER["CLIENT_SECRET_HASHER"]); last, so no password uses it.
    "oauth_provider.hashers.ClientSecretHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("username", "display_name", "email")},
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT: Path | None = Path(env.str("DJANGO_STATIC_ROOT", default=str(DATA_DIR / "static")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

_email = env.email_url("EMAIL_URL", default="consolemail://")
if "EMAIL_FILE_PATH" in _email:
    # filemail:///var/mail/outbox names the absolute folder /var/mail/outbox (django-environ drops the /).
    _email["EMAIL_FILE_PATH"] = "/" + _email["EMAIL_FILE_PATH"].lstrip("/")
vars().update(_email)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default=f"Identity <no-reply@{_site_host}>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Seconds before a stalled SMTP connection fails (the send is then retried by the Celery task).
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)

# --- security headers -----------------------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = 0 if DEBUG else env.int("DJANGO_SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers probe over plain HTTP; health answers must not be redirected.
SECURE_REDIRECT_EXEMPT = [r"^health/"]

# X-Forwarded-* are believed only from the proxies listed here (see config.middleware).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --------------------------------------------------------------------------------------------
# Third-party
# --------------------------------------------------------------------------------------------

# --- django-cors-headers --------------------------------------------------------------------
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/(api|o|_allauth|\.well-known)/.*$"
CORS_EXPOSE_HEADERS = ["X-Request-ID", "Retry-After"]

# --- django-csp: a policy for the HTML pages (admin, allauth, consent, API viewers) ------------
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Django REST framework ----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First only for its 401 challenge (DRF takes WWW-Authenticate from the first class).
        "config.api.authentication.ResourceMetadataChallenge",
        "accounts.authentication.DeviceSessionJWTAuthentication",
        "accounts.authentication.MFARequiredOAuth2Authentication",
        "config.api.authentication.RejectUnknownBearerToken",
        "accounts.authentication.MFARequiredSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "config.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": [
        "config.api.throttling.AnonymousRateThrottle",
        "config.api.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="120/minute"),
        "user": env.str("API_THROTTLE_USER", default="1200/minute"),
        "invitation_emails": env.str("API_THROTTLE_INVITATION_EMAILS", default="50/hour"),
    },
    # Client IPs come from REMOTE_ADDR, which ClientIPMiddleware has already resolved.
    "NUM_PROXIES": 0,
    "EXCEPTION_HANDLER": "drf_standardized_errors.handler.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_standardized_errors.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
DRF_STANDARDIZED_ERRORS = {
    # API clients never see Django's HTML debug page, not even in the embedded default.
    "ENABLE_IN_DEBUG_FOR_UNHANDLED_EXCEPTIONS": True,
    "EXCEPTION_HANDLER_CLASS": "config.api.errors.ApiExceptionHandler",
}

# --- drf-spectacular ----------------------------------------------------------------------
SPECTACULAR_SETTINGS = {
    "TITLE": "Identity service API",
    "DESCRIPTION": (
        "Users, signed-in devices, organizations, files, audit trail and feature flags. "
        "Authenticate with a first-party JWT or an OAuth 2.0 access token issued by this server.\n\n"
        "Sign-up, sign-in, e-mail verification, password reset and MFA are the django-allauth "
        "headless API under `/_allauth/{app,browser}/v1/`, specified separately at "
        "[/_allauth/openapi.yaml](/_allauth/openapi.yaml) ([JSON](/_allauth/openapi.json)). "
        "API clients sign in there (client `app`), receive `access_token` and `refresh_token` in "
        "`meta`, call this API with `Authorization: Bearer <access_token>`, and rotate the pair at "
        "`POST /api/v1/auth/token/refresh/`."
    ),
    "EXTERNAL_DOCS": {
        "description": "Account flows (django-allauth headless API)",
        "url": "/_allauth/openapi.yaml",
    },
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # The ways to authenticate; RejectUnknownBearerToken only refuses, it is not one of them.
    "AUTHENTICATION_WHITELIST": [
        "accounts.authentication.DeviceSessionJWTAuthentication",
        "accounts.authentication.MFARequiredOAuth2Authentication",
        "accounts.authentication.MFARequiredSessionAuthentication",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ValidationErrorEnum": "drf_standardized_errors.openapi_serializers.ValidationErrorEnum.choices",
        "ClientErrorEnum": "drf_standardized_errors.openapi_serializers.ClientErrorEnum.choices",
        "ServerErrorEnum": "drf_standardized_errors.openapi_serializers.ServerErrorEnum.choices",
        "ErrorCode401Enum": "drf_standardized_errors.openapi_serializers.ErrorCode401Enum.choices",
        "ErrorCode403Enum": "drf_standardized_errors.openapi_serializers.ErrorCode403Enum.choices",
        "ErrorCode404Enum": "drf_standardized_errors.openapi_serializers.ErrorCode404Enum.choices",
        "ErrorCode405Enum": "drf_standardized_errors.openapi_serializers.ErrorCode405Enum.choices",
        "ErrorCode406Enum": "drf_standardized_errors.openapi_serializers.ErrorCode406Enum.choices",
        "ErrorCode415Enum": "drf_standardized_errors.openapi_serializers.ErrorCode415Enum.choices",
        "ErrorCode429Enum": "drf_standardized_errors.openapi_serializers.ErrorCode429Enum.choices",
        "ErrorCode500Enum": "drf_standardized_errors.openapi_serializers.ErrorCode500Enum.choices",
        # An invitation's `state`, by a name no other resource's `state` can clash with.
        "InvitationStateEnum": "accounts.selectors.organizations.InvitationState",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_standardized_errors.openapi_hooks.postprocess_schema_enums",
    ],
}

# --- simplejwt (pairs are bound to device sessions by the accounts app) ----------------------
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env.int("JWT_ACCESS_TOKEN_LIFETIME_SECONDS", default=300)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_TOKEN_LIFETIME_DAYS", default=14)),
    # Rotation and reuse detection are done by accounts' device sessions, not simplejwt's blacklist.
    "ROTATE_REFRESH_TOKENS": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    # A key of its own, so rotating DJANGO_SECRET_KEY does not sign every API client out.
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default=SECRET_KEY),
    "LEEWAY": 5,
    "AUDIENCE": None,
    "ISSUER": SITE_URL,
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "sub",
}

# --- django-allauth -------------------------------------------------------------------------
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email", "username"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env.str("ACCOUNT_EMAIL_VERIFICATION", default="mandatory")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_USERNAME_MIN_LENGTH = 3
# A new password keeps the device it was changed on and ends every other one (accounts.receivers).
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_DEFAULT_HTTP_PROTOCOL = urlparse(SITE_URL).scheme or "https"
ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED = env.bool("ACCOUNT_EMAIL_VERIFICATION_BY_CODE", default=False)
ACCOUNT_PASSWORD_RESET_BY_CODE_ENABLED = env.bool("ACCOUNT_PASSWORD_RESET_BY_CODE", default=False)
ACCOUNT_CHANGE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_EMAIL_NOTIFICATIONS = True
# Sensitive actions (password, e-mail, second factors, account deletion, role grants, lock-down,
# MFA reset) need a re-authentication this recent: password or second factor, asked again
# (docs/decisions/0012-mfa-and-step-up.md).
ACCOUNT_REAUTHENTICATION_REQUIRED = True
ACCOUNT_REAUTHENTICATION_TIMEOUT = env.int("ACCOUNTS_STEP_UP_SECONDS", default=600)
# A wrong current password on a password change counts toward the lockout (accounts.lockout); a
# sign-up with a taken address costs what a new one does (no timing enumeration).
ACCOUNT_FORMS = {
    "change_password": "accounts.forms.account.ChangePasswordForm",
    "signup": "accounts.forms.account.SignupForm",
}
HEADLESS_CLIENTS = ("app", "browser")
HEADLESS_TOKEN_STRATEGY = "accounts.adapter.DeviceTokenStrategy"  # noqa: S105 - a class path
HEADLESS_SERVE_SPECIFICATION = True
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_ADAPTER = "accounts.adapter.MFAAdapter"  # encrypts TOTP keys and recovery seeds at rest
# Keys the stored MFA secrets are encrypted under (the first encrypts); default: the secret key
# and its fallbacks (accounts/encryption.py).
MFA_ENCRYPTION_KEYS = env.list("MFA_ENCRYPTION_KEYS", default=[])
MFA_RECOVERY_CODES_SHOW_ONCE = True
MFA_PASSKEY_LOGIN_ENABLED = True
# Passkeys need a secure origin; the embedded default serves plain http on loopback.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = DEBUG
MFA_TOTP_ISSUER = env.str("MFA_TOTP_ISSUER", default=_site_host)
MFA_TOTP_TOLERANCE = 1  # the code of the previous and next 30-second step is accepted too
# Codes are checked by our forms: strict replay protection, e-mail fallback codes, lockout.
MFA_FORMS = {
    "authenticate": "accounts.forms.mfa.MFAAuthenticateForm",
    "reauthenticate": "accounts.forms.mfa.MFAReauthenticateForm",
    "authenticate_webauthn": "accounts.forms.mfa.MFAAuthenticateWebAuthnForm",
    "reauthenticate_webauthn": "accounts.forms.mfa.MFAReauthenticateWebAuthnForm",
    "login_webauthn": "accounts.forms.mfa.MFALoginWebAuthnForm",
    "activate_totp": "accounts.forms.mfa.MFAActivateTOTPForm",
}
USERSESSIONS_TRACK_ACTIVITY = True

# --- django-oauth-toolkit (OAuth 2.0 / OpenID Connect server) ---------------------------------
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth_provider.Application"
OIDC_RSA_PRIVATE_KEY = env.str("OIDC_RSA_PRIVATE_KEY", default="").replace("\\n", "\n")
if not OIDC_RSA_PRIVATE_KEY and DEBUG:
    # Production mode requires it (every web node must sign with the same key): checked at the end.
    OIDC_RSA_PRIVATE_KEY = load_or_create_rsa_key(DATA_DIR / "oidc_rsa_private_key.pem")
OAUTH2_PROVIDER = {
    "OAUTH2_VALIDATOR_CLASS": "oauth_provider.validators.OAuth2Validator",
    # No implicit, hybrid or password grant routed; PKCE S256 only (docs/decisions/0015).
    "OIDC_SERVER_CLASS": "oauth_provider.server.Server",
    # Client secrets are random and long: one salted HMAC, not a password KDF (oauth_provider/hashers.py).
    "CLIENT_SECRET_HASHER": "client_secret_sha256",
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": OIDC_RSA_PRIVATE_KEY,
    "OIDC_ISS_ENDPOINT": SITE_URL,
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "PKCE_REQUIRED": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 600,
    "ID_TOKEN_EXPIRE_SECONDS": 300,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "REFRESH_TOKEN_EXPIRE_SECONDS": 30 * 24 * 3600,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    # A rotated refresh token presented again revokes its family at once, even in a race.
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    # The device grant (RFC 8628): the user's page, and polls at least this many seconds apart.
    "OAUTH_DEVICE_VERIFICATION_URI": f"{SITE_URL}/o/device/",
    "OAUTH_DEVICE_VERIFICATION_URI_COMPLETE": f"{SITE_URL}/o/device/?user_code={{user_code}}",
    "DEVICE_FLOW_INTERVAL": 5,
    # The validator reads the device code's user and scopes itself (validate_device_code).
    "OAUTH_PRE_TOKEN_VALIDATION": [],
    # Rows per DELETE of the hourly cleanup (oauth_provider.tasks.tokens_clear_expired).
    "CLEAR_EXPIRED_TOKENS_BATCH_SIZE": env.int("OAUTH_CLEAR_EXPIRED_BATCH_SIZE", default=1000),
    "ALLOW_URI_WILDCARDS": False,
    # Only where a redirect has no client to ask: each client's own schemes (its loopback http,
    # RFC 8252 §7.3, or its private-use scheme) come from its registered URIs, which
    # oauth_provider/redirect_uris.py admitted (Application.get_allowed_schemes).
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https", "http"] if DEBUG else ["https"],
    "SCOPES": {
        "openid": "Sign you in with your account",
        "profile": "See your name and username",
        "email": "See your e-mail address",
        "offline_access": "Stay signed in when you are not using the application",
        "users:read": "Read user profiles",
        "users:write": "Change your profile",
        "files:read": "Read your files",
        "files:write": "Upload and delete your files",
        "organizations:read": "See your organizations and their members",
        "organizations:write": "Manage your organizations, their members and invitations",
        # A client permission, never put in a token: a resource server's right to introspect
        # other clients' tokens (RFC 7662; docs/decisions/0015).
        "introspection": "Check the access tokens presented to your service",
    },
    "DEFAULT_SCOPES": ["openid"],
    # Discovery (oauth_provider/views/metadata.py): only what the server accepts. Public clients
    # authenticate with PKCE alone ("none").
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:device_code",
    ],
    "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_basic", "client_secret_post", "none"],
    "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_basic", "client_secret_post", "none"],
    # How long verifiers may cache the JWKS; a new signing key waits this long before it signs.
    "OIDC_JWKS_MAX_AGE_SECONDS": env.int("OIDC_JWKS_MAX_AGE_SECONDS", default=3600),
    # RFC 9728: the API is the resource at the site root (docs/decisions/0013).
    "OAUTH2_PROTECTED_RESOURCE_IDENTIFIER": SITE_URL,
    "OAUTH2_PROTECTED_RESOURCE_NAME": "Identity service API",
    "OAUTH2_PROTECTED_RESOURCE_DOCUMENTATION": f"{SITE_URL}/api/v1/docs/",
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    # Dynamic client registration (RFC 7591/7592) at /o/register/, behind an initial access token
    # or a staff session (oauth_provider/views/registration.py, docs/decisions/0016).
    "DCR_ENABLED": True,
    "DCR_REGISTRATION_PERMISSION_CLASSES": (
        "oauth_provider.views.registration.InitialAccessTokenOrStaffPermission",
    ),
    "DCR_ROTATE_REGISTRATION_TOKEN_ON_UPDATE": True,
}

# --- django-ratelimit -------------------------------------------------------------------------
RATELIMIT_USE_CACHE = "default"
RATELIMIT_VIEW = "config.views.rate_limited"
if not REDIS_URL and DEBUG:
    # The embedded default has no shared cache: counters are per process, which is fine for a
    # single-node first run (docs/decisions/0003-embedded-default-and-production-mode.md).
    # Production needs Redis.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]

# --- brute-force protection (config.sign_in_protection, accounts.lockout; docs/decisions/0006) -
# Per-IP limits on POSTs to each flow (django-ratelimit syntax: N/s|m|h|d), keyed on REMOTE_ADDR.
RATELIMIT_SIGNIN = env.str("RATELIMIT_SIGNIN", default="10/m")
RATELIMIT_SIGNUP = env.str("RATELIMIT_SIGNUP", default="5/m")
RATELIMIT_PASSWORD_RESET = env.str("RATELIMIT_PASSWORD_RESET", default="5/m")
RATELIMIT_VERIFICATION_RESEND = env.str("RATELIMIT_VERIFICATION_RESEND", default="5/m")
RATELIMIT_TOKEN_REFRESH = env.str("RATELIMIT_TOKEN_REFRESH", default="30/m")
# A cache that answers nothing lets requests through rather than refusing them all.
RATELIMIT_FAIL_OPEN = True
# Consecutive failed sign-ins before an account is locked (1, 5, 15, 30, then 60 minutes).
ACCOUNTS_LOCKOUT_THRESHOLD = env.int("ACCOUNTS_LOCKOUT_THRESHOLD", default=5)
# allauth's own sign-in limits are replaced by the ones above; they would also answer 500 while
# the cache is down. Its other limits (sign-up, reset, verification e-mails, ...) stay.
ACCOUNT_RATE_LIMITS = {"login": None, "login_failed": None}
# --- end of brute-force protection ---------------------------------------------------------------

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or None)
# Nothing in the service reads a task's result: unless CELERY_RESULT_BACKEND is set on purpose
# (tests wait for results), none is kept, and publishing a task never touches the result store.
# Keeping them made every publish subscribe to its result, which retried 20 x 1 s inside the
# request while Redis was down (issue 13).
CELERY_TASK_IGNORE_RESULT = env.bool(
    "CELERY_TASK_IGNORE_RESULT", default=not env.str("CELERY_RESULT_BACKEND", default="")
)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=CELERY_BROKER_URL == "memory://")
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Every broker call connects and answers within REDIS_TIMEOUT; a publish tries twice (the second
# replaces a connection a Redis restart closed), so a hung or stopped broker fails it within about
# a second instead of stalling the caller (issue 13; what the caller then does is its own).
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_TIMEOUT
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redelivery of unacknowledged (acks_late) tasks after a lost worker; longer than any task.
    "visibility_timeout": 3600,
    "socket_connect_timeout": REDIS_TIMEOUT,
    "socket_timeout": REDIS_TIMEOUT,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# Results, where they are kept: the same bounds, and a few quick retries instead of 20 x 1 s.
CELERY_REDIS_SOCKET_TIMEOUT = REDIS_TIMEOUT
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = REDIS_TIMEOUT
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "retry_policy": {"max_retries": 3, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = TIME_ZONE

# --------------------------------------------------------------------------------------------
# Logging: JSON lines in production, readable text in development; request IDs on every line,
# secrets redacted by a filter on every handler.
# --------------------------------------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "config.logs.RequestIDFilter"},
        "redact": {"()": "config.logs.RedactSecretsFilter"},
        "outages": {"()": "config.logs.OutageFilter"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["outages", "request_id", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django.security.DisallowedHost": {"level": "ERROR"},
    },
}

# --------------------------------------------------------------------------------------------
# Our apps (reusable app settings live in <app>/app_settings.py and are read lazily)
# --------------------------------------------------------------------------------------------

# How long audit events are kept; a nightly job deletes older ones.
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=365)
# Keys of the audit chain's HMAC (docs/decisions/0007), comma-separated: the first MACs new events,
# the others verify older ones. Kept out of the database, so that nobody with only database access
# can rewrite the chain. Generated into DATA_DIR in the embedded default.
AUDIT_CHAIN_KEYS = [key.strip() for key in env.list("AUDIT_CHAIN_KEYS", default=[]) if key.strip()]
if not AUDIT_CHAIN_KEYS and DEBUG:
    AUDIT_CHAIN_KEYS = [load_or_create_secret_key(DATA_DIR / "audit_chain_key")]
# A file the anchor job also appends the chain's head to, every 5 minutes (empty: the log only).
AUDIT_ANCHOR_FILE = env.str("AUDIT_ANCHOR_FILE", default="")

# Days a device session (an app's signed-in JWT chain) is kept once revoked or expired; then a
# daily job deletes it (the audit trail keeps its sign-in and revocation).
ACCOUNTS_DEVICE_SESSION_RETENTION_DAYS = env.int("ACCOUNTS_DEVICE_SESSION_RETENTION_DAYS", default=90)
# Seconds the cache's word that a device session is active, or what a user's roles, flags and
# second factors are, is believed before the database is asked again: the longest a revocation,
# deactivation or role change whose cache invalidation was lost (Redis stopped, hung or restored
# from a snapshot) can go unnoticed. Costs one query per device session per period
# (docs/decisions/0005-device-sessions-and-jwt.md).
ACCOUNTS_AUTH_CACHE_SECONDS = env.int("ACCOUNTS_AUTH_CACHE_SECONDS", default=30)

# Days an account asking for deletion can be restored before a daily job erases it.
ACCOUNT_DELETION_GRACE_DAYS = env.int("ACCOUNT_DELETION_GRACE_DAYS", default=14)
# Hours a personal data export's download link works; a job then deletes the file.
DATA_EXPORT_LINK_HOURS = env.int("DATA_EXPORT_LINK_HOURS", default=24)
# Roles whose users must set up a second factor before anything else works, and whether the
# is_staff flag alone requires one too.
ACCOUNTS_MFA_REQUIRED_ROLES = env.list("ACCOUNTS_MFA_REQUIRED_ROLES", default=["admin", "moderator"])
ACCOUNTS_MFA_REQUIRED_FOR_STAFF = env.bool("ACCOUNTS_MFA_REQUIRED_FOR_STAFF", default=True)
# A 6-digit code e-mailed to the verified address as a fallback second factor (not for the roles
# above): its lifetime, and how many a user may be sent in a window.
ACCOUNTS_MFA_EMAIL_CODES = env.bool("ACCOUNTS_MFA_EMAIL_CODES", default=True)
ACCOUNTS_MFA_EMAIL_CODE_MINUTES = env.int("ACCOUNTS_MFA_EMAIL_CODE_MINUTES", default=10)
ACCOUNTS_MFA_EMAIL_CODES_PER_WINDOW = env.int("ACCOUNTS_MFA_EMAIL_CODES_PER_WINDOW", default=3)
ACCOUNTS_MFA_EMAIL_CODE_WINDOW_MINUTES = env.int("ACCOUNTS_MFA_EMAIL_CODE_WINDOW_MINUTES", default=15)
# Days an organization's e-mailed invitation link works; resending it starts a new period.
ORGANIZATION_INVITATION_DAYS = env.int("ORGANIZATION_INVITATION_DAYS", default=7)

# --- OAuth client registration ---
# Scopes a client that registers itself with an initial access token may have, unless the token
# names its own (docs/decisions/0016-oauth-client-registration-and-admin.md).
OAUTH_REGISTRATION_SCOPES = env.list(
    "OAUTH_REGISTRATION_SCOPES",
    default=["openid", "profile", "email", "offline_access", "users:read", "files:read"],
)
# Days an initial access token works unless its issuer says otherwise.
OAUTH_INITIAL_ACCESS_TOKEN_DAYS = env.int("OAUTH_INITIAL_ACCESS_TOKEN_DAYS", default=7)
# Whether http://localhost redirect URIs may be registered, beside the loopback IP literals
# (RFC 8252 §8.3 discourages them; many command-line and desktop clients use them).
OAUTH_REDIRECT_URI_ALLOW_LOCALHOST = env.bool("OAUTH_REDIRECT_URI_ALLOW_LOCALHOST", default=True)
# --- end of OAuth client registration ---

# --- OAuth tokens (docs/decisions/0015-oauth-tokens-and-grants.md) ---
# Days a refresh-token family lives from its first token, however often it is rotated (the
# toolkit's REFRESH_TOKEN_EXPIRE_SECONDS above only ends a family left unused that long).
OAUTH_REFRESH_TOKEN_MAX_AGE_DAYS = env.int("OAUTH_REFRESH_TOKEN_MAX_AGE_DAYS", default=90)
# Seconds a device grant's device code and user code can be used (RFC 8628 §3.2).
OAUTH_DEVICE_CODE_EXPIRE_SECONDS = env.int("OAUTH_DEVICE_CODE_EXPIRE_SECONDS", default=600)
# User codes a signed-in user may try on the device page (django-ratelimit syntax).
RATELIMIT_DEVICE_USER_CODE = env.str("RATELIMIT_DEVICE_USER_CODE", default="10/m")
# Rate limits of the endpoints clients call (oauth_provider.rate_limits; empty turns one off):
# per IP, and per client the request names (Basic credentials or client_id). Per client counts
# every user of a client together: raise it for a popular public client or a busy back end.
RATELIMIT_OAUTH_TOKEN = env.str("RATELIMIT_OAUTH_TOKEN", default="300/m")
RATELIMIT_OAUTH_TOKEN_PER_CLIENT = env.str("RATELIMIT_OAUTH_TOKEN_PER_CLIENT", default="600/m")
RATELIMIT_OAUTH_REVOKE = env.str("RATELIMIT_OAUTH_REVOKE", default="300/m")
RATELIMIT_OAUTH_REVOKE_PER_CLIENT = env.str("RATELIMIT_OAUTH_REVOKE_PER_CLIENT", default="600/m")
# A resource server may introspect on every API request it serves (RFC 7662 §4 allows caching).
RATELIMIT_OAUTH_INTROSPECT = env.str("RATELIMIT_OAUTH_INTROSPECT", default="1200/m")
RATELIMIT_OAUTH_INTROSPECT_PER_CLIENT = env.str("RATELIMIT_OAUTH_INTROSPECT_PER_CLIENT", default="2400/m")
# Each device authorization adds a live user code, and more live codes make guessing one easier.
RATELIMIT_OAUTH_DEVICE_AUTHORIZATION = env.str("RATELIMIT_OAUTH_DEVICE_AUTHORIZATION", default="60/m")
RATELIMIT_OAUTH_DEVICE_AUTHORIZATION_PER_CLIENT = env.str(
    "RATELIMIT_OAUTH_DEVICE_AUTHORIZATION_PER_CLIENT", default="600/m"
)
# Dynamic client registration and client configuration (RFC 7591/7592), per IP.
RATELIMIT_OAUTH_REGISTER = env.str("RATELIMIT_OAUTH_REGISTER", default="30/m")
# User codes typed on the device page from one IP, whoever is signed in.
RATELIMIT_DEVICE_USER_CODE_PER_IP = env.str("RATELIMIT_DEVICE_USER_CODE_PER_IP", default="30/m")
# --- end of OAuth tokens ---

# --- OAuth signing keys ---
# Seconds a web process may keep using its copy of the signing keys table: how long a rotation
# (`manage.py oidc_keys`) takes to reach every worker. The JWKS lifetime is OIDC_JWKS_MAX_AGE_SECONDS.
OAUTH_SIGNING_KEYS_REFRESH_SECONDS = env.int("OAUTH_SIGNING_KEYS_REFRESH_SECONDS", default=30)

# --------------------------------------------------------------------------------------------
# Production refusals (last: every key above is read by now). The same rules fail
# `manage.py check --deploy` in any mode (config.checks, config.E001).
# --------------------------------------------------------------------------------------------

# collectstatic signs nothing: the image build runs it in production mode with stand-in keys.
if not DEBUG and sys.argv[1:2] != ["collectstatic"]:
    _key_problems = configured_key_problems(
        secret_key=SECRET_KEY,
        secret_key_fallbacks=SECRET_KEY_FALLBACKS,
        jwt_signing_key=SIMPLE_JWT["SIGNING_KEY"],
        oidc_rsa_private_key=OIDC_RSA_PRIVATE_KEY,
        mfa_encryption_keys=MFA_ENCRYPTION_KEYS,
        audit_chain_keys=globals().get("AUDIT_CHAIN_KEYS", []),
    )
    if _key_problems:
        raise ImproperlyConfigured(
            "Production mode (DJANGO_DEBUG=false) refuses to start: "
            + "; ".join(_key_problems)
            + ". Set each to a new random value, e.g. "
            '`python -c "import secrets; print(secrets.token_urlsafe(64))"`, and OIDC_RSA_PRIVATE_KEY '
            "to a PEM RSA key of at least 2048 bits (docs/operations.md)."
        )
