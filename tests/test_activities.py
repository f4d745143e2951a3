"""The activity streams (tasks, calls, meetings, notes) on payloads recorded from the real
vendors: each stream keeps the records it should, its cursor reads, and its mapping reads the
recorded values, times in UTC. No network: the records go through the streams' own specs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from engine.engine import PROJECT_ROOT
from engine.loader import load_connector

FIXTURES = Path(__file__).resolve().parent / "fixtures"
UTC = dt.UTC


def recorded(vendor: str, name: str):
    return json.loads((FIXTURES / vendor / name).read_text())


@pytest.fixture(scope="module")
def connectors():
    return {name: load_connector(PROJECT_ROOT / "connectors" / f"{name}.yaml")
            for name in ("hubspot", "pipedrive", "zoho")}


def page(connectors, vendor: str, stream: str, body):
    """The stream's records in a response body, each as the stream lands it."""
    spec = connectors[vendor].streams[stream]
    records, _ = spec.split(spec.records(body))
    return [spec.mapping.read(r) for r in records], records


def test_hubspot_tasks_from_a_recorded_list_page(connectors):
    rows, records = page(connectors, "hubspot", "tasks",
                         recorded("hubspot", "tasks_list_page_with_associations.json"))
    assert len(rows) == 3
    first = rows[0]
    assert first["subject"] == "(Sample task) Follow up with Brian" and first["type"] == "todo"
    assert first["updated_at"] == dt.datetime(2026, 2, 28, 15, 18, 31, 76000, tzinfo=UTC)
    assert first["contact_id"] == "713802347732"
    # HubSpot's NONE priority is no unified value: null, kept as it came in custom.
    assert first["priority"] is None and first["custom"]["hs_task_priority"] == "NONE"
    spec = connectors["hubspot"].streams["tasks"]
    assert spec.incremental.cursor(records[0]) == "2026-02-28T15:18:31.076Z"


def test_pipedrive_activity_types_split_into_calls_meetings_and_tasks(connectors):
    activity = recorded("pipedrive", "v1_activity_get.json")["data"]  # a call
    body = {"data": [activity, {**activity, "id": 2, "type": "meeting"},
                     {**activity, "id": 3, "type": "deadline"}]}
    calls, _ = page(connectors, "pipedrive", "calls", body)
    meetings, _ = page(connectors, "pipedrive", "meetings", body)
    tasks, _ = page(connectors, "pipedrive", "tasks", body)
    assert [r["id"] for r in calls] == ["1"] and [r["id"] for r in meetings] == ["2"]
    assert [r["id"] for r in tasks] == ["3"]
    call = calls[0]
    assert call["subject"] == "Discovery Call with Jane Smith" and call["duration_seconds"] == 1800
    assert (call["contact_id"], call["company_id"], call["deal_id"]) == ("1", "1", "1")
    # due_date and due_time are UTC; a meeting starts then.
    assert meetings[0]["started_at"] == dt.datetime(2026, 5, 20, 10, 0, tzinfo=UTC)
    assert meetings[0]["duration_seconds"] == 1800


def test_pipedrive_notes_from_a_recorded_v1_list(connectors):
    rows, records = page(connectors, "pipedrive", "notes",
                         recorded("pipedrive", "v1_notes_list_page.json"))
    [note] = rows
    assert note["body"] == "Test note created via Nango action"
    assert note["updated_at"] == dt.datetime(2026, 5, 15, 10, 9, 46, tzinfo=UTC)  # v1: UTC
    assert (note["contact_id"], note["company_id"], note["deal_id"]) == ("1", "1", "1")
    # The incremental read (v1 recents) wraps each change; a deleted note is not a record.
    spec = connectors["pipedrive"].streams["notes"]
    recents = {"data": [{"item": "note", "id": 3, "data": records[0]},
                        {"item": "note", "id": 4, "data": {**records[0], "id": 4,
                                                           "active_flag": False}}]}
    assert [r["id"] for r in spec.incremental.pages.records(recents)] == [3]
    assert [spec.deletes.id(r) for r in spec.deletes.pages.records(recents)] == [4]


def test_zoho_activities_from_recorded_list_pages(connectors):
    [task, other], _ = page(connectors, "zoho", "tasks",
                            recorded("zoho", "v2_tasks_list_page.json"))
    assert (task["subject"], task["status"], task["priority"]) == (
        "Test Task from Nango", "not_started", "medium")
    assert (other["status"], other["priority"]) == ("completed", "urgent")
    assert (other["contact_id"], other["deal_id"]) == ("7328395000000680147",
                                                       "7328395000000680188")
    assert task["updated_at"] == dt.datetime(2026, 5, 14, 9, 51, 45, tzinfo=UTC)  # +03:00
    assert task["owner_id"] == "7328395000000605001"
    calls, _ = page(connectors, "zoho", "calls", recorded("zoho", "v2_calls_list_page.json"))
    # The second call is about a lead: no unified contact, company or deal.
    assert [(c["contact_id"], c["deal_id"], c["company_id"]) for c in calls] == [
        ("7328395000000680155", "7328395000000680197", None), (None, None, None)]
    notes, _ = page(connectors, "zoho", "notes", recorded("zoho", "v2_notes_list_page.json"))
    assert [n["contact_id"] for n in notes] == ["7328395000000680151", "7328395000000680150"]
