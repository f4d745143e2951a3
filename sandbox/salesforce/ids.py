"""Salesforce record ids: 15-character case-sensitive ids plus the 3-character suffix that makes
the 18-character case-insensitive form (CONTRACTS 2.3: ``Id`` is 18 characters).

Layout of the 15 characters: key prefix (3, e.g. ``003`` Contact), pod (2), reserved ``0``,
then a 9-digit base-62 counter (``0-9A-Za-z``, so string order is numeric order).
"""

from __future__ import annotations

import string

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
SUFFIX_CHARS = string.ascii_uppercase + "012345"
POD = "Sb"  # the sandbox's "instance" part of every id
_PAIRS = tuple(a + b for a in BASE62 for b in BASE62)  # 3,844 two-digit base-62 strings
_ALNUM = frozenset(string.ascii_letters + string.digits)


# Upper-case letters -> "1", every other id character -> "0": a chunk's bits in one translate.
_UPPER_BITS = str.maketrans({char: "1" if char.isupper() else "0" for char in BASE62})


def suffix(id15: str) -> str:
    """The 3 checksum characters: one per 5-character chunk, encoding which are upper case
    (bit i set when character i of the chunk is an upper-case letter)."""
    bits = id15.translate(_UPPER_BITS)
    return (
        SUFFIX_CHARS[int(bits[4::-1], 2)]
        + SUFFIX_CHARS[int(bits[9:4:-1], 2)]
        + SUFFIX_CHARS[int(bits[14:9:-1], 2)]
    )


def make_id(prefix: str, number: int) -> str:
    """The 18-character id of record ``number`` (0 <= number < 62**9) of a key prefix."""
    number, d4 = divmod(number, 3844)
    number, d3 = divmod(number, 3844)
    number, d2 = divmod(number, 3844)
    d0, d1 = divmod(number, 3844)
    id15 = prefix + POD + "0" + BASE62[d0] + _PAIRS[d1] + _PAIRS[d2] + _PAIRS[d3] + _PAIRS[d4]
    return id15 + suffix(id15)


def normalize_id(text: str) -> str | None:
    """The canonical 18-character form of a 15- or 18-character id, or None if malformed.

    An 18-character id is case-insensitive: its suffix says which letters are upper case, so
    ``003sb...`` typed in lower case still names the record (Salesforce behaves the same)."""
    if len(text) not in (15, 18) or not _ALNUM.issuperset(text):
        return None
    if len(text) == 15:
        return text + suffix(text)
    tail = text[15:].upper()
    if any(char not in SUFFIX_CHARS for char in tail):
        return None
    restored = []
    for chunk_index, char in enumerate(tail):
        bits = SUFFIX_CHARS.index(char)
        for position in range(5):
            original = text[chunk_index * 5 + position]
            upper = bool(bits & (1 << position))
            if upper and not original.isalpha():
                return None
            restored.append(original.upper() if upper else original.lower())
    id15 = "".join(restored)
    return id15 + tail if suffix(id15) == tail else None


def key_prefix(record_id: str) -> str:
    return record_id[:3]
