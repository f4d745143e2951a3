"""Value conversion between the vendors' wire values and unified values, one function at a time
(the formats each vendor uses are in ../shared/vendor-api/CONTRACTS.md)."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from decimal import Decimal

import pytest

from engine.convert import (
    ConversionError,
    format_date,
    format_duration,
    format_timestamp,
    parse_date,
    parse_duration,
    parse_timestamp,
    reader,
    unified_value,
    writer,
)

UTC = dt.UTC


# -- durations: Pipedrive activities "hh:mm", Zoho calls "mm:ss" -------------------------------


@pytest.mark.parametrize(("text", "fmt", "seconds"), [
    ("00:30", "hh:mm", 1800), ("01:35", "mm:ss", 95), ("1:02:03", "hh:mm:ss", 3723),
    ("10:00", "mm:ss", 600),
])
def test_a_clock_duration_reads_as_seconds(text, fmt, seconds):
    assert parse_duration(text, fmt) == seconds


def test_a_duration_with_the_wrong_number_of_parts_is_an_error():
    with pytest.raises(ConversionError, match=r"^'1:02:03' is not a mm:ss duration$"):
        parse_duration("1:02:03", "mm:ss")


@pytest.mark.parametrize(("seconds", "fmt", "text"), [
    (1800, "hh:mm", "00:30"), (95, "mm:ss", "01:35"), (3723, "hh:mm:ss", "01:02:03"),
    (36000, "hh:mm", "10:00"),
])
def test_seconds_write_as_a_clock_duration(seconds, fmt, text):
    assert format_duration(seconds, fmt) == text


def test_durations_read_and_write_through_a_mapping():
    read = reader("integer", ("mm:ss",), None, None)
    write = writer("integer", ("mm:ss",), None, None)
    assert read("01:35") == 95 and write(95) == "01:35"


# -- dates -------------------------------------------------------------------------------------


def test_a_date_reads_from_iso_text_a_date_or_a_datetime():
    assert parse_date("2026-03-09") == dt.date(2026, 3, 9)
    assert parse_date(dt.date(2026, 3, 9)) == dt.date(2026, 3, 9)
    # A datetime is a date too, but the unified value is the date alone.
    day = parse_date(dt.datetime(2026, 3, 9, 23, 30, tzinfo=UTC))
    assert day == dt.date(2026, 3, 9) and type(day) is dt.date
    assert parse_date("2026-03-09T20:29:45.981Z") == dt.date(2026, 3, 9)


def test_epoch_digits_are_not_an_iso_date():
    """An ISO date field holding a number (epoch seconds, say) reads as null, not as a day in
    January 1970 (as epoch milliseconds would)."""
    assert reader("date", (), None, None, "deal.close_date_digits")("1773088185") is None


def test_a_date_reads_in_its_declared_format():
    assert parse_date("09/03/2026", "%d/%m/%Y") == dt.date(2026, 3, 9)
    assert parse_date("09/03/2026 14:00", "%d/%m/%Y %H:%M") == dt.date(2026, 3, 9)


def test_a_date_writes_as_iso_or_in_its_declared_format():
    assert format_date(dt.date(2026, 12, 15)) == "2026-12-15"
    # HubSpot's task due date is a timestamp at midnight UTC (mappings/hubspot.yaml).
    assert format_date(dt.date(2026, 12, 15), "%Y-%m-%dT00:00:00.000Z") == \
        "2026-12-15T00:00:00.000Z"
    assert format_date(dt.date(2026, 12, 15), "epoch_ms") == 1_797_292_800_000


# -- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "fmt", "expected"), [
    ("2026-03-09T20:29:45.981Z", "iso8601", dt.datetime(2026, 3, 9, 20, 29, 45, 981000, UTC)),
    ("2026-05-14T12:51:40+03:00", "iso8601", dt.datetime(2026, 5, 14, 9, 51, 40, tzinfo=UTC)),
    ("2026-05-14 12:51:40", "iso8601", dt.datetime(2026, 5, 14, 12, 51, 40, tzinfo=UTC)),
    ("1773088185981", "iso8601", dt.datetime(2026, 3, 9, 20, 29, 45, 981000, UTC)),
    (1773088185981, "epoch_ms", dt.datetime(2026, 3, 9, 20, 29, 45, 981000, UTC)),
    (1773088185, "epoch_s", dt.datetime(2026, 3, 9, 20, 29, 45, tzinfo=UTC)),
    ("2026-03-09T20:29:45.000+0000", "%Y-%m-%dT%H:%M:%S.%f%z",
     dt.datetime(2026, 3, 9, 20, 29, 45, tzinfo=UTC)),
])
def test_timestamps_read_as_aware_utc(value, fmt, expected):
    parsed = parse_timestamp(value, fmt)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(("value", "fmt", "expected"), [
    (dt.datetime(2026, 3, 9, 20, 29, 45, tzinfo=UTC), "iso8601", "2026-03-09T20:29:45Z"),
    (dt.datetime(2026, 3, 9, 20, 29, 45, 981000, UTC), "iso8601", "2026-03-09T20:29:45.981Z"),
    (dt.datetime(2026, 3, 9, 22, 29, 45, tzinfo=dt.timezone(dt.timedelta(hours=2))), "iso8601",
     "2026-03-09T20:29:45Z"),
    (dt.datetime(2026, 3, 9, 20, 29, 45), "iso8601", "2026-03-09T20:29:45Z"),  # naive: UTC
    (dt.datetime(2026, 3, 9, 20, 29, 45, 981000, UTC), "epoch_ms", 1773088185981),
    (dt.datetime(2026, 3, 9, 20, 29, 45, tzinfo=UTC), "epoch_s", 1773088185),
    (dt.datetime(2026, 3, 9, 20, 29, 45, tzinfo=UTC), "%Y-%m-%d %H:%M:%S", "2026-03-09 20:29:45"),
])
def test_timestamps_write_in_utc(value, fmt, expected):
    assert format_timestamp(value, fmt) == expected


def test_a_timestamp_reads_in_its_declared_format_then_iso():
    # Zoho call start times (mappings/zoho.yaml): the declared format, then ISO 8601.
    read = reader("timestamp", ("%d/%m/%Y %H:%M",), None, None, "call.started_at")
    assert read("09/03/2026 20:29") == dt.datetime(2026, 3, 9, 20, 29, tzinfo=UTC)
    assert read("2026-03-09T20:29:00Z") == dt.datetime(2026, 3, 9, 20, 29, tzinfo=UTC)
    assert writer("timestamp", ("%d/%m/%Y %H:%M",), None, None)(
        dt.datetime(2026, 3, 9, 20, 29, tzinfo=UTC)) == "09/03/2026 20:29"


def test_a_malformed_value_reads_as_null_and_says_why_once():
    field = f"deal.close_date_{uuid.uuid4().hex[:8]}"  # warned once per process, so a new one
    read = reader("date", ("%d/%m/%Y",), None, None, field)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("crm_engine.convert")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        assert read("31/02/2026") is None
        assert read("not a date") is None
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    [record] = records
    assert record.getMessage().startswith(
        f"cannot read {field} as date ('31/02/2026' matches none of the formats "
        "['%d/%m/%Y']: ")
    assert record.getMessage().endswith("); storing null")
    assert "None" not in record.getMessage()


# -- numbers -----------------------------------------------------------------------------------


def test_integers_keep_their_exact_value():
    assert unified_value("integer", 2**60 + 1) == 2**60 + 1  # beyond a float's precision
    assert unified_value("integer", "42") == 42 and type(unified_value("integer", "42")) is int
    assert unified_value("integer", 42.0) == 42


@pytest.mark.parametrize(("type_", "value", "message"), [
    ("integer", 2.5, "not a valid integer: 2.5 (not a whole number: 2.5)"),
    ("decimal", "ten", "not a valid decimal: 'ten' (not a decimal number: 'ten')"),
    ("boolean", "maybe", "not a valid boolean: 'maybe' (not a boolean: 'maybe')"),
])
def test_a_caller_value_of_the_wrong_type_says_which_and_why(type_, value, message):
    with pytest.raises(ConversionError) as info:
        unified_value(type_, value)
    assert str(info.value) == message


def test_scaled_numbers_read_and_write_in_the_vendor_unit():
    # HubSpot call durations are milliseconds; Salesforce event durations are minutes.
    assert reader("integer", (), 1000, None)("95000") == 95
    assert writer("integer", (), 1000, None)(95) == 95000
    assert reader("integer", (), 1 / 60, None)("2") == 120
    assert reader("decimal", (), 100, None)("1234") == Decimal("12.34")


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), (1, True), (0, False), (2, True), (0.0, False),
    ("true", True), (" TRUE ", True), ("Yes", True), ("1", True),
    ("false", False), ("False", False), ("NO", False), ("0", False), ("", False),
])
def test_booleans_read_from_the_ways_vendors_write_them(value, expected):
    # HubSpot sends every property as a string: "false" (CONTRACTS 1.3).
    assert unified_value("boolean", value) is expected


@pytest.mark.parametrize(("type_", "value", "expected"), [
    ("timestamp", "2026-03-09T20:29:45Z", dt.datetime(2026, 3, 9, 20, 29, 45, tzinfo=UTC)),
    ("date", "2026-03-09", dt.date(2026, 3, 9)),
    ("number", "2.5", 2.5),
    ("decimal", "3000.50", Decimal("3000.50")),
    ("string", 479475667160, "479475667160"),  # ids the vendor sends as numbers
    ("string", "Ada", "Ada"),
    ("string", None, None),
])
def test_a_caller_value_becomes_the_unified_type(type_, value, expected):
    assert unified_value(type_, value) == expected
    assert type(unified_value(type_, value)) is type(expected)


# -- readers and writers built per mapped field ------------------------------------------------


def test_a_string_field_reads_empty_as_null_and_anything_else_as_text():
    read = reader("string", (), None, None)
    assert [read(v) for v in ("Ada", "", None, 4420, 0)] == ["Ada", None, None, "4420", "0"]


def test_translated_values_read_back_and_unknown_ones_are_kept():
    """HubSpot task priorities (mappings/hubspot.yaml): unified `urgent` and `high` both write
    HIGH; HIGH reads back as the first, `urgent`."""
    values = {"urgent": "HIGH", "high": "HIGH", "low": "LOW", "yes": True}
    read = reader("string", (), None, {str(v): k for k, v in reversed(values.items())})
    assert read("HIGH") == "urgent" and read("LOW") == "low" and read("CRITICAL") == "CRITICAL"
    assert read(True) == "yes" and read("") is None
    write = writer("string", (), None, values)
    assert [write(v) for v in ("urgent", "high", "low", "other", None)] == [
        "HIGH", "HIGH", "LOW", "other", None]


def test_scaled_whole_numbers_round_half_up():
    read = reader("integer", (), 1000, None)
    assert [read("1500"), read("2500"), read("2499")] == [2, 3, 2]
    write = writer("integer", (), 0.5, None)
    assert [write(3), write(5)] == [2, 3]  # 1.5 and 2.5, half up
    assert writer("decimal", (), 100, None)(Decimal("12.345")) == 1234.5


def test_decimals_are_written_as_json_numbers():
    write = writer("decimal", (), None, None)
    assert write(Decimal("3000.50")) == 3000.5 and type(write(Decimal("3000.50"))) is float
    assert write(Decimal("3000")) == 3000 and type(write(Decimal("3000"))) is int
    assert write("n/a") == "n/a"


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-03-09T20:29:45Z", dt.datetime(2026, 3, 9, 20, 29, 45, tzinfo=UTC)),
    ("2026-03-09T22:29:45+02:00", dt.datetime(2026, 3, 9, 20, 29, 45, tzinfo=UTC)),
    ("2026-03-09 20:29:45", dt.datetime(2026, 3, 9, 20, 29, 45, tzinfo=UTC)),
    ("1773088185981", dt.datetime(2026, 3, 9, 20, 29, 45, 981000, UTC)),
    (1773088185981, dt.datetime(2026, 3, 9, 20, 29, 45, 981000, UTC)),  # epoch ms as a number
    (dt.datetime(2026, 3, 9, 20, 29, 45), dt.datetime(2026, 3, 9, 20, 29, 45, tzinfo=UTC)),
    ("yesterday", None),
])
def test_iso_timestamps_read_as_utc(value, expected):
    read = reader("timestamp", (), None, None, "contact.updated_at_iso")
    parsed = read(value)
    assert parsed == expected
    if expected is not None:
        assert parsed.tzinfo is UTC


def test_dates_and_timestamps_write_in_the_first_declared_format():
    when = dt.datetime(2026, 3, 9, 20, 29, 45, tzinfo=UTC)
    assert writer("timestamp", (), None, None)(when) == "2026-03-09T20:29:45Z"
    assert writer("timestamp", ("epoch_ms", "iso8601"), None, None)(when) == 1773088185000
    assert writer("date", (), None, None)(dt.date(2026, 3, 9)) == "2026-03-09"
    assert writer("date", ("%d/%m/%Y",), None, None)(dt.date(2026, 3, 9)) == "09/03/2026"
    assert writer("integer", ("hh:mm",), None, None)(5400) == "01:30"


@pytest.fixture
def new_york_local_time(monkeypatch):
    """The machine's local time zone set to one that is not UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_utc_whatever_the_machines_time_zone(new_york_local_time):
    naive = dt.datetime(2026, 3, 9, 20, 29, 45)
    aware = dt.datetime(2026, 3, 9, 20, 29, 45, tzinfo=UTC)
    assert format_timestamp(naive) == format_timestamp(aware) == "2026-03-09T20:29:45Z"
    read = reader("timestamp", (), None, None, "contact.updated_at_tz")
    parsed = read("2026-03-09T22:29:45+02:00")
    assert parsed == aware and parsed.tzinfo is UTC
    assert parse_timestamp("2026-03-09T22:29:45+02:00").tzinfo is UTC
    # A vendor time without an offset is UTC too (the fast ISO path and the general one).
    assert read("2026-03-09T20:29:45") == aware
    assert parse_timestamp("2026-03-09T20:29:45") == aware


@pytest.mark.parametrize("value", ["20260309", "1700000000000", "202603091200",
                                   "20260309T120000", "2026-03-09", 1700000000000])
def test_a_timestamp_field_reads_what_parse_timestamp_reads(value):
    """The reader's ISO fast path is for speed only: digits are epoch milliseconds there too
    (Python's own parser would take eight of them for a date)."""
    assert reader("timestamp", (), None, None)(value) == parse_timestamp(value)


def test_a_malformed_timestamp_is_warned_about_with_its_value():
    from engine.convert import warnings_to

    seen: list[str] = []
    with warnings_to(seen.append):
        assert reader("timestamp", (), None, None, "deal.closed_at")("next tuesday") is None
    assert seen == ["cannot read deal.closed_at as timestamp (Invalid isoformat string: "
                    "'next tuesday'); storing null"]
