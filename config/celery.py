"""The Celery application: Redis broker, tasks autodiscovered from each app's tasks.py.

Request IDs travel with tasks: a task enqueued during a request logs with that request's ID.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from celery import Celery, signals
from celery.schedules import crontab

from config.context import request_id_var

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic jobs, each with a one-line why (STYLE 16). Apps add theirs here.
app.conf.beat_schedule = {
    # Keep the audit trail within AUDIT_RETENTION_DAYS; batches keep each lock short.
    "audit-events-prune": {"task": "audit.events_prune", "schedule": crontab(minute=17, hour=3)},
    # The audit chain's head in the log, outside the database: a cut tail shows against it.
    "audit-chain-anchor": {"task": "audit.chain_anchor", "schedule": crontab(minute="*/5")},
    # Verify the audit events written since the last run; a broken chain is logged at ERROR.
    "audit-chain-verify-new": {"task": "audit.verification_create", "schedule": crontab(minute="2-59/5")},
    # The whole chain, nightly, before retention prunes the oldest events (catches an old cut).
    "audit-chain-verify-full": {
        "task": "audit.verification_create",
        "schedule": crontab(minute=47, hour=2),
        "kwargs": {"full": True},
    },
    # The outbox relay: jobs recorded while the broker was down, lost by a Redis that restarted
    # empty, or left by a worker that died are published (docs/decisions/0019-outbox.md). Stale
    # ticks expire rather than pile up while no worker runs (30 s: a beat clock a little ahead of
    # a worker's would otherwise expire every tick).
    "accounts-jobs-relay": {
        "task": "accounts.jobs_relay",
        "schedule": timedelta(seconds=5),
        "options": {"expires": 30},
    },
    # Finished outbox jobs are kept a week for operators (without their arguments).
    "accounts-jobs-prune": {"task": "accounts.jobs_prune", "schedule": crontab(minute=37, hour=4)},
    # Erase accounts whose deletion grace period (ACCOUNT_DELETION_GRACE_DAYS) has ended.
    "accounts-users-purge-due": {"task": "accounts.users_purge_due", "schedule": crontab(minute=37, hour=3)},
    # Personal data exports are downloadable for DATA_EXPORT_LINK_HOURS; then their files go.
    "accounts-data-exports-expire": {"task": "accounts.data_exports_expire", "schedule": crontab(minute=7)},
    # E-mailed second-factor codes are worthless after 10 minutes; keep the table small.
    "accounts-email-codes-prune": {
        "task": "accounts.email_codes_prune",
        "schedule": crontab(minute=47, hour=4),
    },
    # Device sessions ended more than ACCOUNTS_DEVICE_SESSION_RETENTION_DAYS ago: one row per app
    # sign-in would otherwise stay for ever.
    "accounts-device-sessions-prune": {
        "task": "accounts.device_sessions_prune",
        "schedule": crontab(minute=57, hour=4),
    },
    # Retired OIDC signing keys leave the JWKS once every token they signed has expired.
    "oauth-signing-keys-prune": {"task": "oauth_provider.signing_keys_prune", "schedule": crontab(minute=27)},
    # Expired OAuth tokens and codes pile up by the thousand an hour; batches keep each lock short.
    "oauth-tokens-clear-expired": {
        "task": "oauth_provider.tokens_clear_expired",
        "schedule": crontab(minute=43),
    },
}

REQUEST_ID_HEADER = "request_id"


@signals.before_task_publish.connect
def attach_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    if headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id_var.get())


@signals.task_prerun.connect
def adopt_request_id(task: Any = None, **kwargs: Any) -> None:
    request_id = getattr(task.request, REQUEST_ID_HEADER, None) if task is not None else None
    request_id_var.set(request_id or f"task-{getattr(task.request, 'id', None) or '-'}")


@app.task(name="config.ping")
def ping() -> str:
    """Answer "pong": lets operators and tests prove a worker consumes from the broker."""
    return "pong"
