# The two commands of the README:  make run  (serve the embedded default)  and  make test.
# Both create .venv with the pinned dependencies (requirements.lock) when it is missing or stale.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# The public origin (and OAuth issuer) follows HOST and PORT unless set.
SITE_URL ?= http://$(HOST):$(PORT)
TEST_ENV := DJANGO_SETTINGS_MODULE=config.test_settings

.PHONY: run test test-faults lint typecheck migrations-check schema-check pytest venv lock worker beat bench clean

$(BIN)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

venv: $(BIN)/.installed

run: export SITE_URL := $(SITE_URL)
run: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py demo_setup
	HOST=$(HOST) PORT=$(PORT) $(BIN)/gunicorn -c config/gunicorn.conf.py config.wsgi:application

test: lint typecheck migrations-check schema-check pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy .

migrations-check: venv
	$(TEST_ENV) $(BIN)/python manage.py makemigrations --check --dry-run

schema-check: venv
	$(TEST_ENV) $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

pytest: venv
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

# Redis, PostgreSQL and workers stopped, hung and restarted under load (config/tests/faults.py):
# each test starts its own servers. A few minutes; CI runs it after `make test`.
test-faults: venv
	$(BIN)/pytest -m faults $(PYTEST_ARGS)

worker: venv
	$(BIN)/celery -A config worker --loglevel=INFO

beat: venv
	$(BIN)/celery -A config beat --loglevel=INFO --schedule $(or $(DATA_DIR),var)/celerybeat-schedule

# Re-resolve the lock file from pyproject.toml in a throw-away environment.
lock:
	rm -rf /tmp/identity-lock-venv && $(PYTHON) -m venv /tmp/identity-lock-venv
	/tmp/identity-lock-venv/bin/pip install --quiet --disable-pip-version-check ".[dev]"
	/tmp/identity-lock-venv/bin/pip freeze --exclude identity-service > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
