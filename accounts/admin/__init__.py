"""Staff tools in the Django admin: users (`users`), organizations (`organizations`), and allauth's
records without their secrets (`allauth_records`)."""

from accounts.admin import allauth_records, organizations, users

__all__ = ["allauth_records", "organizations", "users"]
