"""Pagination styles, registered by name (`paginate.style` in a stream).

Each paginator turns the first `Call` into the next one from the page just read, or returns
None when the stream is done. A stream ends only on a positive signal: a response with no
content (204), the stream's `stop_when` expression, or the style's own end (no cursor, no next
URL, `more` false, a short page). A page whose records are missing while the style says more
pages follow is an error, not the end: it is how a corrupt or foreign response would otherwise
silently cut a stream short.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urljoin, urlsplit

from engine.spec import PaginationSpec
from engine.transport import Call

# Empty pages in a row that still say "more follows" before we call it a loop.
MAX_EMPTY_PAGES = 100


@dataclass
class Page:
    body: Any
    records: list[Any]
    number: int  # 1-based count of pages read so far in this stream
    records_missing: bool = False  # the body has nothing at the records path


class PaginationError(RuntimeError):
    pass


def read_page(body: Any, records_at: Callable[[Any], Any], number: int) -> Page:
    """The page in a response body: its records, or a note that they are missing."""
    if body is None:
        return Page(None, [], number)
    records = records_at(body)
    if records is None:
        return Page(body, [], number, records_missing=True)
    if not isinstance(records, list):
        raise PaginationError(f"the records in the response are a {type(records).__name__}, "
                              f"not a list")
    return Page(body, records, number)


class Paginator:
    def __init__(self, spec: PaginationSpec):
        self.options = spec.options
        self.get = spec.getters
        self._empty_pages = 0

    def first(self, call: Call) -> Call:
        return call

    def next(self, call: Call, page: Page) -> Call | None:
        if page.body is None:  # no content: nothing more to read
            return None
        stop_when = self.get.get("stop_when")
        if stop_when is not None and stop_when(page.body):
            return None
        following = self.advance(call, page)
        if following is None:
            return None
        if page.records_missing:
            raise PaginationError("the response has no records where the stream reads them, "
                                  "yet says more pages follow")
        if following == call:
            raise PaginationError("the response points back at the same page")
        self._empty_pages = 0 if page.records else self._empty_pages + 1
        if self._empty_pages > MAX_EMPTY_PAGES:
            raise PaginationError(f"{MAX_EMPTY_PAGES} empty pages in a row that each say more "
                                  f"pages follow")
        return following

    def advance(self, call: Call, page: Page) -> Call | None:
        raise NotImplementedError

    def resumable(self, call: Call) -> bool:
        """Whether `call` may be sent again later to go on from where it pointed: true for a
        cursor or link the server keeps, false for offsets and page numbers, which shift when
        records are deleted in between."""
        return True

    def _more(self, page: Page, full_page_size: int | None) -> bool:
        """The `more` flag when declared; otherwise a full page means there may be more."""
        more = self.get.get("more")
        if more is not None:
            return bool(more(page.body))
        return full_page_size is None or len(page.records) >= full_page_size


class NoPagination(Paginator):
    def advance(self, call: Call, page: Page) -> Call | None:
        return None


class CursorPagination(Paginator):
    """A cursor read from the body, sent back as a query parameter or a body field."""

    def advance(self, call: Call, page: Page) -> Call | None:
        cursor = self.get["cursor"](page.body)
        if cursor in (None, ""):
            return None
        param = self.options["param"]
        if self.options.get("in") == "body":  # else the query (the default)
            body = copy.copy(call.json) if isinstance(call.json, dict) else {}
            body[param] = cursor
            return replace(call, json=body)
        return replace(call, params={**call.params, param: cursor})


class NextUrlPagination(Paginator):
    """A URL (absolute, or relative to the API host) read from the body."""

    def advance(self, call: Call, page: Page) -> Call | None:
        link = self.get["next_url"](page.body)
        if not link:
            return None
        url = urljoin(call.url, str(link))
        before, after = urlsplit(call.url), urlsplit(url)
        if (before.scheme, before.netloc) != (after.scheme, after.netloc):
            # Following it would send our credentials to another host.
            raise PaginationError(f"next page URL points to another host: {after.netloc}")
        return replace(call, url=url, params={})  # the URL carries its own query


class OffsetPagination(Paginator):
    """`offset_param` / `limit_param`, with the next offset from the body when it gives one."""

    def resumable(self, call: Call) -> bool:
        return False

    def first(self, call: Call) -> Call:
        params = {**call.params, self.options["offset_param"]: 0,
                  self.options["limit_param"]: self.options["limit"]}
        return replace(call, params=params)

    def advance(self, call: Call, page: Page) -> Call | None:
        if not self._more(page, self.options["limit"]):
            return None
        next_offset = self.get.get("next_offset")
        offset = next_offset(page.body) if next_offset else None
        if offset is None:
            offset = int(call.params[self.options["offset_param"]]) + len(page.records)
        return replace(call, params={**call.params, self.options["offset_param"]: offset})


class PagePagination(Paginator):
    """Page numbers; optionally switching to a page token once numbers hit their cap."""

    def resumable(self, call: Call) -> bool:
        token = self.options.get("token")
        return token is not None and token["param"] in call.params

    def first(self, call: Call) -> Call:
        params = {**call.params, self.options["page_param"]: self.options.get("first_page", 1)}
        if "size_param" in self.options:
            params[self.options["size_param"]] = self.options["size"]
        return replace(call, params=params)

    def advance(self, call: Call, page: Page) -> Call | None:
        if not self._more(page, self.options.get("size")):
            return None
        token_spec = self.options.get("token")
        page_param = self.options["page_param"]
        params = dict(call.params)
        if token_spec is not None:
            token_param = token_spec["param"]
            in_token_mode = token_param in params
            fetched = page.number * self.options["size"]
            if in_token_mode or fetched >= token_spec["after_records"]:
                token = self.get["token"](page.body)
                if not token:
                    raise PaginationError(
                        f"more records exist past {fetched} but the response has no page token")
                params.pop(page_param, None)  # the two must not be combined
                params[token_param] = token
                return replace(call, params=params)
        params[page_param] = int(params[page_param]) + 1
        return replace(call, params=params)


PAGINATORS: dict[str, type[Paginator]] = {
    "none": NoPagination,
    "cursor": CursorPagination,
    "next_url": NextUrlPagination,
    "offset": OffsetPagination,
    "page": PagePagination,
}


def paginator_for(spec: PaginationSpec) -> Paginator:
    return PAGINATORS[spec.style](spec)
