from __future__ import annotations

from django.core.exceptions import FieldDoesNotExist, ValidationError
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination

from apps.core.errors import ApplicationError


def invalid_cursor(reason: str) -> ApplicationError:
    return ApplicationError(f"cursor: {reason}; use the next/previous links of a listing",
                            code="invalid_cursor", details={"cursor": reason})


class NewestFirstCursorPagination(CursorPagination):
    """Cursor pagination: stable under inserts, O(1) per page on big tables.

    A cursor is client input: one that does not decode, or whose position is not a value of the
    ordering field (a crafted ``p=not-a-date`` reached the database filter and answered 500), is
    refused with 400 ``invalid_cursor``.
    """

    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500
    ordering = "-created_at"

    def paginate_queryset(self, queryset, request, view=None):  # type: ignore[no-untyped-def]
        self._model = queryset.model  # decode_cursor checks the position against its field
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request) -> Cursor | None:  # type: ignore[no-untyped-def]
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise invalid_cursor("not a cursor this API issued") from None
        if cursor is None or cursor.position is None:
            return cursor
        name = self.ordering[0].lstrip("-")
        try:
            field = self._model._meta.get_field(name)
            # to_python parses, run_validators applies the database's integer range.
            field.run_validators(field.to_python(cursor.position))
        except (FieldDoesNotExist, ValidationError, ValueError, TypeError, OverflowError):
            raise invalid_cursor(f"position is not a valid {name}") from None
        return cursor
