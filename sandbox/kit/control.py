"""Test-control endpoints every emulator serves, vendor-neutral: scripted changes between sync
runs and the ground truth to check a sync against.

    POST /__sandbox/mutate  {"stream": "contacts", "create": 2, "update": 3, "delete": 1,
                             "same_timestamp": false, "late": false, "late_by": 60}
        -> {"stream", "created": [ids], "updated": [ids], "deleted": [ids],
            "modified_from": iso, "modified_to": iso}
    GET  /__sandbox/truth?stream=contacts
        -> {"stream", "records": [{"id", "updated_at", "deleted", "deleted_at"}, ...]}

Streams are the neutral names ``contacts``, ``companies`` and ``deals`` (each emulator also
accepts its own object names, e.g. ``Contact`` or ``persons``). These routes are outside the
vendor API: no authentication, no rate limits or quotas, no injected faults or latency, and
they are not counted in ``App.stats``.

Mutation semantics (the same for every vendor; the emulator's store does what the vendor does):

- Every call first moves the emulator clock forward by 1 s, so everything it touches is stamped
  strictly after anything read before the call. Records are stamped from ``floor(clock)``
  (a whole second, which every vendor can represent) in 1 ms steps, one step per touched record
  in the order created, updated, deleted; when that runs past the clock, the clock is moved past
  the last stamp. Vendors with whole-second times (Salesforce, Pipedrive, Zoho) show up to 1,000
  consecutive records with the same second, as a bulk change does.
- ``same_timestamp``: every touched record gets exactly ``floor(clock)``: e.g. a HubSpot burst
  of more than 10,000 records with one lastmodifieddate.
- ``late``: the stamps are moved ``late_by`` seconds (default 60) into the past: the change only
  becomes visible now, with a modification time earlier than changes already served (a "late
  visible" record, as with long transactions or replication lag). Keep ``late_by`` below the
  engine's lookback window.
- ``update`` and ``delete`` pick distinct live records (pseudo-random, reproducible per
  emulator instance) that existed before the call; ``create`` adds new ones. Updates change one
  field value (the vendor hook says which) and the modification time; deletes do what the
  vendor's DELETE does (HubSpot archives, Salesforce sets IsDeleted, Pipedrive marks deleted,
  Zoho moves to the recycle bin).

Truth rows: ``updated_at`` is the record's latest change (the deletion included), ISO 8601 UTC
with milliseconds; ``deleted_at`` is the deletion time or null.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox.kit.core import Request, Response

if TYPE_CHECKING:
    from sandbox.kit.emulator import Emulator

MUTATE_PATH = "/__sandbox/mutate"
TRUTH_PATH = "/__sandbox/truth"
GROUP = "control"  # App.dispatch neither counts nor faults this group
NEUTRAL_STREAMS = ("contacts", "companies", "deals")
STEP = 0.001  # seconds between the stamps of consecutive records of one call
DEFAULT_LATE_BY = 60.0
MAX_COUNT = 1_000_000


class ControlError(ValueError):
    """A mutate/truth request the emulator refuses (rendered as 400 {"error": message})."""


@dataclass(frozen=True)
class TruthRow:
    """One record as the ground truth sees it: times are epoch seconds."""

    id: str
    updated_at: float
    deleted: bool
    deleted_at: float | None = None


@dataclass(frozen=True)
class Mutation:
    stream: str  # the vendor's name for it (after resolving aliases)
    create: int = 0
    update: int = 0
    delete: int = 0
    same_timestamp: bool = False
    late: bool = False
    late_by: float = DEFAULT_LATE_BY


def iso_utc(epoch: float) -> str:
    """``2026-01-02T03:04:05.678Z``."""
    millis = round(epoch * 1000)
    seconds, fraction = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:03d}Z"


def _count(body: dict, name: str) -> int:
    raw = body.get(name, 0)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_COUNT:
        raise ControlError(f"{name} must be an integer between 0 and {MAX_COUNT}")
    return raw


def _flag(body: dict, name: str) -> bool:
    raw = body.get(name, False)
    if not isinstance(raw, bool):
        raise ControlError(f"{name} must be true or false")
    return raw


def parse_mutation(body: object, streams: dict[str, str]) -> Mutation:
    """A mutate body, validated; ``streams`` maps accepted names to the vendor's names."""
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    known = {"stream", "create", "update", "delete", "same_timestamp", "late", "late_by"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ControlError(f"unknown keys: {', '.join(unknown)}")
    stream = resolve_stream(body.get("stream"), streams)
    late_by = body.get("late_by", DEFAULT_LATE_BY)
    if isinstance(late_by, bool) or not isinstance(late_by, int | float) or late_by <= 0:
        raise ControlError("late_by must be a positive number of seconds")
    return Mutation(
        stream,
        create=_count(body, "create"),
        update=_count(body, "update"),
        delete=_count(body, "delete"),
        same_timestamp=_flag(body, "same_timestamp"),
        late=_flag(body, "late"),
        late_by=float(late_by),
    )


def resolve_stream(name: object, streams: dict[str, str]) -> str:
    if not isinstance(name, str) or name not in streams:
        raise ControlError(
            f"unknown stream {name!r}; one of {', '.join(dict.fromkeys(streams))}"
        )
    return streams[name]


class Controller:
    """Runs mutations against one emulator through its ``control_*`` hooks."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._rng = random.Random(f"sandbox-control-{emulator.name}")
        self._lock = threading.Lock()

    def streams(self) -> dict[str, str]:
        names = dict(self.emulator.CONTROL_STREAMS)
        for vendor_name in self.emulator.CONTROL_STREAMS.values():
            names.setdefault(vendor_name, vendor_name)
        return names

    def mutate(self, mutation: Mutation) -> dict[str, Any]:
        emulator = self.emulator
        with self._lock:
            live = emulator.control_live_ids(mutation.stream)
            picked = mutation.update + mutation.delete
            if picked > len(live):
                raise ControlError(
                    f"{mutation.stream} has {len(live)} live records; cannot update "
                    f"{mutation.update} and delete {mutation.delete} of them"
                )
            chosen = self._rng.sample(live, picked) if picked else []
            to_update, to_delete = chosen[: mutation.update], chosen[mutation.update :]
            touched = mutation.create + picked
            emulator.advance_time(1.0)
            base = math.floor(emulator.clock.now())
            stamps = self._stamps(base, touched, mutation)
            first_update, first_delete = mutation.create, mutation.create + mutation.update
            created = emulator.control_create(mutation.stream, stamps[:first_update])
            emulator.control_update(mutation.stream, to_update, stamps[first_update:first_delete])
            emulator.control_delete(mutation.stream, to_delete, stamps[first_delete:])
            last = max(stamps) if stamps else base
            if last >= emulator.clock.now():  # 1 ms steps ran past the clock
                emulator.advance_time(last - emulator.clock.now() + STEP)
        result: dict[str, Any] = {
            "stream": mutation.stream,
            "created": created,
            "updated": list(to_update),
            "deleted": list(to_delete),
        }
        if stamps:
            result["modified_from"] = iso_utc(min(stamps))
            result["modified_to"] = iso_utc(last)
        return result

    @staticmethod
    def _stamps(base: float, count: int, mutation: Mutation) -> list[float]:
        shift = mutation.late_by if mutation.late else 0.0
        if mutation.same_timestamp:
            return [base - shift] * count
        return [base - shift + round(i * STEP, 3) for i in range(count)]

    def truth(self, stream: str) -> dict[str, Any]:
        rows = self.emulator.control_truth(stream)
        return {
            "stream": stream,
            "records": [
                {
                    "id": row.id,
                    "updated_at": iso_utc(row.updated_at),
                    "deleted": row.deleted,
                    "deleted_at": iso_utc(row.deleted_at) if row.deleted_at is not None else None,
                }
                for row in rows
            ],
        }


def register_control_routes(emulator: Emulator) -> None:
    """Add POST /__sandbox/mutate and GET /__sandbox/truth to the emulator's App."""
    controller = emulator.controller

    def mutate(request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return _error("the body is not valid JSON")
        try:
            return Response(200, controller.mutate(parse_mutation(body, controller.streams())))
        except ControlError as problem:
            return _error(str(problem))

    def truth(request: Request) -> Response:
        try:
            stream = resolve_stream(request.arg("stream"), controller.streams())
        except ControlError as problem:
            return _error(str(problem))
        return Response(200, controller.truth(stream))

    app = emulator.app
    app.add_route("POST", MUTATE_PATH, mutate, name="sandbox.mutate", group=GROUP)
    app.add_route("GET", TRUTH_PATH, truth, name="sandbox.truth", group=GROUP)


def _error(message: str) -> Response:
    return Response(400, {"error": message})
