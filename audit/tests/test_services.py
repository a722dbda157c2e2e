"""The audit trail: recording, append-only storage, the hash chain, retention."""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory
from django.utils import timezone

from accounts.tests.factories import UserFactory
from audit.chain import audit_chain_verify, chain_keys, event_mac
from audit.exceptions import AuditTrailIsAppendOnly
from audit.models import AuditChainCheckpoint, AuditEvent
from audit.services import audit_events_prune, audit_record
from audit.tests.tampering import tamper

pytestmark = pytest.mark.django_db


def test_audit_record_keeps_who_what_whom_when_and_where() -> None:
    actor = UserFactory.create(username="ada")
    target = UserFactory.create(username="bob")
    request = RequestFactory().post("/x", REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="curl/8")
    request.request_id = "req-42"  # type: ignore[attr-defined]

    event = audit_record(
        action="accounts.user.deactivated",
        actor=actor,
        target=target,
        request=request,
        changes={"is_active": [True, False]},
        metadata={"reason": "spam"},
    )

    event = AuditEvent.objects.get(pk=event.pk)
    assert (event.action, event.outcome) == ("accounts.user.deactivated", "success")
    assert (event.actor_type, event.actor_id, event.actor_label) == ("user", str(actor.pk), "ada")
    assert (event.target_type, event.target_id, event.target_label) == (
        "accounts.user",
        str(target.pk),
        "bob",
    )
    assert (event.ip_address, event.user_agent, event.request_id) == ("203.0.113.7", "curl/8", "req-42")
    assert event.changes == {"is_active": [True, False]}
    assert event.metadata == {"reason": "spam"}
    assert event.previous_hash == AuditEvent.GENESIS_HASH
    key = chain_keys().signing
    assert event.key_id == key.key_id
    assert event.hash == event_mac(key=key, previous_hash=event.previous_hash, fields=event.chained_fields())


def test_anonymous_and_system_actors() -> None:
    anonymous = audit_record(
        action="accounts.user.sign_in_failed", outcome="failure", request=RequestFactory().get("/")
    )
    system = audit_record(action="audit.events.pruned")

    assert (anonymous.actor_type, anonymous.outcome) == ("anonymous", "failure")
    assert (system.actor_type, system.actor_label) == ("system", "system")


def test_secrets_never_enter_the_trail() -> None:
    event = audit_record(
        action="accounts.user.password_changed",
        changes={"password": ["old-hash", "new-hash"], "profile": {"api_key": "k-1", "name": "x"}},
        metadata={"refresh_token": "r-1", "attempts": [{"otp": "123456"}]},
    )

    assert event.changes == {"password": "[REDACTED]", "profile": {"api_key": "[REDACTED]", "name": "x"}}
    assert event.metadata == {"refresh_token": "[REDACTED]", "attempts": [{"otp": "[REDACTED]"}]}


def failing_change() -> None:
    with transaction.atomic():
        audit_record(action="accounts.user.deleted")
        raise RuntimeError("the change failed")


def test_an_event_rolls_back_with_the_change_it_records() -> None:
    with pytest.raises(RuntimeError):
        failing_change()

    assert not AuditEvent.objects.exists()


def test_each_event_chains_to_the_one_before() -> None:
    first = audit_record(action="a.first")
    second = audit_record(action="a.second")

    assert second.previous_hash == first.hash
    assert audit_chain_verify().checked == 2


def test_the_orm_refuses_to_change_or_delete_events() -> None:
    event = audit_record(action="a.event")
    event.action = "a.forged"

    with pytest.raises(AuditTrailIsAppendOnly):
        event.save()
    with pytest.raises(AuditTrailIsAppendOnly):
        event.delete()
    with pytest.raises(AuditTrailIsAppendOnly):
        AuditEvent.objects.filter(pk=event.pk).update(action="a.forged")
    with pytest.raises(AuditTrailIsAppendOnly):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "a.event"


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_auditevent SET action = 'a.forged'", "DELETE FROM audit_auditevent"],
)
def test_the_database_refuses_to_change_or_delete_events(require_postgresql: None, statement: str) -> None:
    audit_record(action="a.event")

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)

    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["a.event"]


def test_audit_verify_reports_the_first_tampered_event() -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(5)]
    output = io.StringIO()
    call_command("audit_verify", stdout=output)
    assert output.getvalue().splitlines() == [
        "Audit chain intact: 5 events verified.",
        f"Head: {events[4].pk}:{events[4].hash} (key {chain_keys().signing.key_id}).",
    ]

    tamper("UPDATE audit_auditevent SET target_label = %s WHERE id = %s", ["forged", events[2].pk])

    with pytest.raises(CommandError) as caught:
        call_command("audit_verify")
    assert f"broken at event {events[2].event_id}" in str(caught.value)
    assert "content does not match its MAC" in str(caught.value)
    assert "2 events before it are intact" in str(caught.value)


def test_audit_verify_notices_a_removed_event() -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(4)]

    tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])

    report = audit_chain_verify()
    assert report.broken_event == events[2]
    assert report.reason == "it does not follow the event before it"


@pytest.mark.django_db(transaction=True)
def test_the_chain_stays_correct_under_concurrent_writers(require_postgresql: None) -> None:
    def write(number: int) -> None:
        try:
            for index in range(10):
                audit_record(action=f"concurrent.writer_{number}", metadata={"index": index})
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    report = audit_chain_verify()
    assert report.is_intact
    assert report.checked == 60


@pytest.mark.django_db(transaction=True)
def test_retention_prunes_old_events_and_keeps_the_rest_verifiable() -> None:
    old = [audit_record(action=f"a.old_{number}") for number in range(5)]
    recent = [audit_record(action=f"a.recent_{number}") for number in range(3)]
    cutoff = timezone.now()
    backdate = "UPDATE audit_auditevent SET occurred_at = %s WHERE id <= %s"
    tamper(backdate, [cutoff - timedelta(days=400), old[-1].pk])  # history, not tampering: no re-MAC needed

    deleted = audit_events_prune(older_than=cutoff - timedelta(days=365), batch_size=2)

    assert deleted == 5
    remaining = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert remaining == [event.action for event in recent] + ["audit.events.pruned"]
    pruned = AuditEvent.objects.get(action="audit.events.pruned")
    assert pruned.metadata == {
        "deleted": 5,
        "older_than": (cutoff - timedelta(days=365)).isoformat(),
        "through_id": old[-1].pk,
        "through_hash": old[-1].hash,
    }
    # One keyed checkpoint per batch, the last one at the boundary the remaining chain starts from.
    checkpoints = list(
        AuditChainCheckpoint.objects.order_by("id").values_list(
            "kind", "through_id", "through_hash", "deleted"
        )
    )
    assert checkpoints == [
        ("pruned", old[1].pk, old[1].hash, 2),
        ("pruned", old[3].pk, old[3].hash, 2),
        ("pruned", old[4].pk, old[4].hash, 1),
    ]
    report = audit_chain_verify()
    assert (report.is_intact, report.checked, report.first_seq) == (True, 4, recent[0].pk)
    assert audit_events_prune(older_than=cutoff - timedelta(days=365)) == 0
    assert AuditChainCheckpoint.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_retention_keeps_the_chain_a_prefix_when_times_are_out_of_order() -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(4)]
    # The second event's time was taken before it waited for the chain: it is younger than the third.
    old = timezone.now() - timedelta(days=400)
    tamper("UPDATE audit_auditevent SET occurred_at = %s WHERE id <> %s", [old, events[1].pk])

    assert audit_events_prune(older_than=timezone.now() - timedelta(days=365)) == 1

    assert list(AuditEvent.objects.order_by("id").values_list("id", flat=True))[:3] == [
        events[1].pk,
        events[2].pk,
        events[3].pk,
    ]
    checkpoint = AuditChainCheckpoint.objects.get()
    assert (checkpoint.through_id, checkpoint.through_hash) == (events[0].pk, events[1].previous_hash)


@pytest.mark.django_db(transaction=True)
def test_an_event_after_everything_was_pruned_continues_from_the_checkpoint() -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(3)]
    tamper("UPDATE audit_auditevent SET occurred_at = %s", [timezone.now() - timedelta(days=400)])

    assert audit_events_prune(older_than=timezone.now() - timedelta(days=365)) == 3

    (pruned,) = AuditEvent.objects.all()
    assert pruned.previous_hash == events[2].hash
    assert audit_chain_verify().is_intact


def test_retention_never_prunes_events_younger_than_a_day() -> None:
    audit_record(action="a.event")

    with pytest.raises(ValueError, match="younger than a day"):
        audit_events_prune(older_than=timezone.now() - timedelta(hours=23))

    assert AuditEvent.objects.count() == 1
