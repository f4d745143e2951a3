"""E.164 numbers (engine/normalize.py) as phonenumbers gives them: the shortcut for numbers
written `+<country code> <number>` must agree with phonenumbers' own parse, check and format
(`parsed_e164`) for every country code, at every length, with national prefixes, leading
zeros, separators and the malformed spellings around them (seeded: the same every run)."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from engine.normalize import _UNDECIDED, _international, e164
from engine.normalize import parsed_e164 as parsed


def spelled(rng: random.Random, digits: str) -> str:
    """Digits with separators between some of them, as people write numbers."""
    out = []
    for i, digit in enumerate(digits):
        if i and rng.random() < 0.3:
            out.append(rng.choice([" ", "-", ".", " (", ") ", "-", "  "]))
        out.append(digit)
    return "".join(out)


def numbers() -> list[str]:
    rng = random.Random(13)
    out = []
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        for length in range(0, 19):
            for first in rng.sample(["", "0", "1", "9", "00", "15", "8"], 3):
                national = first + "".join(rng.choice("0123456789") for _ in range(length))
                out.append(rng.choice(["+" + spelled(rng, f"{code}{national}"),
                                       f"+{code} {spelled(rng, national)}"]))
    # Around the shortcut's edges: what it must leave to the parser.
    out += ["+", "+1", "+12", "+123", "+0 555 1234", "++1 555 123 4567", "+1 555 123 4567 x12",
            "+1 555 123 4567 ext. 9", "+1-800-FLOWERS", "+1 555 123 4567#", "+1 (555)",
            "+1 555-123-4567 ", " +1 555 123 4567", "+1/555/123/4567", "+\uff11 555 123 4567",
            "+44 (0) 20 7946 0000", "+39 06 6988 0000", "+54 9 11 1234 5678", "+7 8 800 100",
            "+" + "1" * 260, "+1 " + "2" * 17, "+1 " + "2" * 18, "+800 1234 5678", "+979 1234"]
    return out


NUMBERS = numbers()


@pytest.mark.parametrize(("region", "every"), [(None, 1), ("US", 3), ("AR", 5), ("IT", 7)])
def test_e164_is_what_phonenumbers_says(region, every):
    e164.cache_clear()
    wrong = [(n, e164(n, region), parsed(n, region)) for n in NUMBERS[::every]
             if e164(n, region) != parsed(n, region)]
    assert wrong[:5] == []


def test_the_shortcut_decides_the_usual_numbers():
    # The spellings CRMs hold most (HubSpot's, Salesforce's), decided without the parser.
    for value in ("+1-555-509-3895", "+1 (555) 509-3895", "+44 20 7946 0000", "+49 30 901820"):
        assert _international(value) == parsed(value, None)
    # A national prefix after the country code, an Italian leading zero: the parser's.
    for value in ("+44 020 7946 0000", "+39 06 6988 0000"):
        assert _international(value) is _UNDECIDED
