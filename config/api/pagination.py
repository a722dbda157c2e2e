"""Default pagination for API lists."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from rest_framework import pagination


class FullPagePaginator(Paginator):
    """Always asks the database for a whole page (`LIMIT page_size`), even when the count says fewer
    rows remain.

    Django's paginator trims the last page's LIMIT to the rows left; with one match that is
    `LIMIT 1`, and PostgreSQL then expects to meet a match soon on the ordering index and walks it
    row by row, instead of using the search index (bench/users_list.py: 85 ms against 1.3 ms).
    """

    def page(self, number: Any) -> Page[Any]:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return Page(self.object_list[bottom : bottom + self.per_page], number, self)


class PageNumberPagination(pagination.PageNumberPagination):
    """Page-number pagination with a client-chosen page size, capped.

    Lists that can grow to millions of rows (audit events, tokens) use cursor pagination instead.
    """

    django_paginator_class = FullPagePaginator
    page_size_query_param = "page_size"
    max_page_size = 200


class CursorPagination(pagination.CursorPagination):
    """Keyset pagination for very large, time-ordered lists: no COUNT(*), stable under inserts."""

    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-created_at"
