"""Each pagination style against a vendor-neutral test server, synced for real into DuckDB."""

from __future__ import annotations

import json

import pytest

from engine.errors import InputError
from engine.extract import compile_getter
from engine.paginate import MAX_EMPTY_PAGES, Page, PaginationError, paginator_for, read_page
from engine.spec import PaginationSpec
from engine.transport import Call
from tests.support import ItemsServer, connector_yaml, write_specs

STYLES = {
    "cursor": """
        items:
          model: contact
          request: {method: GET, path: /cursor, params: {limit: 10}}
          records: items
          paginate: {style: cursor, cursor: next.after, param: after}
    """,
    "next_url": """
        items:
          model: contact
          request: {method: GET, path: /next_url}
          records: records
          paginate: {style: next_url, next_url: next, stop_when: done}
    """,
    "offset": """
        items:
          model: contact
          request: {method: GET, path: /offset}
          records: data
          paginate: {style: offset, offset_param: start, limit_param: limit, limit: 10,
                     more: more, next_offset: next_start}
    """,
    "page": """
        items:
          model: contact
          request: {method: GET, path: /page}
          records: data
          paginate: {style: page, page_param: page, size_param: per_page, size: 10, more: info.more,
                     token: {value: info.token, param: page_token, after_records: 30}}
    """,
    # No `more` flag and no next offset: a full page means there may be more, a short one ends.
    "offset_by_size": """
        items:
          model: contact
          request: {method: GET, path: /offset}
          records: data
          paginate: {style: offset, offset_param: start, limit_param: limit, limit: 10}
    """,
    "page_by_size": """
        items:
          model: contact
          request: {method: GET, path: /page}
          records: data
          paginate: {style: page, page_param: page, size_param: per_page, size: 10}
    """,
    "cursor_in_body": """
        items:
          model: contact
          request: {method: POST, path: /search, idempotent: true, body: {limit: 10}}
          records: results
          paginate: {style: cursor, cursor: paging.next.after, param: after, in: body}
    """,
}


def _ids(engine) -> list[str]:
    return [r[0] for r in engine.store.query("SELECT id FROM contacts ORDER BY id")]


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize("n", [0, 1, 10, 73])
def test_every_record_exactly_once(tmp_path, make_engine, style, n):
    # Page numbers stop at 30 records where the style switches to page tokens past them.
    with ItemsServer(n, page_cap=30 if style == "page" else 1_000_000) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(STYLES[style])))
        [run] = engine.sync("acme", token="t0ken-value", base_url=server.url)
    assert run.status == "succeeded", run.error
    assert _ids(engine) == [f"{i:05d}" for i in range(n)]
    assert run.records == n
    if n:  # fields the mapping does not name land in `custom`
        custom = engine.store.query("SELECT custom FROM contacts LIMIT 1")[0][0]
        assert json.loads(custom) == {"colour": "blue"}
    # A page per 10 records (7 for next_url), plus one empty or short last page at most.
    per_page = 7 if style == "next_url" else 10
    assert run.pages in (max(1, -(-n // per_page)), n // per_page + 1)


def test_page_style_switches_to_token_past_cap(tmp_path, make_engine):
    with ItemsServer(55, page_cap=30) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(STYLES["page"])))
        [run] = engine.sync("acme", token="t0ken-value", base_url=server.url)
    assert run.status == "succeeded", run.error
    pages = [p.get("page") for p in server.seen_params]
    tokens = [p.get("page_token") for p in server.seen_params]
    assert pages == ["1", "2", "3", None, None, None]
    assert tokens == [None, None, None, "t30", "t40", "t50"]
    assert len(_ids(engine)) == 55


def test_cursor_sent_in_body_not_query(tmp_path, make_engine):
    with ItemsServer(25) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(STYLES["cursor_in_body"])))
        engine.sync("acme", token="t0ken-value", base_url=server.url)
    assert [b.get("after") for b in server.seen_params] == [None, "10", "20"]
    assert all(b["limit"] == 10 for b in server.seen_params)


def test_next_url_to_another_host_is_refused(tmp_path, make_engine):
    streams = STYLES["next_url"].replace("next_url: next,", "next_url: \"'http://evil.example/x'\",")
    with ItemsServer(20) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(streams)))
        [run] = engine.sync("acme", token="t0ken-value", base_url=server.url)
    assert run.status == "failed"
    assert "another host" in run.error
    assert len(_ids(engine)) == 7  # the first page landed and stays


def test_stop_when_ends_the_stream(tmp_path, make_engine):
    stop = 'param: after, stop_when: "length(items) < `100`"}'
    streams = STYLES["cursor"].replace("param: after}", stop)
    with ItemsServer(50) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(streams)))
        [run] = engine.sync("acme", token="t0ken-value", base_url=server.url)
    assert run.pages == 1 and run.records == 10


def test_unknown_records_path_gives_no_records_not_a_crash(tmp_path, make_engine):
    streams = STYLES["cursor"].replace("records: items", "records: nothing.here")
    with ItemsServer(5) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(streams)))
        [run] = engine.sync("acme", token="t0ken-value", base_url=server.url)
    assert run.status == "succeeded" and run.records == 0


def test_sync_of_unknown_stream_is_an_input_error(tmp_path, make_engine):
    engine = make_engine(write_specs(tmp_path, connector_yaml(STYLES["cursor"])))
    with pytest.raises(InputError, match="acme has no stream 'nope' \\(streams: items\\)") as info:
        engine.sync("acme", token="x", base_url="http://127.0.0.1:9", streams=["nope"])
    assert info.value.field == "streams"
    assert engine.store.query("SELECT count(*) FROM sync_runs")[0][0] == 0  # nothing ran


# (records, the offsets / page numbers that must be asked for): a full page needs one more
# request to know it was the last; a short page is the last without one.
BY_SIZE = [(0, [0]), (9, [0]), (10, [0, 10]), (20, [0, 10, 20]), (25, [0, 10, 20])]


@pytest.mark.parametrize(("n", "starts"), BY_SIZE)
def test_a_full_offset_page_means_more_and_a_short_one_is_the_last(tmp_path, make_engine, n,
                                                                   starts):
    with ItemsServer(n) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(STYLES["offset_by_size"])))
        [run] = engine.sync("acme", token="t0ken-value", base_url=server.url)
    assert run.status == "succeeded" and run.records == n
    assert [int(p["start"]) for p in server.seen_params] == starts
    assert all(p["limit"] == "10" for p in server.seen_params)


@pytest.mark.parametrize(("n", "starts"), BY_SIZE)
def test_a_full_numbered_page_means_more_and_a_short_one_is_the_last(tmp_path, make_engine, n,
                                                                     starts):
    with ItemsServer(n) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(STYLES["page_by_size"])))
        [run] = engine.sync("acme", token="t0ken-value", base_url=server.url)
    assert run.status == "succeeded" and run.records == n
    assert [p["page"] for p in server.seen_params] == [str(s // 10 + 1) for s in starts]


# A cursor-paged stream whose custom fields are named by the API's /fields list.
CURSOR_WITH_FIELD_NAMES = STYLES["cursor"] + """
          fields:
            request: {method: GET, path: /fields}
            records: data
            key: key
            name: name
    """


def test_custom_fields_are_keyed_by_the_names_the_field_definitions_give(tmp_path, make_engine):
    streams = CURSOR_WITH_FIELD_NAMES
    with ItemsServer(3) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(streams)))
        [run] = engine.sync("acme", token="t0ken-value", base_url=server.url)
    assert run.status == "succeeded" and run.requests == 2  # definitions, then one page
    customs = {json.dumps(json.loads(r[0]), sort_keys=True)
               for r in engine.store.query("SELECT custom FROM contacts")}
    assert customs == {json.dumps({"Favourite colour": "blue"})}


def test_first_sync_appends_and_an_id_seen_again_in_a_later_batch_is_upserted(
        tmp_path, make_engine, monkeypatch):
    import engine.sync.stream

    monkeypatch.setattr(engine.sync.stream, "BATCH_RECORDS", 10)
    with ItemsServer(30) as server:
        server.records[15] = dict(server.records[3], name="Changed")  # 00003 again, later
        engine_ = make_engine(write_specs(tmp_path, connector_yaml(STYLES["cursor"])))
        [run] = engine_.sync("acme", token="t0ken-value", base_url=server.url)
        assert run.status == "succeeded", run.error
        assert len(_ids(engine_)) == 29
        name = engine_.store.query("SELECT first_name FROM contacts WHERE id = '00003'")[0][0]
        assert name == "Changed"
        [again] = engine_.sync("acme")  # a rerun upserts over what is there
    assert again.status == "succeeded" and len(_ids(engine_)) == 29


LABELLED = """
models:
  contact:
    custom: "@"
    fields:
      id: {path: id, write: false}
      first_name: name
      email: email
      job_title: {label: Favourite colour}   # whatever key this account gives that field
"""


def test_a_field_mapped_by_label_reads_this_accounts_key(tmp_path, make_engine):
    streams = CURSOR_WITH_FIELD_NAMES
    with ItemsServer(3) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(streams), LABELLED))
        [run] = engine.sync("acme", token="t0ken-value", base_url=server.url)
    assert run.status == "succeeded"
    rows = engine.store.query("SELECT job_title, custom FROM contacts")
    # The field the label names is mapped, so it is not also in custom.
    assert {(title, json.loads(custom).get("colour")) for title, custom in rows} == {
        ("blue", None)}
    mapping = engine.connector("acme").mappings["contact"]
    names = {"cf_81": "Favourite colour"}  # another account, another key
    assert mapping.write({"job_title": "red"}, apply_defaults=False, custom_names=names) == {
        "cf_81": "red"}
    with pytest.raises(InputError) as info:
        mapping.write({"job_title": "red"}, apply_defaults=False, custom_names={})
    assert info.value.field == "job_title" and "Favourite colour" in info.value.message


def test_a_path_given_as_keys_may_hold_dots(tmp_path):
    from engine.loader import load_mapping

    path = tmp_path / "mappings" / "acme.yaml"
    path.parent.mkdir()
    path.write_text("""
models:
  contact:
    fields:
      id: {path: id, write: false}
      job_title: {path: [custom, cf.title]}
""")
    found, problems = load_mapping(path)
    assert problems == []
    contact = found["contact"]
    assert contact.read({"id": "1", "custom": {"cf.title": "CTO"}})["job_title"] == "CTO"
    assert contact.write({"job_title": "CEO"}, apply_defaults=False) == {
        "custom": {"cf.title": "CEO"}}


# -- each style's next request, from one page, without a server ---------------------------------

def paginator(style: str, records: str = "data", **options):
    getters = {k: compile_getter(v) for k, v in options.pop("getters", {}).items()}
    return paginator_for(PaginationSpec(style, options, getters)), compile_getter(records)


def page_of(body, records_at, number=1):
    return read_page(body, records_at, number)


def test_the_next_offset_is_the_one_the_body_gives():
    """Pipedrive v1 says where the next page starts (additional_data.pagination.next_start),
    which need not be the offset plus the records returned (CONTRACTS 3.3)."""
    pager, records = paginator("offset", offset_param="start", limit_param="limit", limit=3,
                               getters={"more": "more", "next_offset": "next_start"})
    first = pager.first(Call("GET", "http://127.0.0.1:9/persons", params={"sort": "id"}))
    assert first.params == {"sort": "id", "start": 0, "limit": 3}
    body = {"data": [{"id": 1}, {"id": 2}], "more": True, "next_start": 5}
    assert pager.next(first, page_of(body, records)).params == {"sort": "id", "start": 5,
                                                                "limit": 3}


def test_numbered_pages_start_where_declared_and_send_their_size():
    pager, _ = paginator("page", page_param="page", size_param="per_page", size=200,
                         first_page=0)
    assert pager.first(Call("GET", "http://127.0.0.1:9/x")).params == {"page": 0,
                                                                       "per_page": 200}
    pager, _ = paginator("page", page_param="page", size=200)
    assert pager.first(Call("GET", "http://127.0.0.1:9/x")).params == {"page": 1}


TOKEN_PAGES = dict(page_param="page", size_param="per_page", size=200,
                   token={"param": "page_token", "after_records": 2000},
                   getters={"more": "info.more_records", "token": "info.next_page_token"})


def test_a_stream_read_by_page_token_stays_on_page_tokens():
    """Zoho: `page` and `page_token` must not be combined (CONTRACTS 4.3); a read that goes on
    from a page token (a resumed stream) keeps following tokens."""
    pager, records = paginator("page", **TOKEN_PAGES)
    call = Call("GET", "http://127.0.0.1:9/Contacts", params={"per_page": 200,
                                                              "page_token": "t-2000"})
    body = {"data": [{"id": str(i)} for i in range(200)],
            "info": {"more_records": True, "next_page_token": "t-2200"}}
    assert pager.next(call, page_of(body, records)).params == {"per_page": 200,
                                                               "page_token": "t-2200"}


def test_a_missing_page_token_past_the_cap_says_how_far_it_got():
    pager, records = paginator("page", **TOKEN_PAGES)
    call = Call("GET", "http://127.0.0.1:9/Contacts", params={"page": 10, "per_page": 200})
    body = {"data": [{"id": str(i)} for i in range(200)], "info": {"more_records": True}}
    with pytest.raises(PaginationError) as info:
        pager.next(call, page_of(body, records, number=10))
    assert str(info.value) == "more records exist past 2000 but the response has no page token"


def test_a_next_url_is_followed_without_the_first_requests_query(tmp_path, make_engine):
    """Salesforce's nextRecordsUrl carries its own query (CONTRACTS 2.3): resending the first
    request's parameters with it would ask for something else."""
    stream = STYLES["next_url"].replace("path: /next_url}", "path: /next_url, "
                                        "params: {q: everything}}")
    with ItemsServer(20) as server:
        engine = make_engine(write_specs(tmp_path, connector_yaml(stream)))
        [run] = engine.sync("acme", token="t0ken", base_url=server.url)
    assert run.records == 20
    assert server.seen_params == [{"q": "everything"}, {}, {}]


def test_an_empty_cursor_ends_the_stream_and_a_body_cursor_starts_a_body():
    pager, records = paginator("cursor", records="results", param="after", getters={
        "cursor": "paging.next.after"})
    call = Call("GET", "http://127.0.0.1:9/x", params={"limit": 100})
    body = {"results": [{"id": "1"}], "paging": {"next": {"after": ""}}}
    assert pager.next(call, page_of(body, records)) is None
    body["paging"]["next"]["after"] = "NTI1Cg%3D%3D"
    assert pager.next(call, page_of(body, records)).params == {"limit": 100,
                                                               "after": "NTI1Cg%3D%3D"}
    pager, records = paginator("cursor", records="results", param="after", getters={
        "cursor": "paging.next.after"}, **{"in": "body"})
    following = pager.next(Call("POST", "http://127.0.0.1:9/search"), page_of(body, records))
    assert following.json == {"after": "NTI1Cg%3D%3D"} and following.params == {}


def test_a_page_reads_its_records_or_says_they_are_missing():
    _, records = paginator("none", records="data")
    assert page_of(None, records, 3) == Page(None, [], 3)
    assert page_of({"info": {}}, records) == Page({"info": {}}, [], 1, records_missing=True)
    assert page_of({"data": [1]}, records) == Page({"data": [1]}, [1], 1)
    with pytest.raises(PaginationError) as info:
        page_of({"data": {"id": 1}}, records)
    assert str(info.value) == "the records in the response are a dict, not a list"


def test_a_stream_ends_on_no_content_or_its_stop_signal():
    pager, records = paginator("cursor", param="after", getters={"cursor": "next",
                                                                  "stop_when": "done"})
    call = Call("GET", "http://127.0.0.1:9/x")
    assert pager.next(call, page_of(None, records)) is None  # 204
    assert pager.next(call, page_of({"data": [1], "next": "b", "done": True}, records)) is None
    assert pager.next(call, page_of({"data": [1], "next": "b", "done": False},
                                    records)).params == {"after": "b"}


def test_more_pages_without_records_or_back_to_the_same_page_are_errors():
    pager, records = paginator("cursor", param="after", getters={"cursor": "next"})
    call = Call("GET", "http://127.0.0.1:9/x", params={"after": "a"})
    with pytest.raises(PaginationError) as info:
        pager.next(call, page_of({"items": [1], "next": "b"}, records))
    assert str(info.value) == ("the response has no records where the stream reads them, yet "
                               "says more pages follow")
    with pytest.raises(PaginationError) as info:
        pager.next(call, page_of({"data": [1], "next": "a"}, records))
    assert str(info.value) == "the response points back at the same page"


def test_a_hundred_empty_pages_in_a_row_that_say_more_follow_are_a_loop():
    pager, records = paginator("cursor", param="after", getters={"cursor": "next"})
    call = Call("GET", "http://127.0.0.1:9/x")
    for n in range(MAX_EMPTY_PAGES):
        call = pager.next(call, page_of({"data": [], "next": str(n)}, records))
    call = pager.next(call, page_of({"data": [1], "next": "full"}, records))  # a record: reset
    for n in range(MAX_EMPTY_PAGES):
        call = pager.next(call, page_of({"data": [], "next": f"e{n}"}, records))
    with pytest.raises(PaginationError) as info:
        pager.next(call, page_of({"data": [], "next": "more"}, records))
    assert str(info.value) == "100 empty pages in a row that each say more pages follow"


def test_only_cursors_links_and_page_tokens_are_saved_to_resume_from():
    """A resumed full refresh goes on from a saved request only when the server keeps what it
    points at: a cursor, a next link or a page token does; an offset or a page number shifts
    when records are deleted in between (so such a read starts again)."""
    call = Call("GET", "http://127.0.0.1:9/x", params={"page": 3, "start": 20, "after": "c"})
    assert paginator("cursor", param="after", getters={"cursor": "next"})[0].resumable(call)
    assert paginator("next_url", getters={"next_url": "next"})[0].resumable(call)
    assert not paginator("offset", offset_param="start", limit_param="limit",
                         limit=10)[0].resumable(call)
    numbered, _ = paginator("page", page_param="page", size=10)
    assert not numbered.resumable(call)
    tokens, _ = paginator("page", **TOKEN_PAGES)
    assert not tokens.resumable(call)
    assert tokens.resumable(Call("GET", "http://127.0.0.1:9/x", params={"page_token": "t-2"}))


def test_a_next_url_replaces_the_query_with_its_own():
    pager, records = paginator("next_url", records="records", getters={"next_url": "next"})
    call = Call("GET", "http://127.0.0.1:9/services/data/v59.0/query", params={"q": "SELECT"})
    body = {"records": [{"Id": "1"}], "next": "/services/data/v59.0/query/01g-2000"}
    following = pager.next(call, page_of(body, records))
    assert following.url == "http://127.0.0.1:9/services/data/v59.0/query/01g-2000"
    assert following.params == {}
