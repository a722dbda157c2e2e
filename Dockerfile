# syntax=docker/dockerfile:1
#
# Image for every process of the identity service: web (gunicorn), Celery worker,
# Celery beat and the one-shot migrate job. Only the command differs.
# See docs/operations.md.

ARG PYTHON_IMAGE=python:3.11-slim


# --- builder: runtime dependencies (pinned by requirements.lock) in /opt/venv ---------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /src

# Dependencies first, in their own layer, so that a code change does not reinstall them.
# requirements.lock is used as a constraints file: it fixes every version but installs
# nothing by itself, so the dev tools it also lists stay out of the image. Lines that
# would point at this project's own checkout (-e, "name @ file:") are no constraints.
COPY pyproject.toml requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/pip \
    { grep -Ev '^[[:space:]]*(-e|--editable)[[:space:]]|@[[:space:]]*file:' requirements.lock || [ $? -eq 1 ]; } \
        > /tmp/constraints.txt \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/runtime-requirements.txt \
    && pip install -c /tmp/constraints.txt -r /tmp/runtime-requirements.txt

# Then the project itself (its metadata, e.g. the version, is readable at run time).
# Its dependencies are already installed above with the pinned versions.
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps .


# --- runtime: the venv and the source, nothing else ------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# PYTHONPATH=/app: the code runs from the source tree in /app (templates/ and manage.py
# live there), never from the copy pip put in site-packages.
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=config.settings \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/app/var \
    MEDIA_ROOT=/app/var/media \
    DJANGO_STATIC_ROOT=/app/staticfiles

# An unprivileged user with a home (gunicorn's control socket is off unless GUNICORN_CONTROL_SOCKET names one).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Source stays owned by root: the app user can read it but not change it.
COPY . .

# Collect static files into the image (served by WhiteNoise). Production mode
# (DJANGO_DEBUG=false) selects the compressed, hashed storage whose manifest
# (staticfiles.json) production needs; with DJANGO_DEBUG=true no manifest would be written.
# Production mode insists on a secret key and an OIDC key: both are placeholders that exist
# only for this command (nothing is signed). DATA_DIR is a throw-away folder so that
# nothing written there ends up in an image layer.
RUN DJANGO_DEBUG=false \
    DJANGO_SECRET_KEY=build-only-not-secret-collectstatic-0000000000000000000000 \
    OIDC_RSA_PRIVATE_KEY=build-only-placeholder-not-a-key \
    DATA_DIR=/tmp/build-data \
    python manage.py collectstatic --noinput \
    && rm -rf /tmp/build-data \
    && mkdir -p /app/var/media \
    && chown -R app:app /app/var

USER app:app

EXPOSE 8000

# Liveness only: the process answers. Readiness (database, cache, broker) is checked by
# the orchestrator or load balancer on /health/ready; see compose.yaml.
# Health probes are answered before Host validation, so 127.0.0.1 is fine here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/health/live', timeout=4)"]

CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi:application"]
