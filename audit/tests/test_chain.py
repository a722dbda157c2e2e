"""The keyed, anchored audit chain: what an attacker with database access does, and how it is caught."""

from __future__ import annotations

import importlib
import io
import json
import re
import secrets
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from pytest_django.fixtures import Settings

from audit import tasks
from audit.chain import chain_keys, key_id_for
from audit.models import AuditChainCheckpoint, AuditEvent, AuditVerification
from audit.services import audit_events_prune, audit_record
from audit.tests.tampering import plain_sha256, rehash_after, tamper
from conftest import LogCapture

pytestmark = pytest.mark.django_db


def verify(*args: str) -> str:
    output = io.StringIO()
    call_command("audit_verify", *args, stdout=output)
    return output.getvalue()


def broken(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        call_command("audit_verify", *args)
    return str(caught.value)


def backdate(events: list[AuditEvent], *, days: int) -> None:
    """Make events old enough for retention (history, not tampering: they are pruned right after)."""
    tamper(
        "UPDATE audit_auditevent SET occurred_at = %s WHERE id <= %s",
        [timezone.now() - timedelta(days=days), events[-1].pk],
    )


def test_a_removed_event_with_every_later_hash_recomputed_is_detected() -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(5)]

    tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[2].pk])
    rehash_after(events[1].pk)

    message = broken()
    assert message == (
        f"Audit chain broken at event {events[3].event_id} (#{events[3].pk}, a.event_3, "
        f"{events[3].occurred_at:%Y-%m-%d %H:%M:%S}): content does not match its MAC. "
        "2 events before it are intact."
    )


def test_a_cut_tail_below_the_anchor_is_detected() -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(6)]
    anchor = f"{events[4].pk}:{events[4].hash}"
    assert verify("--anchor", anchor).splitlines()[0] == "Audit chain intact: 6 events verified."

    tamper("DELETE FROM audit_auditevent WHERE id >= %s", [events[3].pk])

    # Without the anchor the shorter chain is consistent: only the anchor proves what was there.
    assert verify().splitlines()[0] == "Audit chain intact: 3 events verified."
    assert broken("--anchor", anchor) == (
        f"Audit chain broken at #{events[4].pk}: the anchored event is missing; the chain ends at "
        f"#{events[2].pk}. 3 events before it are intact."
    )


def test_deleting_the_oldest_events_is_detected() -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(4)]

    tamper("DELETE FROM audit_auditevent WHERE id <= %s", [events[1].pk])

    assert broken() == (
        f"Audit chain broken at event {events[2].event_id} (#{events[2].pk}, a.event_2, "
        f"{events[2].occurred_at:%Y-%m-%d %H:%M:%S}): the chain starts at #{events[2].pk} but no "
        "checkpoint records that the events before it were pruned. 0 events before it are intact."
    )


@pytest.mark.django_db(transaction=True)
def test_deleting_the_oldest_events_beyond_the_checkpoint_is_detected() -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(7)]
    backdate(events[:3], days=400)
    assert audit_events_prune(older_than=timezone.now() - timedelta(days=365)) == 3

    tamper("DELETE FROM audit_auditevent WHERE id <= %s", [events[4].pk])

    assert broken() == (
        f"Audit chain broken at event {events[5].event_id} (#{events[5].pk}, a.event_5, "
        f"{events[5].occurred_at:%Y-%m-%d %H:%M:%S}): the chain starts at #{events[5].pk} but the "
        f"last checkpoint says it starts after #{events[2].pk}. 0 events before it are intact."
    )


@pytest.mark.parametrize(
    "statements",
    [
        ["DELETE FROM audit_auditevent"],
        ["SET LOCAL audit.allow_delete = 'on'", "DELETE FROM audit_auditevent"],
    ],
    ids=["plain", "set-local-allow-delete"],
)
def test_no_session_can_switch_the_append_only_trigger_off(
    require_postgresql: None, statements: list[str]
) -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(3)]
    backdate(events, days=400)  # old enough for retention: age is not what refuses the delete

    with transaction.atomic(), connection.cursor() as cursor:
        for statement in statements[:-1]:
            cursor.execute(statement)
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            cursor.execute(statements[-1])

    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "a.event_0",
        "a.event_1",
        "a.event_2",
    ]


def test_rewriting_the_chain_as_unkeyed_events_is_detected() -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(3)]
    tamper("UPDATE audit_auditevent SET key_id = ''")
    rehash_after(0)  # every event, from the first, gets a valid unkeyed hash

    assert broken() == (
        f"Audit chain broken at event {events[0].event_id} (#{events[0].pk}, a.event_0, "
        f"{events[0].occurred_at:%Y-%m-%d %H:%M:%S}): it is unkeyed, but the chain was keyed before "
        "it. 0 events before it are intact."
    )


def test_recent_events_cannot_be_deleted_even_with_a_checkpoint(require_postgresql: None) -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(2)]

    with transaction.atomic(), connection.cursor() as cursor:
        AuditChainCheckpoint.objects.create(
            kind="pruned", through_id=events[1].pk, through_hash=events[1].hash, key_id="x", mac="0" * 64
        )
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            cursor.execute("DELETE FROM audit_auditevent")

    assert AuditEvent.objects.count() == 2


def test_a_deletion_with_a_forged_checkpoint_goes_through_but_is_reported(require_postgresql: None) -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(4)]
    backdate(events, days=400)

    # Whoever can write to the database can delete old events by writing a checkpoint first, but
    # the checkpoint stays, and only a holder of AUDIT_CHAIN_KEYS could have MACed it.
    with transaction.atomic():
        forged = AuditChainCheckpoint.objects.create(
            kind="pruned", through_id=events[1].pk, through_hash=events[1].hash, key_id="x", mac="0" * 64
        )
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent WHERE id <= %s", [events[1].pk])

    first = AuditEvent.objects.get(pk=events[2].pk)
    assert broken() == (
        f"Audit chain broken at event {first.event_id} (#{first.pk}, a.event_2, "
        f"{first.occurred_at:%Y-%m-%d %H:%M:%S}): the last pruned checkpoint (#{forged.pk}, through "
        f"#{events[1].pk}) does not match its MAC. 0 events before it are intact."
    )


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_auditchaincheckpoint SET deleted = 0", "DELETE FROM audit_auditchaincheckpoint"],
)
def test_checkpoints_are_append_only(require_postgresql: None, statement: str) -> None:
    AuditChainCheckpoint.objects.create(
        kind="pruned", through_id=1, through_hash="a" * 64, key_id="x", mac="0" * 64
    )

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)

    assert AuditChainCheckpoint.objects.count() == 1


def test_the_anchor_job_logs_the_head_and_appends_it_to_the_anchor_file(
    log_capture: LogCapture, settings: Settings, tmp_path: Path
) -> None:
    settings.AUDIT_ANCHOR_FILE = str(tmp_path / "anchors.jsonl")
    events = [audit_record(action=f"a.event_{number}") for number in range(3)]
    key_id = chain_keys().signing.key_id

    assert tasks.audit_chain_anchor.delay().get() == events[2].pk

    line = f"audit.anchor: Audit chain head {events[2].pk}:{events[2].hash} (key {key_id}, event of "
    assert re.search(rf"INFO \[task-[0-9a-f-]+\] {re.escape(line)}", log_capture.output)
    log_capture.use("json")
    tasks.audit_chain_anchor.delay()
    (logged,) = [
        record
        for record in map(json.loads, log_capture.output.splitlines())
        if record["logger"] == "audit.anchor"
    ]
    assert logged["level"] == "INFO"
    assert (logged["audit_seq"], logged["audit_mac"], logged["audit_key_id"]) == (
        events[2].pk,
        events[2].hash,
        key_id,
    )
    anchors = [json.loads(line) for line in (tmp_path / "anchors.jsonl").read_text().splitlines()]
    assert [(anchor["seq"], anchor["mac"], anchor["key_id"]) for anchor in anchors] == [
        (events[2].pk, events[2].hash, key_id)
    ] * 2
    assert anchors[0]["occurred_at"] == events[2].occurred_at.isoformat()


def test_verification_against_the_anchor_file(settings: Settings, tmp_path: Path) -> None:
    settings.AUDIT_ANCHOR_FILE = str(tmp_path / "anchors.jsonl")
    events = [audit_record(action=f"a.event_{number}") for number in range(3)]
    tasks.audit_chain_anchor.delay()
    audit_record(action="a.after_the_anchor")

    assert verify("--anchor-file", settings.AUDIT_ANCHOR_FILE).splitlines()[-1] == (
        f"Anchor {events[2].pk} found: no event up to it was removed or changed."
    )
    tamper("DELETE FROM audit_auditevent WHERE id >= %s", [events[2].pk])
    assert broken("--anchor-file", settings.AUDIT_ANCHOR_FILE).startswith(
        f"Audit chain broken at #{events[2].pk}: the anchored event is missing"
    )


@pytest.mark.parametrize(
    ("anchor", "message"),
    [
        ("12", 'Give an anchor as "SEQ:MAC" (64 lowercase hex digits).'),
        ("12:" + "G" * 64, 'Give an anchor as "SEQ:MAC" (64 lowercase hex digits).'),
    ],
)
def test_a_malformed_anchor_is_refused(anchor: str, message: str) -> None:
    assert broken("--anchor", anchor) == message
    assert not AuditVerification.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_anchor_older_than_retention_cannot_be_checked() -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(4)]
    backdate(events[:2], days=400)
    audit_events_prune(older_than=timezone.now() - timedelta(days=365))

    assert broken("--anchor", f"{events[0].pk}:{events[0].hash}") == (
        f"Event #{events[0].pk} was pruned (the chain now starts after #{events[1].pk}): "
        "verify with a newer anchor."
    )
    assert verify("--anchor", f"{events[1].pk}:{events[1].hash}").splitlines()[-1] == (
        f"Anchor {events[1].pk} found: no event up to it was removed or changed."
    )


def test_rotating_the_key_keeps_older_events_verifying(settings: Settings) -> None:
    old_key, new_key = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    settings.AUDIT_CHAIN_KEYS = [old_key]
    before = [audit_record(action=f"a.before_{number}") for number in range(2)]
    settings.AUDIT_CHAIN_KEYS = [new_key, old_key]
    after = [audit_record(action=f"a.after_{number}") for number in range(2)]

    assert {event.key_id for event in before} == {key_id_for(old_key.encode())}
    assert {event.key_id for event in after} == {key_id_for(new_key.encode())}
    assert key_id_for(new_key.encode()) != key_id_for(old_key.encode())
    assert verify().splitlines()[0] == "Audit chain intact: 4 events verified."

    # Removed too early (its events are still there): verification says which key is missing.
    settings.AUDIT_CHAIN_KEYS = [new_key]
    assert broken() == (
        f"Audit chain broken at event {before[0].event_id} (#{before[0].pk}, a.before_0, "
        f"{before[0].occurred_at:%Y-%m-%d %H:%M:%S}): it is MACed with key {key_id_for(old_key.encode())}, "
        "which AUDIT_CHAIN_KEYS does not hold. 0 events before it are intact."
    )


def unkeyed_events(count: int, *, previous_hash: str = AuditEvent.GENESIS_HASH) -> list[AuditEvent]:
    """Events as the release before keyed chaining wrote them: unkeyed SHA-256."""
    events = []
    for number in range(count):
        event = AuditEvent(action=f"a.unkeyed_{number}", actor_type="system", previous_hash=previous_hash)
        event.hash = plain_sha256(previous_hash, event)
        events.append(event)
        previous_hash = event.hash
    AuditEvent.objects.bulk_create(events)
    return list(AuditEvent.objects.order_by("id"))


def checkpoint_unkeyed_events() -> None:
    """What migration 0005 does when it runs on a database holding events."""
    migration = importlib.import_module("audit.migrations.0005_checkpoint_unkeyed_events")
    migration.checkpoint_unkeyed_events(django_apps, SimpleNamespace(connection=connection))


def test_events_from_before_keyed_chaining_still_verify() -> None:
    unkeyed = unkeyed_events(3)
    checkpoint_unkeyed_events()
    keyed = audit_record(action="a.keyed")

    assert keyed.previous_hash == unkeyed[2].hash
    assert verify().splitlines()[0] == "Audit chain intact: 4 events verified."
    # The unkeyed part is pinned by the checkpoint: rewriting it is seen even without anchors.
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [unkeyed[1].pk])
    rehash_after(unkeyed[0].pk)
    rewritten = AuditEvent.objects.get(pk=unkeyed[2].pk)
    assert broken() == (
        f"Audit chain broken at event {rewritten.event_id} (#{rewritten.pk}, a.unkeyed_2, "
        f"{rewritten.occurred_at:%Y-%m-%d %H:%M:%S}): it does not match the legacy checkpoint. "
        "1 event before it is intact."
    )


def test_unkeyed_events_after_the_legacy_checkpoint_are_detected() -> None:
    unkeyed = unkeyed_events(2)
    checkpoint_unkeyed_events()
    forged = AuditEvent(action="a.forged", actor_type="system", previous_hash=unkeyed[1].hash)
    forged.hash = plain_sha256(forged.previous_hash, forged)
    forged.save()

    assert broken() == (
        f"Audit chain broken at event {forged.event_id} (#{forged.pk}, a.forged, "
        f"{forged.occurred_at:%Y-%m-%d %H:%M:%S}): it is unkeyed, but the chain was keyed before it. "
        "2 events before it are intact."
    )


def record_as_the_previous_release(action: str) -> AuditEvent:
    """An event recorded by a process still on the previous release: its INSERT names no key."""
    previous = (
        AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first() or AuditEvent.GENESIS_HASH
    )
    event = AuditEvent(action=action, actor_type="system", actor_label="system", previous_hash=previous)
    event.hash = plain_sha256(previous, event)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditevent (event_id, occurred_at, action, outcome, actor_type, actor_id, "
            "actor_label, target_type, target_id, target_label, user_agent, request_id, changes, metadata, "
            "previous_hash, hash) VALUES (%s, %s, %s, 'success', 'system', '', 'system', '', '', '', '', '', "
            "'{}', '{}', %s, %s)",
            [str(event.event_id), event.occurred_at, action, event.previous_hash, event.hash],
        )
    return AuditEvent.objects.get(event_id=event.event_id)


def test_events_the_previous_release_records_during_an_upgrade_are_checkpointed_by_an_operator() -> None:
    unkeyed_events(2)
    checkpoint_unkeyed_events()  # migrate
    keyed = audit_record(action="a.new_release")
    old = [record_as_the_previous_release(f"a.old_release_{number}") for number in range(2)]
    audit_record(action="a.new_release_again")

    assert old[0].key_id == ""
    assert broken().endswith(
        ": it is unkeyed, but the chain was keyed before it. 3 events before it are intact."
    )

    output = verify("--checkpoint-unkeyed")

    assert (
        output == f"Checkpointed 2 unkeyed events, #{old[0].pk} to #{old[1].pk}; the chain verifies again.\n"
    )
    assert verify().splitlines()[0] == "Audit chain intact: 7 events verified."
    checkpointed = AuditEvent.objects.get(action="audit.chain.unkeyed_checkpointed")
    assert checkpointed.metadata == {"count": 2, "from_id": old[0].pk, "through_id": old[1].pk}
    assert keyed.key_id == chain_keys().signing.key_id
    assert (
        verify("--checkpoint-unkeyed")
        == "No unkeyed events after the last legacy checkpoint: nothing to do.\n"
    )


def test_unkeyed_events_are_not_checkpointed_when_anything_else_is_wrong() -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(2)]
    record_as_the_previous_release("a.old_release")
    tamper("UPDATE audit_auditevent SET action = 'a.forged' WHERE id = %s", [events[0].pk])

    assert broken("--checkpoint-unkeyed") == (
        f"The audit chain does not verify at #{events[0].pk}: content does not match its MAC. "
        "Nothing was checkpointed."
    )
    assert not AuditChainCheckpoint.objects.exists()


def test_an_unkeyed_chain_pruned_before_the_upgrade_gets_its_start_checkpoint() -> None:
    unkeyed_events(2, previous_hash="e" * 64)  # its older events were pruned by the previous release

    checkpoint_unkeyed_events()

    assert list(AuditChainCheckpoint.objects.order_by("id").values_list("kind", "through_hash")) == [
        ("pruned", "e" * 64),
        ("legacy", AuditEvent.objects.order_by("-id").first().hash),  # type: ignore[union-attr]
    ]
    assert verify().splitlines()[0] == "Audit chain intact: 2 events verified."


def test_the_verification_job_checks_only_new_events_and_records_each_run(log_capture: LogCapture) -> None:
    first = [audit_record(action=f"a.event_{number}") for number in range(3)]
    assert tasks.audit_verification_create.delay().get() is True
    second = [audit_record(action=f"a.more_{number}") for number in range(2)]

    assert tasks.audit_verification_create.delay().get() is True

    runs = list(AuditVerification.objects.order_by("id"))
    assert [(run.full, run.checked, run.checked_from, run.checked_to, run.intact) for run in runs] == [
        (True, 3, first[0].pk, first[2].pk, True),
        (False, 2, second[0].pk, second[1].pk, True),
    ]
    assert (runs[1].source, runs[1].head_seq, runs[1].head_hash) == ("schedule", second[1].pk, second[1].hash)
    line = f"audit.chain: Audit chain intact: 2 new events verified. Checked through #{second[1].pk}."
    assert re.search(rf"INFO \[task-[0-9a-f-]+\] {re.escape(line)}", log_capture.output)


def test_the_verification_job_logs_an_error_while_the_chain_is_broken(log_capture: LogCapture) -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(3)]
    tasks.audit_verification_create.delay()
    more = [audit_record(action=f"a.more_{number}") for number in range(2)]
    tamper("UPDATE audit_auditevent SET target_label = 'forged' WHERE id = %s", [more[0].pk])

    assert tasks.audit_verification_create.delay().get() is False
    assert tasks.audit_verification_create.delay().get() is False  # again, in full, until repaired

    runs = list(
        AuditVerification.objects.order_by("id").values_list("full", "intact", "broken_seq", "reason")
    )
    assert runs[1:] == [
        (False, False, more[0].pk, "content does not match its MAC"),
        (True, False, more[0].pk, "content does not match its MAC"),
    ]
    message = (
        f"audit.chain: Audit chain broken at event {more[0].event_id} (#{more[0].pk}, a.more_0, "
        f"{more[0].occurred_at:%Y-%m-%d %H:%M:%S}): content does not match its MAC. "
    )
    errors = re.findall(rf"ERROR \[task-[0-9a-f-]+\] {re.escape(message)}(\d+ \w+)", log_capture.output)
    assert errors == ["0 new", f"{len(events)} events"]  # the new part only, then the whole chain


def test_the_verification_job_notices_a_cut_below_where_it_last_ended() -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(3)]
    tasks.audit_verification_create.delay()
    tamper("DELETE FROM audit_auditevent WHERE id >= %s", [events[1].pk])

    assert tasks.audit_verification_create.delay().get() is False

    latest = AuditVerification.objects.order_by("-id").first()
    assert latest is not None
    assert (latest.broken_seq, latest.reason) == (
        events[2].pk,
        "the event the previous verification ended at is missing",
    )


def test_beat_anchors_and_verifies_every_five_minutes_and_in_full_nightly() -> None:
    from config.celery import app

    schedule = {
        name: entry for name, entry in app.conf.beat_schedule.items() if name.startswith("audit-chain")
    }

    assert {name: (entry["task"], entry.get("kwargs", {})) for name, entry in schedule.items()} == {
        "audit-chain-anchor": ("audit.chain_anchor", {}),
        "audit-chain-verify-new": ("audit.verification_create", {}),
        "audit-chain-verify-full": ("audit.verification_create", {"full": True}),
    }
    assert {entry["task"] for entry in schedule.values()} <= set(app.tasks)
    assert schedule["audit-chain-anchor"]["schedule"].minute == set(range(0, 60, 5))
    assert schedule["audit-chain-verify-new"]["schedule"].minute == set(range(2, 60, 5))
