from django.apps import AppConfig


class OAuthProviderConfig(AppConfig):
    name = "oauth_provider"
    label = "oauth_provider"
    verbose_name = "OAuth 2.0 / OpenID Connect"
    default_auto_field = "django.db.models.BigAutoField"
