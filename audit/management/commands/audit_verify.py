"""Walk the whole audit chain and report the first broken link (exit status 1 when there is one)."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from audit.chain import ChainLink
from audit.models import AuditVerification
from audit.services import audit_unkeyed_events_checkpoint, audit_verification_create, verification_summary


class Command(BaseCommand):
    help = (
        "Verify the keyed audit chain from its retained start, and record the result. With the last "
        "anchor the anchor job logged, also prove that no event up to it was removed. After an "
        "upgrade, --checkpoint-unkeyed accepts the events the previous release recorded meanwhile."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        anchors = parser.add_mutually_exclusive_group()
        anchors.add_argument(
            "--anchor", metavar="SEQ:MAC", help='An anchor as logged: "Audit chain head SEQ:MAC".'
        )
        anchors.add_argument(
            "--anchor-file",
            metavar="PATH",
            type=Path,
            help="An AUDIT_ANCHOR_FILE: its last anchor is checked.",
        )
        anchors.add_argument(
            "--checkpoint-unkeyed",
            action="store_true",
            help="Accept the unkeyed events recorded since the last legacy checkpoint (by processes of "
            "the previous release during an upgrade), if the chain verifies otherwise. Audited.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["checkpoint_unkeyed"]:
            self.checkpoint_unkeyed()
            return
        try:
            anchor = (
                ChainLink.parse(options["anchor"])
                if options["anchor"]
                else ChainLink.from_anchor_file(options["anchor_file"])
                if options["anchor_file"]
                else None
            )
            verification = audit_verification_create(
                source=AuditVerification.Source.COMMAND, full=True, anchor=anchor
            )
        except (ValidationError, OSError) as error:
            raise CommandError(" ".join(getattr(error, "messages", [str(error)]))) from error
        if not verification.intact:
            raise CommandError(verification_summary(verification))
        self.stdout.write(verification_summary(verification))
        if verification.head_seq is not None:
            key_id = verification.head_key_id or "none"
            self.stdout.write(f"Head: {verification.head_seq}:{verification.head_hash} (key {key_id}).")
        if anchor is not None:
            self.stdout.write(f"Anchor {anchor.seq} found: no event up to it was removed or changed.")

    def checkpoint_unkeyed(self) -> None:
        try:
            accepted = audit_unkeyed_events_checkpoint()
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        if accepted is None:
            self.stdout.write("No unkeyed events after the last legacy checkpoint: nothing to do.")
            return
        self.stdout.write(
            f"Checkpointed {accepted.count} unkeyed events, #{accepted.first_id} to "
            f"#{accepted.checkpoint.through_id}; the chain verifies again."
        )
