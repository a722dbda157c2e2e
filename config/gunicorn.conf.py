"""Gunicorn settings, all overridable from the environment (HOST, PORT, WEB_CONCURRENCY, ...).

An empty variable (`cp .env.example .env` leaves some) means its default, as in config/settings.py.
"""

import os

bind = f"{os.environ.get('HOST') or '127.0.0.1'}:{os.environ.get('PORT') or '8000'}"
# gthread: a few threads per process absorb slow clients without a process per connection;
# see docs/decisions/0004-errors-logs-and-edge.md#serving-gunicorn-gthread-workers (bench/ measures).
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or "2")
threads = int(os.environ.get("GUNICORN_THREADS") or "4")
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or "30")
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or "30")
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS") or "5000")
max_requests_jitter = 500
# X-Forwarded-Proto is believed from the same proxies as X-Forwarded-For.
forwarded_allow_ips = os.environ.get("TRUSTED_PROXIES", "")
accesslog = "-"
errorlog = "-"
# The path without its query string (which may carry codes or tokens); no Referer for the same reason.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s" request_id=%({x-request-id}o)s'
# gunicorn's control socket (for `gunicornc`) defaults to $XDG_RUNTIME_DIR/gunicorn.ctl or
# $HOME/.gunicorn/gunicorn.ctl: one path for every instance a user runs on a host, each one started
# taking it over from the last and each one stopped deleting it (issue 13). None unless
# GUNICORN_CONTROL_SOCKET names this instance's own (owner-only, mode 0600).
_control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET") or ""
control_socket_disable = not _control_socket
if _control_socket:
    control_socket = _control_socket
