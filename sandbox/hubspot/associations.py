"""HubSpot associations v4 batch read (CONTRACTS 1.4 "Associations APIs"; HS-SPEC v4
associations.json, POST /crm/v4/associations/{fromObjectType}/{toObjectType}/batch/read).

    POST /crm/v4/associations/deals/companies/batch/read
    {"inputs": [{"id": "90000000001"}, {"id": "90000000005", "after": "<paging.next.after>"}]}

    200 {"status": "COMPLETE",
         "results": [
           {"from": {"id": "90000000001"},
            "to": [{"toObjectId": 40000000007,
                    "associationTypes": [
                      {"category": "HUBSPOT_DEFINED", "typeId": 5,
                       "label": "Deal with Primary Company"},
                      {"category": "HUBSPOT_DEFINED", "typeId": 341, "label": null}]}]}],
         "startedAt": "...", "completedAt": "..."}

An input with nothing to return (unknown or archived id, or no association to that type) is
left out of ``results`` and reported in ``errors``; the status is then 207 with ``numErrors``.
The links are the store's symmetric ones, so the ids equal what ``GET
/crm/v3/objects/{type}?associations=...`` shows for the same record.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from sandbox.hubspot.errors import validation_error
from sandbox.hubspot.schema import (
    PRIMARY_ASSOCIATION_TYPES,
    PRIMARY_LABELS,
    UNLABELED_ASSOCIATION_TYPES,
    ObjectSchema,
)
from sandbox.hubspot.store import CustomLabel, Store
from sandbox.kit.core import Response

# HubSpot changelog "Bug Fix: Batch Read Limit for HubSpot Associations API" (effective
# 2025-02-10): at most 1000 inputs, larger requests are rejected. The status and wording of that
# rejection are not stated; the sandbox answers 400 VALIDATION_ERROR (UNCONFIRMED).
MAX_INPUTS = 1000
# Associations returned per input before paging.next.after. Choice (UNCONFIRMED): 500, the
# default page size of the v4 single-record list (HS-SPEC `limit` default 500); the batch
# read's own per-input page size is not stated.
PAGE_SIZE = 500


def batch_read(
    store: Store,
    from_schema: ObjectSchema,
    to_schema: ObjectSchema,
    body: dict,
    now: Callable[[], str],
    page_size: int = PAGE_SIZE,
) -> Response:
    """The batch read response; ``now()`` stamps startedAt and completedAt."""
    started_at = now()
    pair = (from_schema.name, to_schema.name)
    unlabeled = UNLABELED_ASSOCIATION_TYPES.get(pair)
    if unlabeled is None:
        # Sandbox limit: only the type ids of schema.ASSOCIATION_TYPES are modelled. HubSpot
        # itself answers e.g. companies -> deals (type 342), which the sandbox does not know.
        raise validation_error(
            f"The sandbox models no association type from {from_schema.name} to {to_schema.name}"
        )
    primary_type = PRIMARY_ASSOCIATION_TYPES.get(pair)
    inputs = _parse_inputs(body, to_schema)
    results: list[dict] = []
    errors: list[dict] = []
    for raw_id, after_id in inputs:
        record = store.record(from_schema.name, raw_id)
        to_ids: list[int] = []
        next_id = None
        if record is not None:
            # Choice (UNCONFIRMED): an archived from-record counts as unknown.
            to_ids, next_id = store.association_page(
                from_schema.name, record.id, to_schema.name, after_id, page_size
            )
        if not to_ids:
            errors.append(_no_associations(raw_id, from_schema, to_schema))
            continue
        primary = (
            store.primary_id(from_schema.name, record.id, to_schema.name)
            if primary_type is not None
            else None
        )
        result: dict[str, Any] = {
            "from": {"id": record.id_str},
            "to": [_target(to_id, unlabeled, primary_type, to_id == primary,
                           store.custom_labels(from_schema.name, record.id, to_schema.name, to_id))
                   for to_id in to_ids],
        }
        if next_id is not None:
            # Spec: paging is present only when there are more; "link" is deprecated, omitted.
            result["paging"] = {"next": {"after": encode_cursor(to_schema, next_id)}}
        results.append(result)
    body_out: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started_at,
        "completedAt": now(),
    }
    if not errors:
        return Response(200, body_out)
    body_out["numErrors"] = len(errors)
    body_out["errors"] = errors
    return Response(207, body_out)  # HS-SPEC: 207 "multiple statuses" (...WithErrors schema)


def _target(to_id: int, unlabeled: int, primary_type: int | None, is_primary: bool,
            custom: list[CustomLabel]) -> dict:
    types = [{"category": "HUBSPOT_DEFINED", "typeId": unlabeled, "label": None}]
    if is_primary:
        # Choice (UNCONFIRMED): the labelled primary type is listed before the plain one.
        types.insert(0, {"category": "HUBSPOT_DEFINED", "typeId": primary_type,
                         "label": PRIMARY_LABELS[primary_type]})
    # The account's own labels: USER_DEFINED types with their label (HubSpot's v4 guide).
    # Choice (UNCONFIRMED): listed after the HubSpot-defined ones.
    types += [{"category": "USER_DEFINED", "typeId": type_id, "label": label}
              for type_id, _, label in custom]
    # toObjectId is a JSON number on the wire (3P captures of real v4 responses; the PHP SDK
    # once read it as an int32 and overflowed, hubspot-api-php#261), although the current
    # HS-SPEC types it as a string. from.id stays a string (PublicObjectId).
    return {"toObjectId": to_id, "associationTypes": types}


def _no_associations(raw_id: str, from_schema: ObjectSchema, to_schema: ObjectSchema) -> dict:
    # The StandardError entry of 3P captures of the real API (status, category, subCategory,
    # message, context). "errors" and "links", required by the HS-SPEC schema, were absent
    # there and are omitted (UNCONFIRMED). Choice (UNCONFIRMED): an id that does not exist gets
    # the same entry; a 3P note says HubSpot's message does not tell the two apart.
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
        "message": f"No {to_schema.singular} is associated with {from_schema.singular} {raw_id}.",
        "context": {
            "fromObjectId": [raw_id],
            "fromObjectType": [from_schema.singular],
            "toObjectType": [to_schema.singular],
        },
    }


def _parse_inputs(body: dict, to_schema: ObjectSchema) -> list[tuple[str, int | None]]:
    """[(id as sent, decoded after cursor)], in request order. Choice (UNCONFIRMED): repeated
    ids are answered once per input, not de-duplicated."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise validation_error("Invalid input JSON: inputs must be a list of {id, after?}")
    if len(inputs) > MAX_INPUTS:
        raise validation_error(
            f"Too many inputs: {len(inputs)}. A batch may contain at most {MAX_INPUTS} inputs."
        )
    parsed = []
    for index, item in enumerate(inputs):
        raw_id = item.get("id") if isinstance(item, dict) else None
        # A JSON number id is accepted like its string (Jackson coerces it).
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or raw_id == "":
            raise validation_error(f"Invalid input JSON: inputs[{index}].id is required")
        after = item.get("after")
        if after is not None and not isinstance(after, str):
            raise validation_error(f"Invalid input JSON: inputs[{index}].after must be a string")
        parsed.append((str(raw_id), decode_cursor(to_schema, after) if after else None))
    return parsed


def encode_cursor(to_schema: ObjectSchema, to_id: int) -> str:
    """Shaped like HubSpot's association cursors: base64 of "<toObjectTypeId>-<toObjectId>"
    with the padding URL-encoded (the changelog's example "MC0yLTE1OTc0MDA2NTg%3D" is
    "0-2-1597400658"); clients send it back as they got it."""
    raw = f"{to_schema.type_id}-{to_id}".encode()
    return base64.b64encode(raw).decode().replace("=", "%3D")


def decode_cursor(to_schema: ObjectSchema, cursor: str) -> int:
    try:
        text = unquote(cursor).rstrip("=")
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True).decode()
        type_id, _, to_id = raw.rpartition("-")
        if type_id != to_schema.type_id:
            raise ValueError(raw)
        return int(to_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise validation_error(f"Invalid paging cursor after={cursor}") from None
