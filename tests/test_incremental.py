"""Incremental reads and their checkpoints against a vendor-neutral changes API: windows
restarted before a result cap, slicing by id when more records than the cap share one
cursor value, lookback, resuming a stopped full refresh, the sweep of unseen rows, and the
loud failures that stand in for silent loss."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from sandbox.kit import App, Request, Response, serve
from tests.support import connector_yaml, write_specs

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CAP = 40  # results one query may page through, like HubSpot's 10,000 (scaled down)
PAGE = 10


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def stamp(seconds: float) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class ChangesServer:
    """GET /changes ?since= (inclusive) [&at= &after_id=: one value, by id] &offset=
    sorted by (updated, id); offsets past CAP are refused with a 400, as capped search APIs
    do. GET /deleted lists deleted ids. Every request is logged."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, str] = {}
        self.log: list[dict[str, str]] = []
        self.shuffle = False
        self.fail_at_offset: int | None = None
        self.expired: set[int] = set()  # offsets refused once, as an expired cursor would be
        self.garbage: list[dict[str, Any]] = []  # records added to every page as they are
        self.app = App()
        self.app.add_route("GET", "/changes", self.changes)
        self.deleted_reads = 0
        self.app.add_route("GET", "/deleted", self.deleted_list)

    def deleted_list(self, request: Request) -> Response:
        self.deleted_reads += 1
        return Response(200, {"items": [{"id": i, "when": w}
                                        for i, w in sorted(self.deleted.items())]})

    def put(self, n: int, start: int = 0, at: float | None = None, step: float = 1.0) -> None:
        for i in range(start, start + n):
            record_id = f"{i:06d}"
            self.records[record_id] = {"id": record_id, "name": f"Name {i}",
                                       "updated": stamp(at if at is not None else i * step)}

    def delete(self, record_id: str, at: float) -> None:
        self.records.pop(record_id)
        self.deleted[record_id] = stamp(at)

    def changes(self, request: Request) -> Response:
        args = {k: v[0] for k, v in request.query.items()}
        self.log.append(args)
        offset = int(args.get("offset", 0))
        if offset >= CAP:
            return Response(400, {"message": "paging past the result cap"})
        if self.fail_at_offset is not None and offset >= self.fail_at_offset:
            return Response(400, {"message": "cursor expired"})
        if offset in self.expired:
            self.expired.discard(offset)
            return Response(400, {"message": "cursor expired"})
        rows = sorted(self.records.values(), key=lambda r: (instant(r["updated"]), r["id"]))
        if "since" in args:
            rows = [r for r in rows if instant(r["updated"]) >= instant(args["since"])]
        if "at" in args:
            rows = [r for r in rows if instant(r["updated"]) == instant(args["at"])
                    and r["id"] > args.get("after_id", "")]
        if self.shuffle:
            rows.reverse()
        page = rows[offset:offset + PAGE] + self.garbage
        body: dict[str, Any] = {"items": page}
        if offset + PAGE < len(rows):
            body["next"] = offset + PAGE
        return Response(200, body)


STREAM = """
    items:
      model: contact
      request:
        method: GET
        path: /changes
        params:
          since: "{{ cursor.since | timestamp if cursor.since and not cursor.slice else none }}"
          at: "{{ cursor.since | timestamp if cursor.slice else none }}"
          after_id: "{{ cursor.after_id }}"
      records: items
      paginate: {style: cursor, cursor: next, param: offset}
      incremental:
        cursor: updated
        result_cap: 40
        tie_breaker: id
        lookback_seconds: LOOKBACK
      deletes:
        request: {method: GET, path: /deleted}
        records: items
        id: id
        deleted_at: when
"""


@pytest.fixture
def server():
    changes = ChangesServer()
    running = serve(changes.app)
    changes.url = running.url  # type: ignore[attr-defined]
    yield changes
    running.close()


def engine_for(tmp_path, make_engine, stream: str = STREAM, lookback: float = 0):
    return make_engine(write_specs(tmp_path, connector_yaml(
        stream.replace("LOOKBACK", str(lookback)))))


def sync(engine, server, **options):
    [run] = engine.sync("acme", token="t0ken-value", base_url=server.url, **options)
    return run


def landed(engine) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in engine.store.query(
        "SELECT id, first_name, updated_at, is_deleted, deleted_at FROM contacts")}


def state(engine) -> dict[str, Any]:
    return engine.store.state("acme", "items")


def test_a_window_restarts_before_the_result_cap_and_reads_everything_once(tmp_path,
                                                                          make_engine, server):
    server.put(30)
    engine = engine_for(tmp_path, make_engine)
    assert sync(engine, server).mode == "full_refresh"
    server.put(137, start=1000)  # newer than everything before: 137 changes, cap 40
    server.log.clear()
    run = sync(engine, server)
    assert run.status == "succeeded" and run.mode == "incremental", run.error
    rows = landed(engine)
    assert len(rows) == 167 and all(not r[2] for r in rows.values())
    assert all(int(q.get("offset", 0)) < CAP for q in server.log)  # never refused
    # Each window reads up to the cap, then starts again at the last value it saw.
    assert [instant(q["since"]) for q in server.log if "offset" not in q] == [
        instant(stamp(s)) for s in (29, 1038, 1077, 1116)]
    assert instant(state(engine)["cursor"]) == instant(stamp(1136))
    assert state(engine)["window"] is None


def test_more_records_than_the_cap_at_one_value_are_sliced_by_id(tmp_path, make_engine,
                                                                 server):
    server.put(5)
    engine = engine_for(tmp_path, make_engine)
    sync(engine, server)
    server.put(95, start=100, at=50)  # 95 records share one modification time
    server.put(3, start=500, at=60)
    run = sync(engine, server)
    assert run.status == "succeeded", run.error
    assert len(landed(engine)) == 103
    slices = [q for q in server.log if "at" in q and "offset" not in q]
    assert [q.get("after_id") for q in slices] == [None, "000139", "000179"]
    # After the value is read to its end, the next query starts one millisecond later.
    assert instant(stamp(50.001)) in [instant(q["since"]) for q in server.log if "since" in q]
    assert instant(state(engine)["cursor"]) == instant(stamp(60))


def test_ties_beyond_the_cap_without_a_tie_breaker_fail_loudly(tmp_path, make_engine, server):
    server.put(5)
    engine = engine_for(tmp_path, make_engine, STREAM.replace("        tie_breaker: id\n", ""))
    sync(engine, server)
    server.put(60, start=100, at=50)
    run = sync(engine, server)
    assert run.status == "failed" and "need" in run.error and "tie_breaker" in run.error
    assert instant(state(engine)["cursor"]) == instant(stamp(4))  # nothing claimed past it


def test_records_out_of_cursor_order_fail_loudly(tmp_path, make_engine, server):
    server.put(5)
    engine = engine_for(tmp_path, make_engine)
    sync(engine, server)
    server.put(20, start=100)
    server.shuffle = True
    run = sync(engine, server)
    assert run.status == "failed" and "not sorted by their cursor" in run.error


def test_lookback_reads_rows_that_became_visible_late(tmp_path, make_engine, server):
    server.put(10, step=60)  # the newest at 540 s
    engine = engine_for(tmp_path, make_engine, lookback=120)
    sync(engine, server)
    server.records["late"] = {"id": "late", "name": "Late", "updated": stamp(500)}
    server.records["later"] = {"id": "later", "name": "Too late", "updated": stamp(300)}
    run = sync(engine, server)
    # From 540 - 120 = 420: the late row at 500, and again those at 420, 480 and 540; not
    # the one at 300.
    assert run.records == 4 and "late" in landed(engine) and "later" not in landed(engine)


def test_deletes_are_marked_and_kept(tmp_path, make_engine, server):
    server.put(12)
    engine = engine_for(tmp_path, make_engine)
    sync(engine, server)
    server.delete("000003", at=100)
    run = sync(engine, server)
    assert run.deleted == 1
    assert landed(engine)["000003"][2:] == (True, T0 + dt.timedelta(seconds=100))
    assert sum(1 for r in landed(engine).values() if not r[2]) == 11
    assert sync(engine, server).deleted == 0  # marked once


def test_a_first_sync_reads_no_deletes_and_the_next_marks_those_since(tmp_path, make_engine,
                                                                        server):
    server.put(12)
    server.deleted["000099"] = stamp(5)  # deleted before the first sync: never listed to it
    engine = engine_for(tmp_path, make_engine)
    run = sync(engine, server)
    assert run.status == "succeeded" and server.deleted_reads == 0
    assert state(engine)["deletes_cursor"] == state(engine)["cursor"]  # from when it began
    server.delete("000003", at=100)  # after that cursor: while or after the first read ran
    run = sync(engine, server)
    assert server.deleted_reads == 1 and run.deleted == 1
    assert landed(engine)["000003"][2:] == (True, T0 + dt.timedelta(seconds=100))
    assert "000099" not in landed(engine)


def test_a_stopped_full_refresh_goes_on_from_its_last_page(tmp_path, make_engine, server):
    server.put(35)
    engine = engine_for(tmp_path, make_engine)
    server.fail_at_offset = 20
    run = sync(engine, server)
    assert run.status == "failed" and run.records == 20  # two pages landed, then refused
    saved = state(engine)["resume"]
    assert saved["call"]["params"]["offset"] == 20 and saved["pages"] == 2
    server.fail_at_offset, server.log = None, []
    run = sync(engine, server)
    assert run.status == "succeeded" and run.mode == "full_refresh"
    assert [q.get("offset") for q in server.log] == ["20", "30"]  # went on; did not restart
    assert len(landed(engine)) == 35 and state(engine)["resume"] is None


def test_a_full_refresh_whose_saved_cursor_expired_starts_again(tmp_path, make_engine,
                                                                 server):
    server.put(35)
    engine = engine_for(tmp_path, make_engine)
    server.fail_at_offset = 20
    assert sync(engine, server).status == "failed"
    server.fail_at_offset, server.expired, server.log = None, {20}, []
    run = sync(engine, server)
    assert run.status == "succeeded" and len(landed(engine)) == 35
    assert [q.get("offset") for q in server.log] == ["20", None, "10", "20", "30"]
    [warning] = run.warnings
    assert warning.startswith("could not resume the full refresh") and "HTTP 400" in warning


def test_full_refresh_forgets_the_cursor_and_sweeps_rows_it_did_not_see(tmp_path, make_engine,
                                                                       server):
    server.put(15)
    engine = engine_for(tmp_path, make_engine, STREAM.split("      deletes:")[0])
    sync(engine, server)
    gone = server.records.pop("000007")  # deleted with no trace: no deletes API tells
    assert gone and sync(engine, server).deleted == 0  # an incremental run cannot know
    run = sync(engine, server, full_refresh=True)
    assert run.mode == "full_refresh" and run.records == 14 and run.deleted == 1
    is_deleted, deleted_at = landed(engine)["000007"][2:]
    assert is_deleted and deleted_at is not None
    assert sum(1 for r in landed(engine).values() if not r[2]) == 14


def test_a_checkpoint_never_keeps_a_secret(tmp_path, make_engine, server):
    server.put(25)
    secret_param = "          key: \"{{ 'sk-' ~ 'secret-value' }}\"\n"
    stream = STREAM.replace("          after_id:", secret_param + "          after_id:")
    engine = engine_for(tmp_path, make_engine, stream)
    from engine import secrets

    secrets.register("sk-secret-value")
    server.fail_at_offset = 10
    assert sync(engine, server).status == "failed"
    assert state(engine)["resume"] is None  # the next full refresh starts over instead
    assert not engine.store.query(
        "SELECT 1 FROM sync_state WHERE CAST(state AS VARCHAR) LIKE '%secret-value%'")


def test_an_unreadable_cursor_value_fails_loudly(tmp_path, make_engine, server):
    server.put(5)
    engine = engine_for(tmp_path, make_engine)
    sync(engine, server)
    server.garbage = [{"id": "bad", "name": "Bad", "updated": "next tuesday"}]
    run = sync(engine, server)
    assert run.status == "failed" and "'next tuesday' is not a timestamp" in run.error
    assert "bad" not in landed(engine)
