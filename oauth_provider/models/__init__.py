"""The oauth_provider app's models: one module per topic."""

from oauth_provider.models.applications import Application

__all__ = ["Application"]
