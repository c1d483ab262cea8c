"""One registry entry at a time: a site, a line, a process step or a piece of equipment added to
or changed in an enterprise's document. Each edit yields the whole enterprise again, validated
whole (so an entry can never contradict another), to be written like an imported document: a
changed fact applies from the given time and past windows keep theirs
(:mod:`plantwire_platform.registry.store`)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from plantwire_platform.problems import Problems
from plantwire_platform.registry.document import Enterprise, Equipment, Line, Process, Site
from plantwire_platform.translation import Text


class ItemRefused(Exception):
    """An edit that cannot be made: ``detail`` says why in the API's catalogue (worded in the
    request's language); ``str()`` is its English (what the command line prints)."""

    def __init__(self, detail: Text | Problems) -> None:
        super().__init__(str(detail))
        self.detail = detail


class ItemInvalid(ItemRefused, ValueError):
    """The edit would make an invalid registry; the message names the field."""


class ItemMissing(ItemRefused, LookupError):
    """No such site, line, process step or equipment in the enterprise."""


class ItemTaken(ItemRefused, ValueError):
    """An entry with this code exists already."""


FIELDS: dict[str, frozenset[str]] = {
    "site": frozenset(Site.model_fields) - {"code", "lines", "equipment"},
    "line": frozenset(Line.model_fields) - {"code", "processes"},
    "process": frozenset(Process.model_fields) - {"code"},
    "equipment": (frozenset(Equipment.model_fields) - {"code"}) | {"processes"},
}
"""What a change may name, by kind of entry (``processes``: the process steps of the
equipment's line it performs)."""


def _checked(data: dict[str, Any]) -> Enterprise:
    try:
        doc = Enterprise.model_validate(data)
    except ValidationError as exc:
        raise ItemInvalid(Problems(exc)) from None
    return doc


def _find(items: list[dict[str, Any]], code: str, kind: str) -> dict[str, Any]:
    for item in items:
        if item["code"] == code:
            return item
    raise ItemMissing(Text("item.missing", kind=Text(f"item.kind.{kind}"), code=code))


def _changes(kind: str, body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ItemInvalid(Text("item.change_object"))
    unknown = sorted(set(body) - FIELDS[kind])
    if unknown:
        allowed = ", ".join(sorted(FIELDS[kind]))
        raise ItemInvalid(
            Text(
                "item.not_a_field",
                field=unknown[0],
                kind=Text(f"item.kind.{kind}"),
                allowed=allowed,
            )
        )
    return dict(body)


def _performs(site: dict[str, Any], code: str, line: str, processes: object) -> None:
    """Make the equipment ``code`` perform exactly ``processes`` among its line's steps."""
    if not isinstance(processes, list | tuple) or not all(isinstance(p, str) for p in processes):
        raise ItemInvalid(Text("item.processes"))
    for each in site["lines"]:
        for step in each["processes"]:
            performers = [e for e in step["equipment"] if e != code]
            if each["code"] == line and step["code"] in processes:
                performers.append(code)
            step["equipment"] = performers
    known = {s["code"] for each in site["lines"] if each["code"] == line for s in each["processes"]}
    for p in processes:
        if p not in known:
            raise ItemInvalid(Text("item.no_step", line=line, step=p))


def _gateway_free(sites: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    """Refuse a site whose edge node another site of the enterprise has: one gateway reads one
    site (the ingest would give its machines to both)."""
    node = entry.get("edge_node")
    for other in sites:
        if other is not entry and isinstance(node, str) and other.get("edge_node") == node:
            raise ItemTaken(Text("item.edge_node_taken", node=node, site=other["code"]))


def _site(data: dict[str, Any], site: str) -> dict[str, Any]:
    return _find(data["sites"], site, "site")


def _line(data: dict[str, Any], site: str, line: str) -> dict[str, Any]:
    return _find(_site(data, site)["lines"], line, "line")


def add(doc: Enterprise, kind: str, path: tuple[str, ...], body: object) -> Enterprise:
    """``doc`` with a new entry of ``kind`` under ``path`` (the site; the site and line of a
    process step), described by ``body`` as in the registry format."""
    data = doc.model_dump(mode="json")
    if not isinstance(body, dict):
        raise ItemInvalid(Text("item.new_object"))
    entry = dict(body)
    code = entry.get("code")
    performs = entry.pop("processes", None) if kind == "equipment" else None
    if kind == "site":
        siblings = data["sites"]
    elif kind == "line":
        siblings = _site(data, path[0])["lines"]
    elif kind == "process":
        siblings = _line(data, path[0], path[1])["processes"]
    else:
        siblings = _site(data, path[0])["equipment"]
    if isinstance(code, str) and any(s["code"] == code for s in siblings):
        raise ItemTaken(Text("item.taken", kind=Text(f"item.kind.{kind}"), code=code))
    siblings.append(entry)
    if kind == "site":
        _gateway_free(siblings, entry)
    if performs is not None and isinstance(code, str):
        _performs(_site(data, path[0]), code, str(entry.get("line", "")), performs)
    return _checked(data)


def change(doc: Enterprise, kind: str, path: tuple[str, ...], body: object) -> Enterprise:
    """``doc`` with the entry of ``kind`` at ``path`` changed by the fields ``body`` names."""
    data = doc.model_dump(mode="json")
    changes = _changes(kind, body)
    if kind == "site":
        entry = _site(data, path[0])
    elif kind == "line":
        entry = _line(data, path[0], path[1])
    elif kind == "process":
        entry = _find(_line(data, path[0], path[1])["processes"], path[2], "process")
    else:
        entry = _find(_site(data, path[0])["equipment"], path[1], "equipment")
    performs = changes.pop("processes", None)
    entry.update(changes)
    if kind == "site" and "edge_node" in changes:
        _gateway_free(data["sites"], entry)
    if kind == "equipment" and (performs is not None or "line" in changes):
        if performs is None:  # moved to another line: it performs none of the old line's steps
            performs = []
        _performs(_site(data, path[0]), path[1], str(entry["line"]), performs)
    return _checked(data)
