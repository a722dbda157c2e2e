"""Initial access tokens for dynamic client registration (RFC 7591 §3) from the command line.

    manage.py oauth_initial_token issue --label "Partner X" [--days 7] [--max-uses 1]
                                        [--scope "openid profile"] [--grant-type client_credentials ...]
                                        [--created-by USERNAME]
    manage.py oauth_initial_token list [--all]
    manage.py oauth_initial_token revoke ID [--revoked-by USERNAME]

`issue` prints the token once (it is stored as a hash); the same services as the admin, audited.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.models import User
from oauth_provider.models import InitialAccessToken
from oauth_provider.models.registration import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_REFRESH_TOKEN,
    REGISTRABLE_GRANT_TYPES,
    InitialAccessTokenState,
)
from oauth_provider.services.registration import (
    initial_access_token_default_lifetime,
    initial_access_token_issue,
    initial_access_token_revoke,
)


def _user(username: str | None) -> User | None:
    if not username:
        return None
    user = User.objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"No user {username}.")
    return user


class Command(BaseCommand):
    help = "Issue, list or revoke initial access tokens for dynamic client registration (/o/register/)."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="command", required=True)
        issue = commands.add_parser("issue", help="Issue a token and print it once.")
        issue.add_argument("--label", required=True, help="Who or what the token is for.")
        issue.add_argument(
            "--days",
            type=float,
            default=None,
            help=f"Days it works (default {initial_access_token_default_lifetime().days}).",
        )
        issue.add_argument(
            "--max-uses", type=int, default=None, help="Clients it may register (default: no limit)."
        )
        issue.add_argument(
            "--scope",
            default="",
            help="Space-separated scopes its clients may have (default: OAUTH_REGISTRATION_SCOPES).",
        )
        issue.add_argument(
            "--grant-type",
            action="append",
            choices=REGISTRABLE_GRANT_TYPES,
            dest="grant_types",
            help="A grant type its clients may use; repeat for several "
            f"(default: {GRANT_AUTHORIZATION_CODE} and {GRANT_REFRESH_TOKEN}).",
        )
        issue.add_argument("--created-by", default=None, help="Username of the person issuing it (audited).")
        listing = commands.add_parser("list", help="Show the tokens that still work (--all: every one).")
        listing.add_argument(
            "--all", action="store_true", help="Include expired, revoked and used-up tokens."
        )
        revoke = commands.add_parser("revoke", help="Revoke a token by its ID.")
        revoke.add_argument("id", help="The token's ID (see `list`).")
        revoke.add_argument(
            "--revoked-by", default=None, help="Username of the person revoking it (audited)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"handle_{options['command']}")(**options)

    def handle_issue(self, **options: Any) -> None:
        days = options["days"]
        if days is not None and days <= 0:
            raise CommandError("--days must be positive.")
        try:
            issued = initial_access_token_issue(
                label=options["label"],
                created_by=_user(options["created_by"]),
                expires_at=timezone.now() + timedelta(days=days) if days is not None else None,
                max_uses=options["max_uses"],
                allowed_scopes=options["scope"].split(),
                allowed_grant_types=options["grant_types"],
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        token = issued.initial_access_token
        self.stdout.write(
            f"Initial access token {token.id} ({token.label}), until {token.expires_at.isoformat()}:"
        )
        self.stdout.write(issued.token)
        self.stdout.write("It is shown only now. Send it as `Authorization: Bearer <token>` to /o/register/.")

    def handle_list(self, **options: Any) -> None:
        tokens = InitialAccessToken.objects.select_related("created_by")
        if not options["all"]:
            tokens = tokens.in_state(InitialAccessTokenState.ACTIVE)
        for token in tokens.order_by("-created_at"):
            uses = f"{token.uses}/{token.max_uses}" if token.max_uses is not None else f"{token.uses}/-"
            self.stdout.write(
                f"{token.id}  {token.token_prefix}…  {token.state.value:<8} uses {uses:<7} "
                f"until {token.expires_at:%Y-%m-%d %H:%M}  {token.label}"
            )

    def handle_revoke(self, **options: Any) -> None:
        try:
            token = InitialAccessToken.objects.get(pk=options["id"])
        except (InitialAccessToken.DoesNotExist, ValidationError):
            raise CommandError(f"No initial access token {options['id']}.") from None
        try:
            initial_access_token_revoke(initial_access_token=token, actor=_user(options["revoked_by"]))
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(f"Revoked {token.id} ({token.label}).")
