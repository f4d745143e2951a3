"""Mappings read vendor records into unified ones and write unified payloads back."""

from __future__ import annotations

import copy
import datetime as dt
import textwrap
from decimal import Decimal

import pytest

from engine import convert
from engine.loader import load_connector, load_mapping

HUBSPOT = "connectors/hubspot.yaml"


def mappings():
    found, problems = load_mapping("mappings/hubspot.yaml")
    assert problems == []
    return found


def test_read_converts_types_and_keeps_unmapped_fields_in_custom():
    deal = mappings()["deal"]
    record = {
        "id": "479475667160",
        "properties": {"amount": "3000.50", "closedate": "2026-03-09T20:29:45.981Z",
                       "dealname": "Big", "dealstage": "appointmentscheduled",
                       "pipeline": "default", "hs_object_id": "479475667160",
                       "hs_lastmodifieddate": "2026-03-09T20:29:45.981Z"},
        "createdAt": "2026-02-25T16:26:25.880Z",
        "updatedAt": "2026-03-09T20:29:45.981+02:00",
        "archived": False,
        "associations": {"companies": {"results": [{"id": "77", "type": "deal_to_company"}]}},
    }
    row = deal.read(record)
    assert row["id"] == "479475667160"
    assert row["amount"] == Decimal("3000.50")
    assert row["close_date"] == dt.date(2026, 3, 9)
    assert row["updated_at"] == dt.datetime(2026, 3, 9, 18, 29, 45, 981000, tzinfo=dt.UTC)
    assert row["company_id"] == "77" and row["contact_id"] is None
    assert row["is_deleted"] is False
    # hs_object_id and hs_lastmodifieddate repeat id and updated_at: not custom.
    assert row["custom"] == {}
    assert row["stage_id"] == "appointmentscheduled" and row["pipeline_id"] == "default"


def test_write_builds_the_nested_vendor_shape_with_translations_and_defaults():
    task = mappings()["task"]
    body = task.write({"subject": "Call back", "priority": "urgent",
                       "due_date": dt.date(2026, 12, 15), "custom": {"hs_task_reminders": "1"}},
                      apply_defaults=True)
    assert body == {"properties": {
        "hs_task_subject": "Call back", "hs_task_priority": "HIGH",
        "hs_timestamp": "2026-12-15T00:00:00.000Z", "hs_task_status": "NOT_STARTED",
        "hs_task_type": "TODO", "hs_task_reminders": "1"}}


def test_update_writes_only_what_the_payload_has():
    task = mappings()["task"]
    assert task.write({"priority": "low"}, apply_defaults=False) == {
        "properties": {"hs_task_priority": "LOW"}}


def test_round_trip_through_both_directions():
    call = mappings()["call"]
    unified = {"subject": "Intro", "direction": "inbound", "duration_seconds": 95,
               "outcome": "no_answer", "started_at": dt.datetime(2026, 5, 1, 7, 25, 37,
                                                                 tzinfo=dt.UTC)}
    vendor = call.write(unified, apply_defaults=False)
    assert vendor["properties"]["hs_call_duration"] == 95000  # milliseconds on the wire
    back = call.read({"id": "1", **vendor})
    for key, value in unified.items():
        assert back[key] == value


def test_translation_reads_back_the_first_unified_value():
    task = mappings()["task"]
    assert task.read({"properties": {"hs_task_priority": "HIGH"}})["priority"] == "high"
    # A value the mapping does not know never enters an enum column: null there, and kept
    # as the vendor sent it in custom.
    row = task.read({"properties": {"hs_task_priority": "CRITICAL"}})
    assert row["priority"] is None and row["custom"]["hs_task_priority"] == "CRITICAL"


STRICT = """
models:
  deal:
    custom: "@"
    fields:
      id: {path: id, write: false}
      stage: {path: stage, values: {won: W, lost: L}}          # no enum: passes unknowns on
      pipeline: {path: pipe, values: {sales: S}, strict: true}  # strict: never
      status: {path: state, values: {open: o, won: w, lost: l}} # an enum: always strict
      amount: {path: cents, scale: 100, integer: true}
"""


def test_strict_value_maps_and_whole_cents(tmp_path, monkeypatch, caplog):
    from engine.convert import warnings_to
    from engine.store import Batch

    monkeypatch.setattr(convert, "_warned", set())  # each warning logged once per process
    path = tmp_path / "mappings" / "acme.yaml"
    path.parent.mkdir()
    path.write_text(STRICT)
    found, problems = load_mapping(path)
    assert problems == []
    deal = found["deal"]
    records = [{"id": "1", "stage": "Q", "pipe": "X", "state": "frozen", "cents": 123450},
               {"id": "2", "stage": "W", "pipe": "S", "state": "w", "cents": "99"}]
    batch = Batch(deal.model)
    seen: list[str] = []
    with caplog.at_level("WARNING", logger="crm_engine"), warnings_to(seen.append):
        deal.read_columns(records, batch.columns)
    assert batch.columns["stage"] == ["Q", "won"]
    assert batch.columns["pipeline"] == [None, "sales"]
    assert batch.columns["status"] == [None, "won"]
    assert batch.columns["custom"] == [{"pipe": "X", "state": "frozen"}, {}]
    assert batch.columns["amount"] == [Decimal("1234.50"), Decimal("0.99")]
    # Each unknown value is warned about by the field it was read for, on the run and, once
    # per field, in the log.
    unknown = {"deal.status: vendor value 'frozen' is not one the mapping knows; stored null "
               "(kept in custom)", "deal.pipeline: vendor value 'X' is not one the mapping "
               "knows; stored null (kept in custom)"}
    assert unknown <= set(seen) and unknown <= {r.getMessage() for r in caplog.records}
    # Writing: amounts go out in whole cents, halves rounded away from zero.
    assert deal.write({"amount": Decimal("12.345")}, apply_defaults=False) == {"cents": 1235}
    assert deal.write({"amount": Decimal("-12.345")}, apply_defaults=False) == {"cents": -1235}
    assert deal.write({"amount": Decimal("12.344")}, apply_defaults=False) == {"cents": 1234}


def deal_with(tmp_path, fields: str):
    """A deal mapping whose custom root is the record: an id, and `fields` (YAML lines)."""
    return load_text(tmp_path, 'models:\n  deal:\n    custom: "@"\n    fields:\n'
                               '      id: {path: id, write: false}\n'
                     + textwrap.indent(textwrap.dedent(fields).strip() + "\n", " " * 6))["deal"]


def test_an_enum_field_read_as_is_holds_only_its_declared_values(tmp_path):
    """No `values`: the vendor's own words are the enum's (open, won, lost); anything else is
    null in the column and kept in custom, as with a translation."""
    deal = deal_with(tmp_path, "status: state")
    columns = read_columns(deal, [{"id": 1, "state": "won"}, {"id": 2, "state": "frozen"}])
    assert columns["status"] == ["won", None]
    assert columns["custom"] == [{}, {"state": "frozen"}]


def test_template_looking_data_is_never_rendered():
    contact = mappings()["contact"]
    row = contact.read({"id": "1", "properties": {"firstname": "{{ 7*7 }}"}})
    assert row["first_name"] == "{{ 7*7 }}"
    body = contact.write({"first_name": "{% raw %}{{ x }}"}, apply_defaults=False)
    assert body == {"properties": {"firstname": "{% raw %}{{ x }}"}}


def test_vendor_fields_lists_requested_properties():
    """HubSpot returns only firstname, lastname and email unless `properties` names more
    (CONTRACTS 1.3): the list must hold every property the contact mapping reads, by the
    names HubSpot gives them (as in the recorded request of contacts_list_page.json)."""
    connector = load_connector(HUBSPOT)
    names = connector.mappings["contact"].vendor_fields("properties")
    assert {"firstname", "lastname", "email", "phone", "hubspot_owner_id"} <= set(names)
    assert len(names) == len(set(names)) and all("." not in name for name in names)


VALUE_FUNCTIONS = """
models:
  contact:
    custom: "@"
    fields:
      id: {path: id, write: false}
      first_name: {read: "split(trim(name), ' ')[0]"}
      last_name: {read: "join(' ', split(trim(name), ' ')[1:])"}
      email: {read: "lower(trim(email))"}
      company_name: {read: "replace(org, ' Inc.', '')"}
      phone: {read: "regex(phone_text, '(\\\\+?[0-9][0-9 ]+)')"}
  company:
    custom: "@"
    fields:
      id: {path: id, write: false}
      domain: {read: "url_host(website)"}
      phone: {read: "to_string(number(employees))"}
"""


def test_value_functions_split_names_and_take_hosts_from_urls(tmp_path):
    path = tmp_path / "mappings" / "acme.yaml"
    path.parent.mkdir()
    path.write_text(VALUE_FUNCTIONS)
    found, problems = load_mapping(path)
    assert problems == []
    contact = found["contact"].read({"id": "1", "name": "  Ada King Lovelace ",
                                     "email": " Ada@Example.COM", "org": "Analytical Inc.",
                                     "phone_text": "call +44 20 7946 0000 after 5"})
    assert (contact["first_name"], contact["last_name"]) == ("Ada", "King Lovelace")
    assert contact["email"] == "ada@example.com" and contact["company_name"] == "Analytical"
    assert contact["phone"] == "+44 20 7946 0000 "
    nobody = found["contact"].read({"id": "2"})  # null in, null out: no failed read
    assert (nobody["first_name"], nobody["email"], nobody["phone"]) == (None, None, None)
    company = found["company"].read({"id": "3", "website": "http://www.EdgeComm.com/about",
                                     "employees": "1,250"})
    assert company["domain"] == "edgecomm.com" and company["phone"] == "1250"
    assert found["company"].read({"id": "4", "website": "edgecomm.com"})["domain"] == \
        "edgecomm.com"


def test_an_unknown_function_is_found_at_load_time(tmp_path):
    path = tmp_path / "mappings" / "acme.yaml"
    path.parent.mkdir()
    path.write_text(VALUE_FUNCTIONS.replace("url_host(website)", "hostname(website)"))
    _, problems = load_mapping(path)
    [problem] = problems
    assert problem.path == "models.company.fields.domain.read"
    assert "unknown function hostname()" in problem.message and "url_host" in problem.message


def test_a_write_leaves_out_read_only_fields_even_when_the_payload_has_them():
    contact = mappings()["contact"]
    body = contact.write({"id": "1001", "first_name": "Ada", "updated_at": "2026-01-01"},
                         apply_defaults=False)
    assert body == {"properties": {"firstname": "Ada"}}


def test_a_write_template_builds_the_vendor_value():
    """Pipedrive persons carry emails as a list of {value, primary, label} (CONTRACTS 3.4)."""
    found, problems = load_mapping("mappings/pipedrive.yaml")
    assert problems == []
    body = found["contact"].write({"email": "ada@example.com", "company_id": "77",
                                   "owner_id": None}, apply_defaults=False)
    assert body == {"emails": [{"value": "ada@example.com", "primary": True, "label": "work"}],
                    "org_id": 77, "owner_id": None}


def test_custom_fields_alone_are_written_under_the_custom_root():
    contact = mappings()["contact"]
    assert contact.write({"custom": {"customer_tier": "gold"}}, apply_defaults=False) == {
        "properties": {"customer_tier": "gold"}}


def test_custom_names_rename_the_custom_keys_they_know():
    contact = mappings()["contact"]
    row = contact.read({"id": "1", "properties": {"firstname": "Ada", "x_4f2a": "gold",
                                                  "plain": "kept"}},
                       custom_names={"x_4f2a": "Customer tier"})
    assert row["custom"] == {"Customer tier": "gold", "plain": "kept"}


def test_zoho_system_keys_and_excluded_fields_are_not_custom():
    """Zoho's `$`-prefixed keys are metadata (CONTRACTS 4.3), not custom fields."""
    found, problems = load_mapping("mappings/zoho.yaml")
    assert problems == []
    row = found["contact"].read({"id": "1", "First_Name": "Ada", "Full_Name": "Ada L",
                                 "$state": "save", "$approved": True, "Lead_Source": "Web"})
    assert row["first_name"] == "Ada" and row["custom"] == {"Lead_Source": "Web"}


def test_vendor_fields_give_first_keys_or_whole_paths():
    """Salesforce SOQL names every field it selects, by its whole path (CONTRACTS 2.3); a
    top-level list such as HubSpot's names each first key once."""
    contact = mappings()["contact"]
    assert contact.vendor_fields() == ["id", "createdAt", "updatedAt", "archived", "properties"]
    full = contact.vendor_fields(full=True)
    assert full[:4] == ["id", "createdAt", "updatedAt", "archived"]
    assert "properties.firstname" in full and "properties" not in full
    found, problems = load_mapping("mappings/zoho.yaml")
    assert problems == []
    assert found["deal"].vendor_fields("Account_Name") == ["id"]
    assert found["deal"].vendor_fields("Account_Name", full=True) == ["id"]
    assert found["deal"].vendor_fields("Deal_Name") == []  # a field, with nothing below it


def read_columns(mapping, records, custom_names=None, context=None) -> dict[str, list]:
    """`records` read column-wise, as a sync reads a page."""
    columns: dict[str, list] = {name: [] for name in [*mapping.model.fields, "custom"]}
    mapping.read_columns(records, columns, custom_names, context=context)
    return columns


def read_both_ways(mapping, records, custom_names=None):
    """Column-wise (the sync's hot path) and record-wise reads of `records`."""
    rows = [mapping.read(record, custom_names) for record in records]
    return read_columns(mapping, records, custom_names), {
        name: [row.get(name) for row in rows] for name in [*mapping.model.fields, "custom"]}


def test_a_page_read_column_wise_equals_each_record_read_alone():
    """HubSpot sends every property as a string, but a page may hold anything: numbers,
    empty strings, nulls, a record without `properties` (CONTRACTS 1.3)."""
    contact = mappings()["contact"]
    records = [
        {"id": "1", "properties": {"firstname": "Ada", "email": "", "phone": 4420,
                                   "hs_x": "gold", "lastname": None}},
        {"id": 2, "properties": None},
        {"id": "3"},
        {"id": "4", "properties": {"firstname": "Grace", "hs_x": "", "company": "Navy",
                                   "lastname": "", "email": 12345}},
    ]
    columns, rows = read_both_ways(contact, records, {"hs_x": "Customer tier"})
    assert columns == rows
    assert columns["first_name"] == ["Ada", None, None, "Grace"]
    assert columns["last_name"] == [None, None, None, None]  # "" reads as null, like a missing key
    assert columns["email"] == [None, None, None, "12345"]  # odd JSON types read as text
    assert columns["phone"] == ["4420", None, None, None]
    assert columns["id"] == ["1", "2", "3", "4"]
    assert columns["custom"][0] == {"Customer tier": "gold"}
    assert columns["custom"][1:3] == [{}, {}]  # never null: nothing unmapped is {}


def test_zoho_pages_read_column_wise_without_system_keys():
    found, _ = load_mapping("mappings/zoho.yaml")
    contact = found["contact"]
    records = [{"id": "1", "First_Name": "Ada", "$state": "save", "Lead_Source": "Web",
                "Account_Name": {"name": "Acme", "id": "77"}, "Tag": []},
               "not a record",
               {"id": "2", "Full_Name": "B", "$approved": True}]
    columns, rows = read_both_ways(contact, records)
    assert columns == rows
    assert columns["custom"] == [{"Lead_Source": "Web"}, {}, {}]
    assert columns["company_id"] == ["77", None, None]


@pytest.mark.parametrize("vendor", ["hubspot", "salesforce", "pipedrive", "zoho"])
def test_every_shipped_model_reads_a_page_column_wise_as_record_by_record(vendor):
    found, problems = load_mapping(f"mappings/{vendor}.yaml")
    assert problems == []
    for mapping in found.values():
        records = [{}, {"id": "1", "name": "x"}, {"properties": {"a": {"b": "c"}}},
                   # every field, with a value of each kind a vendor sends
                   *({**dict.fromkeys(_top_keys(mapping), value),
                      "properties": dict.fromkeys(mapping.vendor_fields("properties"), value)}
                     for value in ("2026-03-09T20:29:45Z", "12", "HIGH", "true"))]
        columns, rows = read_both_ways(mapping, records)
        assert columns == rows, mapping.model.name


def _top_keys(mapping):
    return [key for key in mapping.vendor_fields() if key != "properties"]


def load_text(tmp_path, text: str) -> dict:
    path = tmp_path / "mappings" / "acme.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    found, problems = load_mapping(path)
    assert problems == []
    return found


# Pipedrive v2 moved custom fields under `custom_fields`, keyed by a 40-hex hash that differs
# per account (CONTRACTS 3.3); the root keeps the fields every account has.
LABELS_UNDER = """
models:
  deal:
    custom: {from: "@", exclude: [custom_fields]}
    fields:
      id: {path: id, write: false}
      name: title
      amount: {label: Budget, under: custom_fields}
      close_date: {label: Signed on, under: custom_fields}
      currency: {label: Currency}
      pipeline: {label: Pipeline, under: custom_fields, write: false}
"""
HASHES = {"a1" * 20: "Budget", "b2" * 20: "Signed on", "c3" * 20: "Currency",
          "d4" * 20: "Pipeline", "e5" * 20: "Region"}
BUDGET, SIGNED, CURRENCY, PIPELINE, REGION = HASHES


def test_a_labelled_field_reads_and_writes_its_key_in_the_object_it_names(tmp_path):
    deal = load_text(tmp_path, LABELS_UNDER)["deal"]
    records = [{"id": 7, "title": "Big",
                "custom_fields": {BUDGET: 1200.5, SIGNED: "2026-05-15", PIPELINE: "B2B"},
                CURRENCY: "EUR", REGION: "EMEA",
                BUDGET: "a root key of that name is not the custom field"},
               {"id": 8, "title": "Small", "custom_fields": None}]
    columns, rows = read_both_ways(deal, records, HASHES)
    assert columns == rows
    assert columns["amount"] == [Decimal("1200.5"), None]
    assert columns["close_date"] == [dt.date(2026, 5, 15), None]
    assert columns["currency"] == ["EUR", None]
    assert columns["pipeline"] == ["B2B", None]
    # Custom holds the root's unmapped keys, renamed by their definitions; the currency's key
    # is mapped, and the budget's key here is not the budget field (that one is under
    # custom_fields), so it stays.
    assert columns["custom"] == [{"Region": "EMEA",
                                  "Budget": "a root key of that name is not the custom field"},
                                 {}]
    body = deal.write({"name": "Big", "amount": Decimal("99.90"),
                       "close_date": dt.date(2026, 6, 1), "currency": "USD",
                       "pipeline": "read-only"}, apply_defaults=False, custom_names=HASHES)
    assert body == {"title": "Big", CURRENCY: "USD",
                    "custom_fields": {BUDGET: 99.9, SIGNED: "2026-06-01"}}


def test_a_page_reads_a_field_its_account_lacks_as_null_and_every_record_as_live(
        tmp_path, monkeypatch, caplog):
    """A labelled field the account's field list does not name reads null, with a warning
    for each such field (a field deleted in the CRM must not stop a sync); a model that maps
    no deletion flag says live (false, never null: `WHERE NOT is_deleted` keeps every listed
    row); `raw_records` keeps each record."""
    from engine.mapping import ReadContext

    monkeypatch.setattr(convert, "_warned", set())  # each warning logged once per process
    deal = load_text(tmp_path, LABELS_UNDER)["deal"]
    records = [{"id": 7, "title": "Big", CURRENCY: "EUR"}, {"id": 8, "title": "Small"}]
    names = {key: name for key, name in HASHES.items() if name not in ("Currency", "Pipeline")}
    context = ReadContext(custom_names=names, raw=True)
    warned: list[str] = []
    with caplog.at_level("WARNING", logger="crm_engine"), convert.warnings_to(warned.append):
        columns = read_columns(deal, records, context=context)
    missing = [f"deal.{f}: no custom field labelled {label!r} in this account; stored null"
               for f, label in (("currency", "Currency"), ("pipeline", "Pipeline"))]
    assert warned == missing and [r.getMessage() for r in caplog.records] == missing
    assert columns["currency"] == columns["pipeline"] == [None, None]
    assert columns["is_deleted"] == [False, False]
    assert columns["raw"] == records
    assert read_columns(deal, records, context=ReadContext(custom_names=names)).get("raw") is None


# Shapes no shipped mapping has, each valid: a custom root two keys deep with a merged object
# beside it, a labelled field listed before plain ones, a list path (for writing) read from
# elsewhere, a path three keys deep, fields whose path is the custom root or the merged object.
SHAPES = """
models:
  deal:
    custom: {from: data.props, merge: [data.extra]}
    fields:
      id: {path: id, write: false}
      amount: {label: Budget, under: data.props}
      name: {path: [data, props, deal.name], read: title}
      currency: data.props.money.code
      pipeline: data.props
      pipeline_id: data.extra
"""


def test_unusual_mapping_shapes_read_as_declared(tmp_path):
    deal = load_text(tmp_path, SHAPES)["deal"]
    record = {"id": 1, "title": "Big",
              "data": {"props": {"deal.name": "written here, read elsewhere", "b1": "99",
                                 "money": {"code": "EUR"}, "other": "x",
                                 "title": "a custom field named like a root key"},
                       "extra": {"x1": 5}}}
    columns = read_columns(deal, [record, {"id": 2}], {"b1": "Budget"})
    assert columns["name"] == ["Big", None]
    assert columns["amount"] == [Decimal("99"), None]
    assert columns["currency"] == ["EUR", None]
    # Under the custom root: what no field maps (money is the currency's, deal.name the
    # name's, b1 the budget's), and the merged object's keys.
    assert columns["custom"] == [{"other": "x", "title": "a custom field named like a root key",
                                  "x1": 5}, {}]


def test_an_object_merged_from_deeper_down_is_cut_out_of_its_holder(tmp_path):
    """`merge: [data.extra]` under a custom root of `@`: extra's fields are custom, under
    their names; extra itself is not repeated inside data, whose other keys stay custom."""
    deal = load_text(tmp_path, """
models:
  deal:
    custom: {from: "@", merge: [data.extra]}
    fields:
      id: {path: id, write: false}
      name: title
""")["deal"]
    records = [{"id": 1, "title": "Big", "other": 1,
                "data": {"extra": {"x1": 5}, "note": "n", "deeper": {"extra": 7}}},
               {"id": 2, "data": {"extra": {"x1": 6}}},  # data held only extra
               {"id": 3, "data": "not an object"}, {"id": 4, "data": 0},
               {"id": 5, "data": {"extra": 0, "note": ""}}]  # nothing merged: nothing cut
    kept = copy.deepcopy(records)
    columns = read_columns(deal, records)
    assert columns["custom"] == [
        {"other": 1, "x1": 5, "data": {"note": "n", "deeper": {"extra": 7}}},
        {"x1": 6},
        {"data": "not an object"}, {"data": 0}, {"data": {"extra": 0, "note": ""}}]
    assert records == kept  # the records themselves are untouched
    # Three keys down: each object on the way keeps its other keys, and goes if left empty.
    deeper = load_text(tmp_path, """
models:
  deal:
    custom: {from: "@", merge: [data.more.extra]}
    fields:
      id: {path: id, write: false}
""")["deal"]
    records = [{"id": 1, "data": {"more": {"extra": {"x1": 5}, "m": 1}, "note": "n"}},
               {"id": 2, "data": {"more": {"extra": {"x1": 6}}, "note": "n"}},
               {"id": 3, "data": {"more": {"extra": {"x1": 7}}}},
               {"id": 4, "data": {"more": None}}]
    kept = copy.deepcopy(records)
    assert read_columns(deeper, records)["custom"] == [
        {"x1": 5, "data": {"more": {"m": 1}, "note": "n"}}, {"x1": 6, "data": {"note": "n"}},
        {"x1": 7}, {"data": {"more": None}}]
    assert records == kept


def test_a_custom_root_at_the_record_leaves_out_the_keys_fields_read(tmp_path):
    """With `custom: "@"` no top-level key a field reads or writes is custom: a list path's
    first key, and the read expression's keys where it has one."""
    deal = deal_with(tmp_path, """
        name: {path: [data, deal.name]}
        currency: {path: [money, code], read: cur}""")
    record = {"id": 1, "data": {"deal.name": "Big"}, "money": {"code": "USD"}, "cur": "EUR",
              "other": 1}
    columns = read_columns(deal, [record])
    assert (columns["name"], columns["currency"]) == (["Big"], ["EUR"])
    assert columns["custom"] == [{"other": 1}]
    # What a properties= list asks for: what each field writes, and what it reads.
    assert deal.vendor_fields() == ["id", "data", "money", "cur"]


# The Pipedrive mapping's shape: the record's custom fields merged into `custom` beside its
# other unmapped fields, under their names; a labelled field with no `under` is one of those.
LABELS_MERGED = """
models:
  deal:
    custom: {from: "@", merge: [custom_fields]}
    fields:
      id: {path: id, write: false}
      name: title
      amount: {label: Budget}
"""


def test_a_labelled_field_lives_in_the_merged_custom_object(tmp_path):
    deal = load_text(tmp_path, LABELS_MERGED)["deal"]
    records = [{"id": 7, "title": "Big", "visible_to": 3,
                "custom_fields": {BUDGET: 1200.5, REGION: "EMEA"}},
               {"id": 8, "title": "Small", "custom_fields": None}]
    columns, rows = read_both_ways(deal, records, HASHES)
    assert columns == rows
    assert columns["amount"] == [Decimal("1200.5"), None]
    assert columns["custom"] == [{"visible_to": 3, "Region": "EMEA"}, {}]
    assert deal.write({"amount": Decimal("99.90")}, apply_defaults=False,
                      custom_names=HASHES) == {"custom_fields": {BUDGET: 99.9}}


def test_choice_fields_show_their_option_labels_in_custom(tmp_path):
    """Pipedrive's enum and set fields hold option ids (v2 integers, v1 strings, a set as a
    list or as ids joined by commas); the definitions' options give their labels."""
    from engine.mapping import ReadContext

    deal = load_text(tmp_path, LABELS_MERGED)["deal"]
    options = {REGION: {"1": "EMEA", "2": "APAC"}, "e6" * 20: {"7": "Red", "8": "Blue"},
               "visible_to": {"3": "Owner only"}}
    names = {**HASHES, "e6" * 20: "Colors"}
    context = ReadContext(custom_names=names, custom_options=options)
    records = [{"id": 1, "title": "a", "visible_to": 3,
                "custom_fields": {REGION: 2, "e6" * 20: [7, 8]}},
               {"id": 2, "title": "b", "visible_to": "9",
                "custom_fields": {REGION: "1", "e6" * 20: "8,7"}},
               {"id": 3, "title": "c", "visible_to": None,
                "custom_fields": {REGION: 5, "e6" * 20: "7,99"}},
               {"id": 4, "title": "d", "custom_fields": {"e6" * 20: [8, 99]}}]
    columns = read_columns(deal, records, context=context)
    assert columns["custom"] == [
        {"visible_to": "Owner only", "Region": "APAC", "Colors": ["Red", "Blue"]},
        {"visible_to": "9", "Region": "EMEA", "Colors": ["Blue", "Red"]},
        # Ids the definitions do not list (an option deleted since) stay as they came.
        {"visible_to": None, "Region": 5, "Colors": "7,99"},
        {"Colors": ["Blue", 99]}]


LOOKUPS = """
models:
  deal:
    custom: "@"
    fields:
      id: {path: id, write: false}
      stage_id: stage_id
      stage: {path: stage_id, lookup: {model: stage, value: label}}
      pipeline: {path: pipeline_id, lookup: {model: pipeline, value: label}}
"""


def test_lookups_read_labels_and_say_which_keys_they_do_not_know(tmp_path, monkeypatch,
                                                                  caplog):
    from engine import convert
    from engine.mapping import ReadContext

    monkeypatch.setattr(convert, "_warned", set())  # what this process already logged once
    deal = load_text(tmp_path, LOOKUPS)["deal"]
    context = ReadContext(references={
        "stage": [{"id": "3", "label": "Won"}, {"id": "4", "label": "Lost"}],
        "pipeline": [{"id": "1", "label": "Sales"}]})
    records = [{"id": 1, "stage_id": 3, "pipeline_id": 1},
               {"id": 2, "stage_id": "4", "pipeline_id": ""},
               {"id": 3, "stage_id": 9, "pipeline_id": 7},
               {"id": 4, "stage_id": None, "pipeline_id": 7}]
    warned: list[str] = []
    with caplog.at_level("WARNING", logger="crm_engine"), convert.warnings_to(warned.append):
        columns = read_columns(deal, records, context=context)
    assert columns["stage"] == ["Won", "Lost", None, None]
    assert columns["pipeline"] == ["Sales", None, None, None]
    unknown_stage = "deal.stage: no stage with id 9 among this connection's; stored null"
    unknown_pipeline = "deal.pipeline: no pipeline with id 7 among this connection's; stored null"
    # Every unknown key on the run; in the log once per field. No value is no key at all.
    assert warned == [unknown_stage, unknown_pipeline, unknown_pipeline]
    assert [r.getMessage() for r in caplog.records] == [unknown_stage, unknown_pipeline]
    assert [deal.record_id(r) for r in records] == ["1", "2", "3", "4"]
    assert deal.record_id({"title": "no id"}) is None


def test_a_looked_up_field_is_not_written(tmp_path):
    from engine.errors import InputError

    deal = load_text(tmp_path, LOOKUPS)["deal"]
    with pytest.raises(InputError) as info:
        deal.write({"stage": "Won"}, apply_defaults=False)
    assert str(info.value).endswith("stage: is read from the stages table, not written: "
                                    "write stage_id instead")
    with pytest.raises(InputError) as info:
        deal.write({"pipeline": "Sales"}, apply_defaults=False)
    assert str(info.value).endswith("pipeline: is read from the pipelines table, not written")


MERGED_EDGES = """
models:
  deal:
    custom: {from: "@", merge: [custom_fields]}
    fields:
      id: {path: id, write: false}
      name: title
      close_date: custom_fields.""" + SIGNED + "\n"


def test_merged_custom_fields_keep_keys_without_names_and_give_way_to_root_keys(tmp_path):
    deal = load_text(tmp_path, MERGED_EDGES)["deal"]
    records = [{"id": 1, "title": "a", "custom_fields": None},
               {"id": 2, "title": "b", "Region": "root's",
                "custom_fields": {SIGNED: "2026-01-02", REGION: "EMEA", "f0" * 20: 1}}]
    columns, rows = read_both_ways(deal, records, HASHES)
    assert columns == rows
    assert columns["close_date"] == [None, dt.date(2026, 1, 2)]
    # A record without custom fields does not stop the next; the mapped one is not custom; a
    # name a root key already has keeps the custom field's key; no name, the key.
    assert columns["custom"] == [{}, {"Region": "root's", REGION: "EMEA", "f0" * 20: 1}]
    columns, _ = read_both_ways(deal, records)  # no field definitions: every key as it is
    assert columns["custom"][1] == {"Region": "root's", REGION: "EMEA", "f0" * 20: 1}


def test_vendor_fields_of_an_expression_are_the_paths_it_reads(tmp_path):
    """A field read by an expression asks for every key it reads, but never `$` keys (record
    metadata)."""
    deal = load_text(tmp_path, """
models:
  deal:
    custom: "@"
    fields:
      id: {path: id, write: false}
      status:
        read: >-
          IsWon && 'won' || ("$meta".closed && 'lost' || Stage.Closed && 'lost')
      amount: {label: Budget}
      name: Name
""")["deal"]
    # (A labelled field's key comes per account: it is not asked for by name here.)
    assert deal.vendor_fields() == ["id", "IsWon", "Stage", "Name"]
    assert deal.vendor_fields(full=True) == ["id", "IsWon", "Stage.Closed", "Name"]
    assert deal.vendor_fields("Stage") == ["Closed"]


# HubSpot keeps every property, custom or not, under `properties` (CONTRACTS 1.3).
LABELS_IN_PROPERTIES = """
models:
  contact:
    custom: properties
    fields:
      id: {path: id, write: false}
      first_name: properties.firstname
      job_title: {label: Job role}
"""


def test_a_labelled_field_defaults_to_the_custom_root(tmp_path):
    contact = load_text(tmp_path, LABELS_IN_PROPERTIES)["contact"]
    names = {"x_role_12": "Job role"}
    records = [{"id": "1", "x_role_12": "root", "properties": {"firstname": "Ada",
                                                               "x_role_12": "CTO", "tier": "1"}},
               {"id": "2", "properties": {"firstname": "Bo"}}]
    columns, rows = read_both_ways(contact, records, names)
    assert columns == rows
    assert columns["job_title"] == ["CTO", None] and columns["custom"] == [{"tier": "1"}, {}]
    assert contact.write({"job_title": "CEO"}, apply_defaults=False, custom_names=names) == {
        "properties": {"x_role_12": "CEO"}}


# Pipedrive v2 sends ids as plain integers, v1 often as strings (CONTRACTS 3.3); an empty string
# is no value at all (the mapping reads it as null), not an unknown one.
STRICT_IDS = """
models:
  deal:
    custom: "@"
    fields:
      id: {path: id, write: false}
      pipeline: {path: pipeline_id, values: {sales: 1, renewals: 2}, strict: true}
"""


def test_a_strict_field_knows_its_values_whatever_their_json_type(tmp_path):
    deal = load_text(tmp_path, STRICT_IDS)["deal"]
    records = [{"id": "1", "pipeline_id": 2}, {"id": "2", "pipeline_id": "1"},
               {"id": "3", "pipeline_id": ""}, {"id": "4", "pipeline_id": 9}]
    columns, rows = read_both_ways(deal, records)
    assert columns == rows
    assert columns["pipeline"] == ["renewals", "sales", None, None]
    # Only the unknown value is kept in custom; an empty one is no value at all.
    assert columns["custom"] == [{}, {}, {}, {"pipeline_id": 9}]


def test_vendor_fields_below_a_nested_object():
    """Salesforce reads related records' fields by dotted path (`Account.Owner.Name`)."""
    from engine.mapping import ModelMapping, build_field
    from engine.models import unified_models

    model = unified_models()["contact"]
    contact = ModelMapping(model, [
        build_field(model, "id", {"path": "Id", "write": False}),
        build_field(model, "company_name", {"path": "Account.Name", "write": False}),
        build_field(model, "owner_id", {"path": "Account.Owner.Id", "write": False}),
        build_field(model, "job_title", {"path": "Account.Owner.Title", "write": False})],
        custom_path=None)
    assert contact.vendor_fields("Account.Owner") == ["Id", "Title"]
    assert contact.vendor_fields("Account.Owner", full=True) == ["Id", "Title"]
    assert contact.vendor_fields("Account", full=True) == ["Name", "Owner.Id", "Owner.Title"]


@pytest.mark.parametrize("expression", [
    "associations.companies && (associations.companies.paging"
    " || associations.companies.results[?!ends_with(to_string(type), '_unlabeled')])",
    "a || b.c", "a.b && `0`", "a && b", "x || y", "a.b || length(a)",
])
def test_a_path_first_in_and_or_reads_as_jmespath_does(expression):
    """`path && rest` and `path || rest` read the path in Python (per-record tests on the
    sync's hot path) and give what the jmespath interpreter gives, truth rules included."""
    import jmespath

    from engine.extract import _OPTIONS, ExpressionFailed, compile_getter

    getter, reference = compile_getter(expression), jmespath.compile(expression)
    documents = [
        {}, {"a": 0, "b": {"c": 2}}, {"a": "", "b": {"c": False}}, {"a": [], "b": 3},
        {"a": {"b": {}}, "x": False, "y": None}, {"a": {"b": "z"}}, {"a": None, "x": 0},
        {"associations": {"companies": {"results": [
            {"id": "1", "type": "contact_to_company_unlabeled"}]}}},
        {"associations": {"companies": {"results": [{"id": "1", "type": "contact_to_company"}]}}},
        {"associations": {"companies": {"results": [], "paging": {"next": {"after": "1"}}}}},
    ]
    for document in documents:
        try:
            expected = reference.search(document, options=_OPTIONS)
        except jmespath.exceptions.JMESPathError:
            with pytest.raises(ExpressionFailed):
                getter(document)
            continue
        assert getter(document) == expected, document


FAILING_READS = """
models:
  contact:
    custom: "@"
    fields:
      id: {path: id, write: false}
      first_name: {read: "join(' ', names)"}
      last_name: {read: "join(' ', surnames)"}
      job_title: {read: "rank > `2` && 'senior' || 'junior'"}
"""


def test_a_read_that_fails_on_one_record_stores_null_and_says_so_per_field(tmp_path,
                                                                          monkeypatch, caplog):
    """`join` over something that is not a list fails for that record only: the field reads
    as null, the run keeps a warning per record, the log one per field."""
    from engine import convert

    monkeypatch.setattr(convert, "_warned", set())  # what this process already logged once
    contact = load_text(tmp_path, FAILING_READS)["contact"]
    records = [{"id": 1, "names": ["Ada"], "surnames": ["Lovelace"], "rank": 3},
               {"id": 2, "names": "Grace", "surnames": 7, "rank": 1},
               # jmespath orders mixed types with Python's `<`, which raises TypeError.
               {"id": 3, "names": 5, "surnames": ["Hopper"], "rank": "three"}]
    warned: list[str] = []
    with caplog.at_level("WARNING", logger="crm_engine"), convert.warnings_to(warned.append):
        columns = read_columns(contact, records)
    assert columns["first_name"] == ["Ada", None, None]
    assert columns["last_name"] == ["Lovelace", None, "Hopper"]
    assert columns["job_title"] == ["senior", "junior", None]
    # Each warning names the field and the expression that failed on it.
    first = "cannot read contact.first_name by `join(' ', names)`"
    last = "cannot read contact.last_name by `join(' ', surnames)`"
    title = "cannot read contact.job_title by `rank > `2` && 'senior' || 'junior'`"
    assert sorted(w.split(" (")[0] for w in warned) == [first, first, title, last]
    assert all(w.endswith("; storing null") for w in warned)
    assert sorted(r.getMessage().split(" (")[0] for r in caplog.records) == [first, title, last]


def test_links_are_read_where_the_mapping_declares_them(tmp_path):
    linked = load_text(tmp_path, """
models:
  deal:
    associations:
      - {to: company, id: org_id}
      - {to: contact, each: people, id: "@"}
    fields:
      id: {path: id, write: false}
""")["deal"]
    assert linked.read_links([{"id": 1, "org_id": 7, "people": [3, 4]}, {"id": 2}]) == [
        [("company", "7", None), ("contact", "3", None), ("contact", "4", None)], []]
    plain = load_text(tmp_path, "models:\n  deal:\n    fields:\n      id: id\n")["deal"]
    assert plain.read_links([{"id": 1, "org_id": 7}]) is None  # the table is left be
