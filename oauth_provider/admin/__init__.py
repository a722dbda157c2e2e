"""Staff tools for the OAuth server in the Django admin (docs/decisions/0016).

- clients (`applications`): our Application with its metadata, trusted flag, scopes, PKCE and
  the secret rotation;
- initial access tokens for dynamic client registration (`registration`);
- the toolkit's grants and tokens, read-only with a "Revoke" action (`tokens`).

The toolkit's admin module registers its own admins for these models; it is imported first so
that ours replace them whatever the import order.
"""

import oauth2_provider.admin  # noqa: F401
from django.contrib import admin

from oauth_provider.models import Application

if admin.site.is_registered(Application):
    admin.site.unregister(Application)

from oauth_provider.admin import applications, registration, tokens

__all__ = ["applications", "registration", "tokens"]
