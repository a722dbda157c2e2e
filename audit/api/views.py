"""The audit trail over HTTP: staff list, read and export events; nobody changes them."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, mixins, pagination, permissions, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from audit.api.serializers import (
    CSV_HEADER,
    EXPORT_COLUMNS,
    AuditEventSerializer,
    AuditVerificationCreateSerializer,
    AuditVerificationSerializer,
    audit_event_csv_row,
    audit_event_json_line,
)
from audit.filters import AuditEventFilter
from audit.models import AuditEvent, AuditEventQuerySet, AuditVerification
from audit.services import audit_record, audit_verification_create

EXPORT_CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8"}
EXPORT_CHUNK_SIZE = 2000  # rows fetched per round trip, and written per chunk of the response


class AuditEventCursorPagination(pagination.CursorPagination):
    """Keyset pagination on the chain order: no COUNT(*), no OFFSET, stable while events arrive."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class _LineBuffer:
    """A write-only file for csv.writer that hands back what it was given."""

    def write(self, line: str) -> str:
        return line


def _chunks(lines: Iterable[str], *, size: int) -> Iterator[str]:
    """Join lines into chunks of `size`, so a million rows are not a million socket writes."""
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= size:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)


def audit_events_csv(rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    writer = csv.writer(_LineBuffer())
    yield writer.writerow(CSV_HEADER)
    yield from _chunks((writer.writerow(audit_event_csv_row(row)) for row in rows), size=EXPORT_CHUNK_SIZE)


def audit_events_json_lines(rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    yield from _chunks((audit_event_json_line(row) for row in rows), size=EXPORT_CHUNK_SIZE)


class AuditEventViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[AuditEvent]
):
    """The audit trail, newest first. Staff only; every filter is served by an index."""

    serializer_class = AuditEventSerializer
    permission_classes = [permissions.IsAdminUser]
    pagination_class = AuditEventCursorPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = AuditEventFilter
    lookup_field = "event_id"
    lookup_value_regex = "[0-9a-f-]{36}"
    # Staff tooling: no OAuth scope reads the audit trail (accounts.authentication).
    required_scopes: dict[str, list[str]] = {}

    def get_queryset(self) -> AuditEventQuerySet:
        return AuditEvent.objects.order_by("-id")

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[BaseRenderer, str]:
        # The export answers CSV or JSON lines whatever Accept says (a client asking for text/csv
        # must not get 406); its errors are JSON.
        return super().perform_content_negotiation(request, force=force or self.action == "export")

    @extend_schema(
        summary="Export audit events as CSV or JSON lines",
        description=(
            "Takes the list's filters and streams every matching event, newest first, as a file "
            "download (`Content-Disposition: attachment`). CSV has one column per field, "
            "`changes` and `metadata` as JSON, and cells a spreadsheet would run as a formula "
            "prefixed with `'`; JSON lines have the list's shape, one event per line. The file is a "
            "snapshot of the trail when asked; the export itself is recorded as "
            "`audit.events.exported`."
        ),
        parameters=[
            OpenApiParameter(
                "as",
                OpenApiTypes.STR,
                enum=list(EXPORT_CONTENT_TYPES),
                default="csv",
                description="File format.",
            )
        ],
        filters=True,
        responses={(200, "text/csv"): OpenApiTypes.BINARY, (200, "application/jsonl"): OpenApiTypes.BINARY},
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def export(self, request: Request) -> StreamingHttpResponse:
        export_format = request.query_params.get("as", "csv")
        if export_format not in EXPORT_CONTENT_TYPES:
            raise exceptions.ValidationError(
                {"as": [exceptions.ErrorDetail('Choose "csv" or "jsonl".', code="invalid_choice")]}
            )
        queryset = self.filter_queryset(self.get_queryset())  # a bad filter is a 400 before anything
        # The export is a snapshot of the trail as it stood when asked: rows arriving while it
        # streams (its own event first) are left out.
        newest_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        audit_record(
            action="audit.events.exported",
            request=request,
            metadata={
                "format": export_format,
                "filters": {key: value for key, value in request.query_params.items() if key != "as"},
                "up_to_id": newest_id,
            },
        )
        rows = (
            queryset.filter(id__lte=newest_id)
            .values_list(*EXPORT_COLUMNS)
            .iterator(chunk_size=EXPORT_CHUNK_SIZE)  # a server-side cursor on PostgreSQL
        )
        content = audit_events_csv(rows) if export_format == "csv" else audit_events_json_lines(rows)
        response = StreamingHttpResponse(content, content_type=EXPORT_CONTENT_TYPES[export_format])
        filename = f"audit-events-{timezone.now():%Y%m%dT%H%M%SZ}.{export_format}"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    @extend_schema(
        summary="Verify the audit chain",
        description=(
            "Checks the keyed chain and records the result. By default only the events since the "
            "last verification (the scheduled job runs every 5 minutes), from where it ended; with "
            "`full`, the whole chain from its retained start; with `anchor` (the `SEQ:MAC` the anchor "
            "job logged), also that the anchored event is still there with that MAC, which proves "
            "no event up to it was removed. A full walk reads every event: expect about a second per "
            "100,000. A broken chain answers 200 with `intact: false`, the first broken position "
            "and the reason, and is logged at ERROR. An anchor whose event retention has pruned is a "
            "400 (`anchor_pruned`)."
        ),
        request=AuditVerificationCreateSerializer,
        responses={200: AuditVerificationSerializer},
    )
    @action(detail=False, methods=["post"], pagination_class=None, filter_backends=[])
    def verify(self, request: Request) -> Response:
        serializer = AuditVerificationCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        verification = audit_verification_create(
            source=AuditVerification.Source.STAFF,
            full=serializer.validated_data["full"],
            anchor=serializer.validated_data.get("anchor"),
            requested_by=str(request.user.pk),
        )
        return Response(AuditVerificationSerializer(verification).data)


class MyAuditEventListView(generics.ListAPIView[AuditEvent]):
    """Events the caller did or that were done to them, newest first."""

    serializer_class = AuditEventSerializer
    permission_classes = [permissions.IsAuthenticated]
    pagination_class = AuditEventCursorPagination
    # First-party only: no OAuth scope reads the caller's trail (accounts.authentication).
    required_scopes: dict[str, list[str]] = {}

    def get_queryset(self) -> AuditEventQuerySet:
        return AuditEvent.objects.about_user(self.request.user.pk).order_by("-id")

    @extend_schema(summary="The caller's audit trail")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        return super().get(request, *args, **kwargs)
