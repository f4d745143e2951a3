"""Value conversion between a vendor's wire values and unified Python values.

Each converter is built once per mapped field (`reader`/`writer`), so the per-record path is a
plain function call with no parsing of the spec.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_SCALE = {"epoch_ms": 1000, "epoch_s": 1}

Converter = Callable[[Any], Any]
log = logging.getLogger("crm_engine.convert")
_warned: set[str] = set()


class ConversionError(ValueError):
    pass


# Where a sync collects data warnings for its run (set while it maps a stream's pages).
_run_warnings: ContextVar[Callable[[str], None] | None] = ContextVar("run_warnings",
                                                                     default=None)


def warn_once(key: str, message: str) -> None:
    """A data problem: logged once per field and process, not once per record, and kept on
    the run that met it (`sync_runs.warnings`)."""
    sink = _run_warnings.get()
    if sink is not None:
        sink(message)
    if key not in _warned:
        _warned.add(key)
        log.warning("%s", message)


@contextmanager
def warnings_to(sink: Callable[[str], None]) -> Iterator[None]:
    """Send the data warnings of the code inside to `sink` (a run's)."""
    token = _run_warnings.set(sink)
    try:
        yield
    finally:
        _run_warnings.reset(token)


# Durations written as clock strings, read and written as whole seconds.
DURATION_FORMATS = {"hh:mm": (3600, 60), "mm:ss": (60, 1), "hh:mm:ss": (3600, 60, 1)}


def parse_duration(value: Any, fmt: str) -> int:
    parts = [int(p) for p in str(value).split(":")]
    units = DURATION_FORMATS[fmt]
    if len(parts) != len(units):
        raise ConversionError(f"{value!r} is not a {fmt} duration")
    return sum(p * u for p, u in zip(parts, units, strict=True))


def format_duration(seconds: int, fmt: str) -> str:
    parts = []
    for unit in DURATION_FORMATS[fmt]:
        parts.append(seconds // unit)
        seconds %= unit
    return ":".join(f"{p:02d}" for p in parts)


def parse_timestamp(value: Any, fmt: str = "iso8601") -> dt.datetime:
    """A vendor timestamp as an aware UTC datetime. Naive values are taken as UTC."""
    if fmt in _EPOCH_SCALE:
        return _EPOCH + dt.timedelta(seconds=float(value) / _EPOCH_SCALE[fmt])
    if isinstance(value, dt.datetime):
        parsed = value
    elif fmt == "iso8601":
        text = str(value)
        if text.isdigit():  # epoch milliseconds, which some CRMs send for datetimes
            return _EPOCH + dt.timedelta(milliseconds=int(text))
        parsed = dt.datetime.fromisoformat(text)
    else:
        parsed = dt.datetime.strptime(str(value), fmt)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_timestamp(value: dt.datetime, fmt: str = "iso8601") -> Any:
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if fmt in _EPOCH_SCALE:
        return int((value - _EPOCH).total_seconds() * _EPOCH_SCALE[fmt])
    if fmt == "iso8601":
        text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
        return text.replace("+00:00", "Z")
    return value.strftime(fmt)


def parse_date(value: Any, fmt: str = "iso8601") -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    text = str(value)
    if fmt == "iso8601" and len(text) == 10:
        return dt.date.fromisoformat(text)
    return parse_timestamp(value, fmt).date()


def format_date(value: dt.date, fmt: str = "iso8601") -> Any:
    if fmt == "iso8601":
        return value.isoformat()
    return format_timestamp(dt.datetime(value.year, value.month, value.day, tzinfo=UTC), fmt)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ConversionError(f"not a boolean: {value!r}")


def _to_decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ConversionError(f"not a decimal number: {value!r}") from None


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = float(value)
    if not number.is_integer():
        raise ConversionError(f"not a whole number: {value!r}")
    return int(number)


def unified_value(type_: str, value: Any) -> Any:
    """Coerce a caller's JSON value to the unified Python type (dates from ISO strings)."""
    if value is None:
        return None
    try:
        if type_ == "timestamp":
            return parse_timestamp(value)
        if type_ == "date":
            return parse_date(value)
        if type_ == "decimal":
            return _to_decimal(value)
        if type_ == "integer":
            return _to_int(value)
        if type_ == "number":
            return float(value)
        if type_ == "boolean":
            return _to_bool(value)
        return value if isinstance(value, str) else str(value)
    except (ValueError, TypeError) as exc:
        raise ConversionError(f"not a valid {type_}: {value!r} ({exc})") from None


def reader(type_: str, formats: tuple[str, ...], scale: float | None,
           values: dict[Any, Any] | None, field_name: str = "value",
           strict: bool = False) -> Converter:
    """Build vendor -> unified for one field. Empty strings read as null; with `strict`, so
    does a vendor value that `values` does not list."""
    translate = dict(values) if values else None

    def base(value: Any) -> Any:
        if type_ == "timestamp":
            return _first_format(parse_timestamp, value, formats)
        if type_ == "date":
            return _first_format(parse_date, value, formats)
        if formats and formats[0] in DURATION_FORMATS:
            return parse_duration(value, formats[0])
        if scale:
            value = _to_decimal(value) / _to_decimal(scale)
            if type_ == "integer":  # a scaled whole number rounds to the nearest whole
                value = value.to_integral_value(ROUND_HALF_UP)
        return unified_value(type_, value)

    if translate is None and type_ == "string":
        return lambda v: None if v is None or v == "" else (v if isinstance(v, str) else str(v))
    if translate is None and type_ == "timestamp" and formats in ((), ("iso8601",)):
        base = _iso_timestamp  # the common case, without the format loop

    def read(value: Any) -> Any:
        if value is None or value == "":
            return None
        if translate is not None:
            key = value if isinstance(value, str) else str(value)
            if key in translate:
                return translate[key]
            if strict:
                warn_once(field_name, f"{field_name}: vendor value {key!r} is not one the "
                                      f"mapping knows; stored null (kept in custom)")
                return None
        try:
            return base(value)
        except (ConversionError, ValueError, TypeError, ArithmeticError) as exc:
            # One malformed value must not stop a sync: it reads as null, and says so once.
            warn_once(field_name, f"cannot read {field_name} as {type_} ({exc}); storing null")
            return None

    return read


def _iso_timestamp(value: Any) -> dt.datetime:
    """`parse_timestamp` for ISO 8601, with Python's parser tried first (digits stay epoch
    milliseconds: `fromisoformat` would read eight of them as a date)."""
    if value.__class__ is not str or value.isdigit():
        return parse_timestamp(value)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return parse_timestamp(value)  # epoch digits, or a real error with its message
    tz = parsed.tzinfo
    if tz is UTC:
        return parsed
    return parsed.replace(tzinfo=UTC) if tz is None else parsed.astimezone(UTC)


def _first_format(parse: Callable[[Any, str], Any], value: Any, formats: tuple[str, ...]) -> Any:
    """Reading is lenient: the declared formats, then ISO 8601 (writing uses the first)."""
    error: Exception | None = None
    for fmt in (*formats, "iso8601") if "iso8601" not in formats else formats:
        try:
            return parse(value, fmt)
        except (ValueError, TypeError) as exc:
            error = exc
    raise ConversionError(f"{value!r} matches none of the formats {list(formats)}: {error}")


def writer(type_: str, formats: tuple[str, ...], scale: float | None,
           values: dict[Any, Any] | None, integer: bool = False) -> Converter:
    """Build unified -> vendor for one field; the first format is the one written. With
    `integer`, the (scaled) value is sent as a whole number, rounded half away from zero."""
    fmt = formats[0] if formats else "iso8601"
    translate = dict(values) if values else None

    def write(value: Any) -> Any:
        if value is None:
            return None
        if translate is not None and value in translate:
            return translate[value]
        if type_ == "timestamp":
            return format_timestamp(value, fmt)
        if type_ == "date":
            return format_date(value, fmt)
        if fmt in DURATION_FORMATS:
            return format_duration(int(value), fmt)
        if scale and isinstance(value, (int, float, Decimal)):
            value = Decimal(str(value)) * Decimal(str(scale))
        if (integer or (scale and type_ == "integer")) and isinstance(value, (int, float,
                                                                             Decimal)):
            return int(Decimal(str(value)).to_integral_value(ROUND_HALF_UP))
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        return value

    return write
