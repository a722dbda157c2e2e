"""The audit trail over HTTP: staff list, filter, page, read and export; users read their own."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import UserFactory
from audit.models import AuditEvent, AuditVerification
from audit.services import audit_events_prune, audit_record
from audit.tests.tampering import tamper

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/audit-events/"
EXPORT_URL = "/api/v1/audit-events/export/"
ME_URL = "/api/v1/users/me/audit-events/"
VERIFY_URL = "/api/v1/audit-events/verify/"


def record(
    action: str = "accounts.user.signed_in",
    *,
    outcome: str = "success",
    actor: Any = None,
    target: Any = None,
    ip_address: str = "203.0.113.1",
    request_id: str = "req-1",
    user_agent: str = "curl/8",
    changes: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    in_a_request: bool = True,
) -> AuditEvent:
    """An event recorded while serving a request (anonymous unless an actor is given), or by the system."""
    request = RequestFactory().get("/", REMOTE_ADDR=ip_address, HTTP_USER_AGENT=user_agent)
    request.request_id = request_id  # type: ignore[attr-defined]
    return audit_record(
        action=action,
        outcome=outcome,
        actor=actor,
        target=target,
        request=request if in_a_request else None,
        changes=changes,
        metadata=metadata,
    )


def timestamp(event: AuditEvent) -> str:
    return event.occurred_at.isoformat().replace("+00:00", "Z")


def as_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": str(event.event_id),
        "occurred_at": timestamp(event),
        "action": event.action,
        "outcome": event.outcome,
        "actor": {"type": event.actor_type, "id": event.actor_id, "label": event.actor_label},
        "target": {"type": event.target_type, "id": event.target_id, "label": event.target_label},
        "ip_address": event.ip_address,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "changes": event.changes,
        "metadata": event.metadata,
        "previous_hash": event.previous_hash,
        "hash": event.hash,
    }


def listed_ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


class DemoClient:
    client_id = "client-123"

    def __str__(self) -> str:
        return "Demo app"


@pytest.fixture
def alice() -> User:
    return UserFactory.create(username="alice")


@pytest.fixture
def bob() -> User:
    return UserFactory.create(username="bob")


@pytest.fixture
def trail(alice: User, bob: User) -> dict[str, AuditEvent]:
    """Five events, oldest first, that differ in every filtered column."""
    events = {
        "alice_signs_in": record("accounts.user.signed_in", actor=alice, target=alice, request_id="req-a"),
        "bob_fails": record(
            "accounts.user.sign_in_failed",
            outcome="failure",
            target=bob,
            ip_address="198.51.100.9",
            request_id="req-b",
        ),
        "alice_deactivates_bob": record(
            "accounts.user.deactivated",
            actor=alice,
            target=bob,
            ip_address="2001:db8::1",
            request_id="req-c",
            changes={"is_active": [True, False]},
        ),
        "client_gets_token": record(
            "oauth.token.issued",
            actor=DemoClient(),
            target=("oauth_provider.grant", "grant-9", "Grant 9"),
            request_id="req-d",
        ),
        "system_prunes": record("audit.events.pruned", metadata={"deleted": 3}, in_a_request=False),
    }
    times = [event.occurred_at for event in events.values()]
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    return events


def ids(trail: dict[str, AuditEvent], *names: str) -> list[str]:
    return [str(trail[name].event_id) for name in names]


def test_staff_lists_events_newest_first_in_the_api_shape(
    staff_client: APIClient, trail: dict[str, AuditEvent]
) -> None:
    response = staff_client.get(LIST_URL)

    assert response.status_code == 200
    body = response.json()
    assert (body["next"], body["previous"]) == (None, None)
    assert body["results"] == [as_json(event) for event in reversed(trail.values())]
    assert body["results"][2] == {
        "id": str(trail["alice_deactivates_bob"].event_id),
        "occurred_at": timestamp(trail["alice_deactivates_bob"]),
        "action": "accounts.user.deactivated",
        "outcome": "success",
        "actor": {"type": "user", "id": str(trail["alice_deactivates_bob"].actor_id), "label": "alice"},
        "target": {"type": "accounts.user", "id": trail["alice_deactivates_bob"].target_id, "label": "bob"},
        "ip_address": "2001:db8::1",
        "user_agent": "curl/8",
        "request_id": "req-c",
        "changes": {"is_active": [True, False]},
        "metadata": {},
        "previous_hash": trail["bob_fails"].hash,
        "hash": trail["alice_deactivates_bob"].hash,
    }


FILTERS: list[tuple[str, Callable[[dict[str, AuditEvent], User, User], dict[str, str]], list[str]]] = [
    ("action", lambda t, a, b: {"action": "accounts.user.deactivated"}, ["alice_deactivates_bob"]),
    ("outcome", lambda t, a, b: {"outcome": "failure"}, ["bob_fails"]),
    (
        "actor_type",
        lambda t, a, b: {"actor_type": "user"},
        ["alice_deactivates_bob", "alice_signs_in"],
    ),
    (
        "actor",
        lambda t, a, b: {"actor_type": "user", "actor_id": str(a.pk)},
        ["alice_deactivates_bob", "alice_signs_in"],
    ),
    ("actor_id alone", lambda t, a, b: {"actor_id": str(a.pk)}, ["alice_deactivates_bob", "alice_signs_in"]),
    ("system actor", lambda t, a, b: {"actor_type": "system"}, ["system_prunes"]),
    ("anonymous actor", lambda t, a, b: {"actor_type": "anonymous"}, ["bob_fails"]),
    (
        "client actor",
        lambda t, a, b: {"actor_type": "client", "actor_id": "client-123"},
        ["client_gets_token"],
    ),
    ("client ID alone", lambda t, a, b: {"actor_id": "client-123"}, ["client_gets_token"]),
    (
        "target",
        lambda t, a, b: {"target_type": "accounts.user", "target_id": str(b.pk)},
        ["alice_deactivates_bob", "bob_fails"],
    ),
    ("target_id alone", lambda t, a, b: {"target_id": "grant-9"}, ["client_gets_token"]),
    ("target_id alone, no such ID", lambda t, a, b: {"target_id": "client-123"}, []),
    (
        "target_type",
        lambda t, a, b: {"target_type": "accounts.user"},
        ["alice_deactivates_bob", "bob_fails", "alice_signs_in"],
    ),
    ("request_id", lambda t, a, b: {"request_id": "req-b"}, ["bob_fails"]),
    ("ip_address v4", lambda t, a, b: {"ip_address": "198.51.100.9"}, ["bob_fails"]),
    ("ip_address v6", lambda t, a, b: {"ip_address": "2001:DB8:0::1"}, ["alice_deactivates_bob"]),
    (
        "occurred_after (inclusive)",
        lambda t, a, b: {"occurred_after": timestamp(t["client_gets_token"])},
        ["system_prunes", "client_gets_token"],
    ),
    (
        "occurred_before (exclusive)",
        lambda t, a, b: {"occurred_before": timestamp(t["bob_fails"])},
        ["alice_signs_in"],
    ),
    (
        "time range",
        lambda t, a, b: {
            "occurred_after": timestamp(t["bob_fails"]),
            "occurred_before": timestamp(t["client_gets_token"]),
        },
        ["alice_deactivates_bob", "bob_fails"],
    ),
    (
        "several at once",
        lambda t, a, b: {"actor_id": str(a.pk), "target_id": str(b.pk), "outcome": "success"},
        ["alice_deactivates_bob"],
    ),
    ("nothing matches", lambda t, a, b: {"action": "no.such.action"}, []),
]


@pytest.mark.parametrize(("params", "expected"), [(f[1], f[2]) for f in FILTERS], ids=[f[0] for f in FILTERS])
def test_staff_filters_events(
    staff_client: APIClient,
    trail: dict[str, AuditEvent],
    alice: User,
    bob: User,
    params: Callable[[dict[str, AuditEvent], User, User], dict[str, str]],
    expected: list[str],
) -> None:
    response = staff_client.get(LIST_URL, params(trail, alice, bob))

    assert listed_ids(response) == ids(trail, *expected)


@pytest.mark.parametrize(
    ("params", "code", "detail"),
    [
        (
            {"outcome": "maybe"},
            "invalid_choice",
            "Select a valid choice. maybe is not one of the available choices.",
        ),
        (
            {"actor_type": "robot"},
            "invalid_choice",
            "Select a valid choice. robot is not one of the available choices.",
        ),
        ({"occurred_after": "yesterday"}, "invalid", "Enter a valid date/time."),
        ({"occurred_before": "2026-13-01T00:00:00Z"}, "invalid", "Enter a valid date/time."),
        ({"ip_address": "999.1.1.1"}, "invalid", "Enter a valid IPv4 or IPv6 address."),
        ({"actor_id": "x" * 65}, "max_length", "Ensure this value has at most 64 characters (it has 65)."),
    ],
)
def test_an_invalid_filter_is_a_400_naming_the_filter(
    staff_client: APIClient, params: dict[str, str], code: str, detail: str
) -> None:
    response = staff_client.get(LIST_URL, params)

    assert response.status_code == 400
    assert response.json() == {
        "type": "validation_error",
        "errors": [{"code": code, "detail": detail, "attr": next(iter(params))}],
    }


def test_cursor_pages_walk_the_trail_newest_first(
    staff_client: APIClient, trail: dict[str, AuditEvent]
) -> None:
    first = staff_client.get(LIST_URL, {"page_size": 2}).json()
    second = staff_client.get(first["next"]).json()
    third = staff_client.get(second["next"]).json()
    back = staff_client.get(third["previous"]).json()

    assert [item["id"] for item in first["results"]] == ids(trail, "system_prunes", "client_gets_token")
    assert [item["id"] for item in second["results"]] == ids(trail, "alice_deactivates_bob", "bob_fails")
    assert [item["id"] for item in third["results"]] == ids(trail, "alice_signs_in")
    assert (first["previous"], third["next"]) == (None, None)
    assert back == second


def test_a_page_taken_while_events_arrive_stays_put(
    staff_client: APIClient, trail: dict[str, AuditEvent]
) -> None:
    first = staff_client.get(LIST_URL, {"page_size": 2}).json()
    record("accounts.user.signed_out")

    second = staff_client.get(first["next"]).json()

    assert [item["id"] for item in second["results"]] == ids(trail, "alice_deactivates_bob", "bob_fails")


def test_cursor_pages_keep_the_filters(staff_client: APIClient, trail: dict[str, AuditEvent]) -> None:
    first = staff_client.get(LIST_URL, {"target_type": "accounts.user", "page_size": "2"}).json()
    second = staff_client.get(first["next"]).json()

    assert [item["id"] for item in first["results"]] == ids(trail, "alice_deactivates_bob", "bob_fails")
    assert [item["id"] for item in second["results"]] == ids(trail, "alice_signs_in")
    assert second["next"] is None


def test_page_size_is_capped_at_200(staff_client: APIClient) -> None:
    AuditEvent.objects.bulk_create(
        AuditEvent(
            action="bulk.test",
            actor_type="system",
            previous_hash="0" * 64,
            hash=f"{n:064x}",
            key_id="0bad0bad",
        )
        for n in range(201)
    )

    body = staff_client.get(LIST_URL, {"page_size": 500}).json()

    assert len(body["results"]) == 200
    assert body["next"] is not None


def test_an_unknown_cursor_is_a_404_in_the_error_shape(staff_client: APIClient) -> None:
    response = staff_client.get(LIST_URL, {"cursor": "not-a-cursor"})

    assert response.status_code == 404
    assert response.json() == {
        "type": "client_error",
        "errors": [{"code": "not_found", "detail": "Invalid cursor", "attr": None}],
    }


@pytest.mark.parametrize("url", [LIST_URL, EXPORT_URL, f"{LIST_URL}{uuid.uuid4()}/"])
def test_anonymous_callers_get_401(api_client: APIClient, url: str) -> None:
    response = api_client.get(url)

    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "not_authenticated"


@pytest.mark.parametrize("path", ["", "export/", "{event_id}/"])
def test_signed_in_users_who_are_not_staff_get_403(
    user_client: APIClient, trail: dict[str, AuditEvent], path: str
) -> None:
    url = LIST_URL + path.format(event_id=trail["alice_signs_in"].event_id)

    response = user_client.get(url)

    assert response.status_code == 403
    assert response.json() == {
        "type": "client_error",
        "errors": [
            {
                "code": "permission_denied",
                "detail": "You do not have permission to perform this action.",
                "attr": None,
            }
        ],
    }


def test_staff_read_one_event_by_its_event_id(staff_client: APIClient, trail: dict[str, AuditEvent]) -> None:
    event = trail["client_gets_token"]

    response = staff_client.get(f"{LIST_URL}{event.event_id}/")

    assert response.status_code == 200
    assert response.json() == as_json(event)
    assert response.json()["actor"] == {"type": "client", "id": "client-123", "label": "Demo app"}


@pytest.mark.parametrize("event_id", [str(uuid.uuid4()), "1", "-" * 36])
def test_an_unknown_event_id_is_a_404(
    staff_client: APIClient, trail: dict[str, AuditEvent], event_id: str
) -> None:
    response = staff_client.get(f"{LIST_URL}{event_id}/")

    assert response.status_code == 404
    assert response.json()["type"] == "client_error"
    assert response.json()["errors"][0]["code"] == "not_found"


def test_the_api_offers_no_way_to_change_events(
    staff_client: APIClient, trail: dict[str, AuditEvent]
) -> None:
    event = trail["alice_signs_in"]
    detail_url = f"{LIST_URL}{event.event_id}/"

    responses = [
        staff_client.post(LIST_URL, {"action": "forged"}),
        staff_client.patch(detail_url, {"action": "forged"}),
        staff_client.put(detail_url, {"action": "forged"}),
        staff_client.delete(detail_url),
    ]

    assert [response.status_code for response in responses] == [405, 405, 405, 405]
    assert AuditEvent.objects.get(pk=event.pk).action == "accounts.user.signed_in"
    assert AuditEvent.objects.count() == 5


def streamed(response: Any) -> str:
    assert response.status_code == 200, response.content
    assert response.streaming is True
    return b"".join(response.streaming_content).decode()


def csv_row(event: AuditEvent) -> list[str]:
    return [
        str(event.event_id),
        timestamp(event),
        event.action,
        event.outcome,
        event.actor_type,
        event.actor_id,
        event.actor_label,
        event.target_type,
        event.target_id,
        event.target_label,
        event.ip_address or "",
        event.user_agent,
        event.request_id,
        json.dumps(event.changes, separators=(",", ":")),
        json.dumps(event.metadata, separators=(",", ":")),
        event.previous_hash,
        event.hash,
    ]


CSV_HEADER = [
    "id",
    "occurred_at",
    "action",
    "outcome",
    "actor_type",
    "actor_id",
    "actor_label",
    "target_type",
    "target_id",
    "target_label",
    "ip_address",
    "user_agent",
    "request_id",
    "changes",
    "metadata",
    "previous_hash",
    "hash",
]


def test_staff_export_the_filtered_trail_as_streamed_csv(
    staff_client: APIClient, trail: dict[str, AuditEvent], bob: User
) -> None:
    response = staff_client.get(
        EXPORT_URL, {"as": "csv", "target_type": "accounts.user", "target_id": str(bob.pk)}
    )

    content = streamed(response)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="audit-events-\d{8}T\d{6}Z\.csv"', response["Content-Disposition"]
    )
    assert list(csv.reader(io.StringIO(content))) == [
        CSV_HEADER,
        csv_row(trail["alice_deactivates_bob"]),
        csv_row(trail["bob_fails"]),
    ]
    assert '"{""is_active"":[true,false]}",{},' in content


def test_csv_export_is_the_default_and_ignores_the_accept_header(
    staff_client: APIClient, trail: dict[str, AuditEvent]
) -> None:
    response = staff_client.get(EXPORT_URL, HTTP_ACCEPT="text/csv")

    rows = list(csv.reader(io.StringIO(streamed(response))))
    assert rows == [CSV_HEADER, *(csv_row(event) for event in reversed(trail.values()))]


def test_csv_export_defuses_spreadsheet_formulas(staff_client: APIClient) -> None:
    event = record(
        "accounts.user.signed_in", user_agent='=HYPERLINK("https://evil.example")', request_id="-1"
    )

    rows = list(csv.reader(io.StringIO(streamed(staff_client.get(EXPORT_URL)))))

    assert rows[1][11:13] == ['\'=HYPERLINK("https://evil.example")', "'-1"]
    assert AuditEvent.objects.get(pk=event.pk).user_agent == '=HYPERLINK("https://evil.example")'


def test_staff_export_json_lines_in_the_api_shape(
    staff_client: APIClient, trail: dict[str, AuditEvent]
) -> None:
    response = staff_client.get(
        EXPORT_URL, {"as": "jsonl", "occurred_after": timestamp(trail["client_gets_token"])}
    )

    content = streamed(response)
    assert response["Content-Type"] == "application/jsonl; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="audit-events-\d{8}T\d{6}Z\.jsonl"', response["Content-Disposition"]
    )
    assert content.endswith("\n")
    assert [json.loads(line) for line in content.splitlines()] == [
        as_json(trail["system_prunes"]),
        as_json(trail["client_gets_token"]),
    ]
    listed = staff_client.get(
        LIST_URL, {"occurred_after": timestamp(trail["client_gets_token"]), "action": "audit.events.exported"}
    )
    (export_event,) = listed.json()["results"]
    listed = staff_client.get(LIST_URL, {"occurred_after": timestamp(trail["client_gets_token"])}).json()[
        "results"
    ]
    assert [json.loads(line) for line in content.splitlines()] == [
        item for item in listed if item["id"] != export_event["id"]
    ]


def test_an_export_is_itself_audited_and_not_part_of_its_own_file(
    staff_client: APIClient, staff_user: User, trail: dict[str, AuditEvent], bob: User
) -> None:
    newest = AuditEvent.objects.order_by("-id").first()
    assert newest is not None

    response = staff_client.get(
        EXPORT_URL, {"as": "jsonl", "target_id": str(bob.pk)}, REMOTE_ADDR="198.51.100.9"
    )
    exported = [json.loads(line)["id"] for line in streamed(response).splitlines()]

    event = AuditEvent.objects.get(action="audit.events.exported")
    assert str(event.event_id) not in exported
    assert (event.actor_type, event.actor_id, event.outcome) == ("user", str(staff_user.pk), "success")
    assert event.ip_address == "198.51.100.9"
    assert event.metadata == {"format": "jsonl", "filters": {"target_id": str(bob.pk)}, "up_to_id": newest.pk}
    # A refused export changes nothing and records nothing.
    assert staff_client.get(EXPORT_URL, {"as": "xml"}).status_code == 400
    assert AuditEvent.objects.filter(action="audit.events.exported").count() == 1


def test_export_of_nothing_is_a_header_or_an_empty_file(staff_client: APIClient) -> None:
    assert streamed(staff_client.get(EXPORT_URL, {"as": "csv"})) == ",".join(CSV_HEADER) + "\r\n"
    assert streamed(staff_client.get(EXPORT_URL, {"as": "jsonl", "action": "accounts.user.signed_in"})) == ""


@pytest.mark.parametrize(
    ("params", "attr", "code"),
    [
        ({"as": "xml"}, "as", "invalid_choice"),
        ({"as": "csv", "outcome": "maybe"}, "outcome", "invalid_choice"),
    ],
)
def test_export_refuses_bad_parameters_with_a_400(
    staff_client: APIClient, params: dict[str, str], attr: str, code: str
) -> None:
    response = staff_client.get(EXPORT_URL, params)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["type"] == "validation_error"
    assert [(error["attr"], error["code"]) for error in response.json()["errors"]] == [(attr, code)]


def test_users_see_only_events_about_themselves(
    api_client: APIClient, trail: dict[str, AuditEvent], alice: User, bob: User
) -> None:
    api_client.force_authenticate(bob)

    response = api_client.get(ME_URL)

    assert response.status_code == 200
    assert response.json()["results"] == [
        as_json(trail["alice_deactivates_bob"]),
        as_json(trail["bob_fails"]),
    ]


def test_a_user_with_no_events_sees_an_empty_trail(
    user_client: APIClient, trail: dict[str, AuditEvent]
) -> None:
    response = user_client.get(ME_URL)

    assert response.status_code == 200
    assert response.json() == {"next": None, "previous": None, "results": []}


def test_own_events_come_in_cursor_pages(
    api_client: APIClient, trail: dict[str, AuditEvent], alice: User
) -> None:
    record("accounts.user.signed_in", actor=UserFactory.create())  # someone else's
    api_client.force_authenticate(alice)

    first = api_client.get(ME_URL, {"page_size": 1}).json()
    second = api_client.get(first["next"]).json()

    assert [item["id"] for item in first["results"]] == ids(trail, "alice_deactivates_bob")
    assert [item["id"] for item in second["results"]] == ids(trail, "alice_signs_in")
    assert second["next"] is None


def test_own_events_ignore_filters_that_would_reach_other_users(
    api_client: APIClient, trail: dict[str, AuditEvent], alice: User
) -> None:
    api_client.force_authenticate(alice)

    response = api_client.get(ME_URL, {"target_type": "oauth_provider.grant", "actor_type": "system"})

    assert listed_ids(response) == ids(trail, "alice_deactivates_bob", "alice_signs_in")


def test_anonymous_callers_have_no_own_events(api_client: APIClient) -> None:
    assert api_client.get(ME_URL).status_code == 401


def test_schema_documents_the_audit_endpoints(api_client: APIClient) -> None:
    schema = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    listing = schema["paths"]["/api/v1/audit-events/"]["get"]
    export = schema["paths"]["/api/v1/audit-events/export/"]["get"]
    assert {parameter["name"] for parameter in listing["parameters"]} == {
        "actor_type",
        "actor_id",
        "target_type",
        "target_id",
        "action",
        "outcome",
        "occurred_after",
        "occurred_before",
        "request_id",
        "ip_address",
        "cursor",
        "page_size",
    }
    assert set(export["responses"]["200"]["content"]) == {"text/csv", "application/jsonl"}
    assert "as" in {parameter["name"] for parameter in export["parameters"]}
    assert "/api/v1/users/me/audit-events/" in schema["paths"]


def verified_at(verification: AuditVerification) -> str:
    return verification.verified_at.isoformat().replace("+00:00", "Z")


def test_staff_verify_the_chain_then_only_what_is_new(
    staff_client: APIClient, staff_user: User, trail: dict[str, AuditEvent]
) -> None:
    oldest, newest = trail["alice_signs_in"], trail["system_prunes"]
    head = {"seq": newest.pk, "mac": newest.hash, "key_id": newest.key_id}

    response = staff_client.post(VERIFY_URL, {})

    assert response.status_code == 200
    first = AuditVerification.objects.get()
    assert response.json() == {
        "intact": True,
        "full": True,
        "checked": 5,
        "checked_from": oldest.pk,
        "checked_to": newest.pk,
        "broken_seq": None,
        "broken_event_id": None,
        "reason": "",
        "anchor": None,
        "head": head,
        "verified_at": verified_at(first),
    }
    assert (first.source, first.requested_by) == ("staff", str(staff_user.pk))
    # Nothing new since: the next verification walks nothing and ends where this one did.
    again = staff_client.post(VERIFY_URL, {})
    assert again.status_code == 200
    assert again.json() == {
        "intact": True,
        "full": False,
        "checked": 0,
        "checked_from": None,
        "checked_to": newest.pk,
        "broken_seq": None,
        "broken_event_id": None,
        "reason": "",
        "anchor": None,
        "head": head,
        "verified_at": verified_at(AuditVerification.objects.order_by("-id")[0]),
    }
    assert AuditEvent.objects.count() == 5  # verifying records a verification, not an event


def test_staff_see_where_and_why_the_chain_broke(
    staff_client: APIClient, trail: dict[str, AuditEvent]
) -> None:
    tampered, newest = trail["bob_fails"], trail["system_prunes"]
    tamper("UPDATE audit_auditevent SET ip_address = '192.0.2.1' WHERE id = %s", [tampered.pk])

    response = staff_client.post(VERIFY_URL, {"full": True})

    assert response.status_code == 200
    assert response.json() == {
        "intact": False,
        "full": True,
        "checked": 1,
        "checked_from": trail["alice_signs_in"].pk,
        "checked_to": trail["alice_signs_in"].pk,
        "broken_seq": tampered.pk,
        "broken_event_id": str(tampered.event_id),
        "reason": "content does not match its MAC",
        "anchor": None,
        "head": {"seq": newest.pk, "mac": newest.hash, "key_id": newest.key_id},
        "verified_at": verified_at(AuditVerification.objects.get()),
    }


def test_staff_verify_against_an_anchor(staff_client: APIClient, trail: dict[str, AuditEvent]) -> None:
    anchored = trail["client_gets_token"]
    anchor = f"{anchored.pk}:{anchored.hash}"
    assert staff_client.post(VERIFY_URL, {"anchor": anchor}).json()["intact"] is True
    tamper("DELETE FROM audit_auditevent WHERE id >= %s", [anchored.pk])

    response = staff_client.post(VERIFY_URL, {"anchor": anchor})

    assert response.status_code == 200
    remaining = trail["alice_deactivates_bob"]
    assert response.json() == {
        "intact": False,
        "full": True,
        "checked": 3,
        "checked_from": trail["alice_signs_in"].pk,
        "checked_to": remaining.pk,
        "broken_seq": anchored.pk,
        "broken_event_id": None,
        "reason": f"the anchored event is missing; the chain ends at #{remaining.pk}",
        "anchor": anchor,
        "head": {"seq": remaining.pk, "mac": remaining.hash, "key_id": remaining.key_id},
        "verified_at": verified_at(AuditVerification.objects.order_by("-id")[0]),
    }


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        ({"anchor": "12"}, "invalid", 'Give an anchor as "SEQ:MAC" (64 lowercase hex digits).'),
        ({"anchor": "12:" + "A" * 64}, "invalid", 'Give an anchor as "SEQ:MAC" (64 lowercase hex digits).'),
        ({"full": "maybe"}, "invalid", "Must be a valid boolean."),
    ],
)
def test_a_bad_verification_request_is_a_400(
    staff_client: APIClient, body: dict[str, str], code: str, detail: str
) -> None:
    response = staff_client.post(VERIFY_URL, body)

    assert response.status_code == 400
    assert response.json() == {
        "type": "validation_error",
        "errors": [{"code": code, "detail": detail, "attr": next(iter(body))}],
    }
    assert not AuditVerification.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_anchor_retention_has_pruned_is_a_400(staff_client: APIClient) -> None:
    events = [audit_record(action=f"a.event_{number}") for number in range(3)]
    tamper(
        "UPDATE audit_auditevent SET occurred_at = %s WHERE id <= %s",
        [timezone.now() - timedelta(days=400), events[1].pk],
    )
    audit_events_prune(older_than=timezone.now() - timedelta(days=365))

    response = staff_client.post(VERIFY_URL, {"anchor": f"{events[0].pk}:{events[0].hash}"})

    assert response.status_code == 400
    assert response.json() == {
        "type": "validation_error",
        "errors": [
            {
                "code": "anchor_pruned",
                "detail": f"Event #{events[0].pk} was pruned (the chain now starts after #{events[1].pk}): "
                "verify with a newer anchor.",
                "attr": "anchor",
            }
        ],
    }
    assert not AuditVerification.objects.exists()


def test_users_who_are_not_staff_cannot_verify_the_chain(user_client: APIClient) -> None:
    response = user_client.post(VERIFY_URL, {"full": True})

    assert response.status_code == 403
    assert response.json() == {
        "type": "client_error",
        "errors": [
            {
                "code": "permission_denied",
                "detail": "You do not have permission to perform this action.",
                "attr": None,
            }
        ],
    }
    assert not AuditVerification.objects.exists()


def test_anonymous_callers_cannot_verify_the_chain(api_client: APIClient) -> None:
    response = api_client.post(VERIFY_URL, {})

    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "not_authenticated"
    assert not AuditVerification.objects.exists()


def test_schema_documents_the_verification_endpoint(api_client: APIClient) -> None:
    schema = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    operation = schema["paths"]["/api/v1/audit-events/verify/"]["post"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AuditVerification"
    }
    assert {"400", "401", "403"} <= set(operation["responses"])
    assert set(schema["components"]["schemas"]["AuditVerification"]["properties"]) == {
        "intact",
        "full",
        "checked",
        "checked_from",
        "checked_to",
        "broken_seq",
        "broken_event_id",
        "reason",
        "anchor",
        "head",
        "verified_at",
    }
