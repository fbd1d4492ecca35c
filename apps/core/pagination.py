from rest_framework.pagination import CursorPagination


class NewestFirstCursorPagination(CursorPagination):
    """Cursor pagination: stable under inserts, O(1) per page on big tables."""

    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500
    ordering = "-created_at"
