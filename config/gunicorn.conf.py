"""Gunicorn settings, all overridable from the environment (HOST, PORT, WEB_CONCURRENCY, ...)."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# gthread: a few threads per process absorb slow clients without a process per connection;
# see docs/decisions/0004-gunicorn-workers.md and bench/ for the measurement.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = 500
# X-Forwarded-Proto is believed from the same proxies as X-Forwarded-For.
forwarded_allow_ips = os.environ.get("TRUSTED_PROXIES", "")
accesslog = "-"
errorlog = "-"
# The path without its query string (which may carry codes or tokens); no Referer for the same reason.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s" request_id=%({x-request-id}o)s'
