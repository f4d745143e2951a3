"""Links between records (a mapping's `associations:`): rows of the `associations` table.

A model mapping may declare, besides its single-valued fields (`company_id`, `contact_id`), every
record its records link to. Each declaration reads items out of a vendor record (`each`; the
record itself by default) and, from each item, the linked id and an optional label. A record's
links are landed with it and replace the links it had before; see engine/store/duckdb_file.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine import convert
from engine.extract import ExpressionFailed, Getter

Link = tuple[str, str, str | None]  # (to_model, to_id, label)


@dataclass(frozen=True)
class Association:
    """One `associations:` entry: links to records of the unified model `to`."""

    to: str
    id: Getter  # in an item: the linked record's id (null: no link)
    each: Getter | None = None  # in a record: the items (a list, one object, or null)
    label: Getter | None = None  # in an item: what kind of link it is
    where: str = ""  # the entry, for warnings: "contact.associations[0]"

    def links(self, record: Any) -> list[Link]:
        try:
            if self.each is None:  # the record is the one item (a lookup field): most common
                linked = _text(self.id(record))
                if linked is None:
                    return []
                return [(self.to, linked,
                         _text(self.label(record)) if self.label is not None else None)]
            items = self.each(record)
            if items is None:
                return []
            out = []
            for item in items if isinstance(items, list) else (items,):
                linked = _text(self.id(item))
                if linked is not None:
                    label = _text(self.label(item)) if self.label is not None else None
                    out.append((self.to, linked, label))
            return out
        except ExpressionFailed as exc:  # one odd record must not stop a sync
            convert.warn_once(self.where, f"cannot read {self.where} ({exc}); no link stored")
            return []


def _text(value: Any) -> str | None:
    """Ids and labels land as text (some CRMs number their ids); an empty string is no value."""
    if value.__class__ is str:  # the common case, first
        return value or None
    if value is None or value == "" or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


LinkReader = Callable[[list[Any]], list[list[Link]]]


def link_reader(associations: list[Association]) -> LinkReader:
    """Per page: each record's links, deduplicated (see `_unique`), in declaration order."""
    if len(associations) == 1:
        only = associations[0].links
        return lambda records: [_unique(only(record)) for record in records]
    return lambda records: [
        _unique([link for association in associations for link in association.links(record)])
        for record in records]


def _unique(links: list[Link]) -> list[Link]:
    """Each link once; an unlabelled link to a record that a labelled one also reaches says
    nothing more (a CRM may list a link under each of its types, one of them "no label")."""
    if len(links) < 2:
        return links
    labelled = {link[:2] for link in links if link[2] is not None}
    if not labelled:
        return list(dict.fromkeys(links))
    return list(dict.fromkeys(link for link in links
                              if link[2] is not None or link[:2] not in labelled))
