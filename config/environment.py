"""Reading settings from the environment: django-environ, where an empty value means "unset".

`cp .env.example .env` leaves lines like `JWT_SIGNING_KEY=` and `DATA_DIR=`; compose files and CI
systems pass empty variables the same way. django-environ reads them as the empty string, which
overrides the default: an empty JWT signing key (every first-party JWT then fails to sign), mail
without a sender, data in the working directory. Here a variable that is empty, or only blanks,
takes its default like an unset one; a variable without a default stays required.

Imported by settings, so it must not import Django settings or models.
"""

from __future__ import annotations

from typing import Any

import environ


class Environment(environ.Env):
    def get_value(
        self, var: str, cast: Any = None, default: Any = environ.Env.NOTSET, parse_default: bool = False
    ) -> Any:
        value = self.ENVIRON.get(f"{self.prefix}{var}")
        if isinstance(value, str) and not value.strip() and default is not self.NOTSET:
            # What django-environ answers for a variable that is not set at all.
            return self.parse_value(default, cast) if parse_default and default is not None else default
        return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
