"""Staff tools in the Django admin: users (`users`) and organizations (`organizations`)."""

from accounts.admin import organizations, users

__all__ = ["organizations", "users"]
