"""Staff tools in the Django admin: users (`users`), organizations (`organizations`), allauth's
records without their secrets (`allauth_records`), and the outbox of jobs (`outbox`)."""

from accounts.admin import allauth_records, organizations, outbox, users

__all__ = ["allauth_records", "organizations", "outbox", "users"]
