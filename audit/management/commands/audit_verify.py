"""Walk the audit chain and report the first broken link (exit status 1 when there is one)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.services import audit_chain_verify


class Command(BaseCommand):
    help = "Verify the hash chain of the audit trail, from its oldest remaining event."

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_chain_verify()
        event = report.broken_event
        if event is not None:
            raise CommandError(
                f"Audit chain broken at event {event.event_id} (#{event.pk}, {event.action}, "
                f"{event.occurred_at:%Y-%m-%d %H:%M:%S}): {report.reason}. "
                f"{report.checked} events before it are intact."
            )
        self.stdout.write(f"Audit chain intact: {report.checked} events verified.")
