"""Default pagination for API lists."""

from __future__ import annotations

from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """Page-number pagination with a client-chosen page size, capped.

    Lists that can grow to millions of rows (audit events, tokens) use cursor pagination instead.
    """

    page_size_query_param = "page_size"
    max_page_size = 200


class CursorPagination(pagination.CursorPagination):
    """Keyset pagination for very large, time-ordered lists: no COUNT(*), stable under inserts."""

    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-created_at"
