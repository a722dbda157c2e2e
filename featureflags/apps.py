from django.apps import AppConfig


class FeatureFlagsConfig(AppConfig):
    name = "featureflags"
    verbose_name = "Feature flags"
    default_auto_field = "django.db.models.BigAutoField"
