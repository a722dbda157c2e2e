"""List and rotate the keys that sign ID tokens (docs/decisions/0013-oauth-keys-and-discovery.md).

manage.py oidc_keys list
manage.py oidc_keys rotate     # the step that is due: add a key, or activate it once safe
manage.py oidc_keys add [--pem-file PATH]
manage.py oidc_keys activate [KID] [--force]
manage.py oidc_keys withdraw KID  # a leaked key out of the JWKS now
manage.py oidc_keys prune
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from oauth2_provider.settings import oauth2_settings

from oauth_provider.models import SigningKey
from oauth_provider.selectors.signing_keys import (
    jwks_max_age_seconds,
    key_ring,
    refresh_seconds,
    setting_key_kid,
    signing_key_activatable_at,
    signing_key_list,
)
from oauth_provider.services.signing_keys import (
    retired_setting_key,
    signing_key_activate,
    signing_key_add,
    signing_key_withdraw,
    signing_keys_prune,
    signing_keys_rotate,
)


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "-"


# A kid is the key's RFC 7638 thumbprint: 43 base64url characters, and one in 64 starts with "-".
_DASH_KID = re.compile(r"-[A-Za-z0-9_-]{42}")


class _KidParser(CommandParser):
    """Reads a kid that starts with "-" as the kid, not as an option (`-v...` would be the verbosity).

    No option of the command is 43 base64url characters long, so such an argument is rewritten to
    the hidden `--kid=...` form, which argparse reads as a value whatever its first character.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if args is not None:
            args = [f"--kid={arg}" if _DASH_KID.fullmatch(arg) else arg for arg in args]
        return super().parse_known_args(args, namespace)


class Command(BaseCommand):
    help = "List, add, activate, withdraw and prune the OIDC signing keys; `rotate` takes the next safe step."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = _KidParser  # the subcommand parsers are made from type(parser)
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="action", required=True)
        commands.add_parser("list", help="Show every key, its state and dates.")
        add = commands.add_parser("add", help="Publish a new key that does not sign yet.")
        add.add_argument(
            "--pem-file", type=Path, help="Import this PEM RSA private key instead of generating one."
        )
        activate = commands.add_parser("activate", help="Sign with a published key; the active key retires.")
        activate.add_argument("kid", nargs="?", help="The key to activate (default: the newest `next` key).")
        activate.add_argument("--kid", dest="dash_kid", help=argparse.SUPPRESS)
        activate.add_argument(
            "--force",
            action="store_true",
            help="Activate before one JWKS lifetime has passed (breaks cached verifiers).",
        )
        commands.add_parser(
            "rotate", help="Add a key, or activate the pending one once it is safe; print what is next."
        )
        withdraw = commands.add_parser(
            "withdraw", help="Take a leaked key out of the JWKS now; ID tokens it signed stop verifying."
        )
        withdraw.add_argument("kid", nargs="?", help="The key to withdraw (not the active one).")
        withdraw.add_argument("--kid", dest="dash_kid", help=argparse.SUPPRESS)
        commands.add_parser("prune", help="Delete retired keys whose tokens have all expired.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("dash_kid"):
            if options.get("kid"):
                raise CommandError("Give one kid.")
            options["kid"] = options["dash_kid"]
        if options["action"] == "withdraw" and not options.get("kid"):
            raise CommandError("Error: the following arguments are required: kid")
        try:
            getattr(self, f"handle_{options['action']}")(**options)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error

    def handle_list(self, **options: Any) -> None:
        keys = list(signing_key_list())
        if not keys:
            self.stdout.write(
                f"No keys in the table: OIDC_RSA_PRIVATE_KEY (kid {setting_key_kid()}) signs. "
                "`oidc_keys rotate` imports it and starts a rotation."
            )
            return
        self.stdout.write(f"{'kid':<44}  {'state':<8}  {'created':<23}  {'activated':<23}  publish until")
        for key in keys:
            self.stdout.write(
                f"{key.kid:<44}  {key.state:<8}  {_when(key.created_at):<23}  {_when(key.activated_at):<23}  "
                f"{_when(key.publish_until)}"
            )
        ring = key_ring()
        for key in keys:
            if key.kid in ring.unusable:
                self.stdout.write(
                    f"{key.kid} ({key.state}) cannot be used: it does not decrypt with the configured "
                    "keys (or does not match its kid), so it is left out of the JWKS."
                )
        kid = setting_key_kid() if oauth2_settings.OIDC_RSA_PRIVATE_KEY else None
        if retired_setting_key(keys) is not None:
            self.stdout.write(
                f"OIDC_RSA_PRIVATE_KEY (kid {kid}) is retired: it never signs or is published again, not "
                "even as the fallback; `oidc_keys prune` keeps its row while the setting holds this key."
            )
        elif (
            kid is not None
            and kid not in {key.kid for key in keys}
            and ring.signing is not None
            and not ring.signing.from_setting
        ):
            self.stdout.write(
                f"OIDC_RSA_PRIVATE_KEY (kid {kid}) is not used: the table's keys sign (it is the "
                "fallback if no active key in the table can be used)."
            )
        if ring.signing is None:
            self.stderr.write(
                self.style.ERROR(
                    f"Error: {ring.problem} Until then every token request that returns an ID token fails."
                )
            )
        elif ring.signing.from_setting:
            self.stderr.write(
                self.style.ERROR(
                    f"Error: no active key in the table can be used: OIDC_RSA_PRIVATE_KEY (kid {kid}) "
                    "signs as the fallback, and is published. Make a key of the table sign "
                    "(`oidc_keys add`, then `oidc_keys activate <new kid> --force`)."
                )
            )

    def handle_add(self, *, pem_file: Path | None = None, **options: Any) -> None:
        pem = pem_file.read_text() if pem_file else None
        key = signing_key_add(private_key_pem=pem)
        self.stdout.write(f"Added {key.kid}: published now, not signing yet.")
        self._next_activation(key)

    def handle_activate(self, *, kid: str | None = None, force: bool = False, **options: Any) -> None:
        candidates = (
            SigningKey.objects.filter(kid=kid)
            if kid
            else SigningKey.objects.filter(state=SigningKey.State.NEXT)
        )
        key = candidates.order_by("-created_at", "-id").first()
        if key is None:
            raise CommandError(
                f"No key {kid}." if kid else "No `next` key to activate: run `oidc_keys add` first."
            )
        previous = SigningKey.objects.filter(state=SigningKey.State.ACTIVE).first()
        key = signing_key_activate(key=key, force=force)
        self.stdout.write(f"Activated {key.kid}: it signs new tokens.")
        if previous is not None:
            previous.refresh_from_db()
            self._next_prune(previous)

    def handle_rotate(self, **options: Any) -> None:
        step = signing_keys_rotate()
        if step.action == "added":
            self.stdout.write(f"Step 1 of 3 done: added {step.key.kid}, published now, not signing yet.")
            self._next_activation(step.key)
        elif step.action == "waiting":
            self.stdout.write(f"Nothing to do yet: {step.key.kid} is published but too recently to sign.")
            self._next_activation(step.key)
        else:
            self.stdout.write(f"Step 2 of 3 done: {step.key.kid} signs new tokens.")
            if step.retired is not None:
                self._next_prune(step.retired)

    def handle_withdraw(self, *, kid: str, **options: Any) -> None:
        key = SigningKey.objects.filter(kid=kid).first()
        if key is None:
            raise CommandError(self._not_in_table(kid))
        key = signing_key_withdraw(key=key)
        self.stdout.write(
            f"Withdrew {key.kid}: out of this process's JWKS now, out of every worker's within "
            f"{refresh_seconds()} s. `oidc_keys prune` (the hourly beat job) deletes its row."
        )
        self.stderr.write(
            self.style.WARNING(
                f"Warning: ID tokens signed with {key.kid} stop verifying, here and at relying parties once "
                f"their cached JWKS copies expire (max-age {jwks_max_age_seconds()} s)."
            )
        )
        if key.kid == setting_key_kid():
            self.stderr.write(
                self.style.WARNING(
                    f"Warning: {key.kid} is OIDC_RSA_PRIVATE_KEY. Its row stays, unpublished, so it never "
                    "signs or is published again, not even as the fallback; still replace it in every "
                    "process's environment and roll them: a leaked key should not stay configured (a "
                    "database restored from before its import would sign with it again), and a new one "
                    "is a working fallback."
                )
            )

    def _not_in_table(self, kid: str) -> str:
        if kid != setting_key_kid():
            return f"No key {kid}."
        if not SigningKey.objects.exists():
            return (
                f"Key {kid} is OIDC_RSA_PRIVATE_KEY, which signs while the table is empty: run "
                "`oidc_keys add`, then `oidc_keys activate <new kid> --force`, then withdraw it."
            )
        return (
            f"No key {kid} in the table. It is OIDC_RSA_PRIVATE_KEY, published only while it signs as "
            "the fallback (no active key in the table can be used): `oidc_keys add`, then "
            "`oidc_keys activate <new kid> --force` takes it out."
        )

    def handle_prune(self, **options: Any) -> None:
        kids = signing_keys_prune()
        self.stdout.write(f"Pruned {', '.join(kids)}." if kids else "Nothing to prune.")
        kept = retired_setting_key(SigningKey.objects.filter(state=SigningKey.State.RETIRED))
        if kept is not None and kept.publish_until is not None and kept.publish_until <= timezone.now():
            self.stdout.write(
                f"Kept {kept.kid}, the retired OIDC_RSA_PRIVATE_KEY: its row keeps the setting from signing "
                "again as the fallback. Once the setting holds another key, prune deletes it."
            )

    def _next_activation(self, key: SigningKey) -> None:
        self.stdout.write(
            f"Next: after {_when(signing_key_activatable_at(key))} (when every cached JWKS has it), run "
            f"`oidc_keys rotate` again (or `oidc_keys activate {key.kid}`)."
        )

    def _next_prune(self, retired: SigningKey) -> None:
        self.stdout.write(
            f"{retired.kid} is retired and stays published until {_when(retired.publish_until)}, when every "
            "token it signed has expired; then `oidc_keys prune` (the hourly beat job does it) removes it."
        )
