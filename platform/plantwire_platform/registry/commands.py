"""``plantwire platform registry export`` and ``registry sheet``: an enterprise's registry out
as a file (TOML, or the equipment sheet as CSV) and an edited equipment sheet back in, checked
whole, each problem named by row and field."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Settings = Callable[[argparse.Namespace], Any]
WithDatabase = Callable[[str, Any, Callable[[], Awaitable[Any]]], Any]


def add_parsers(
    registry_sub: Any,
    env_help: str,
    settings: Settings,
    with_database: WithDatabase,
    timestamp: Callable[[str], Any],
) -> None:
    """The ``export`` and ``sheet`` actions of ``plantwire platform registry``."""
    export = registry_sub.add_parser(
        "export",
        help="write an enterprise's registry as TOML or its equipment sheet as CSV",
        description="An enterprise's registry as it is now: one enterprise table of the "
        "registry format (TOML), or its equipment sheet (CSV) to edit in a spreadsheet and "
        f"bring back with 'registry sheet'. {env_help}",
    )
    export.add_argument("enterprise", help="the enterprise's code or id")
    export.add_argument("--format", choices=["toml", "csv"], default="toml")
    export.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    export.set_defaults(func=lambda args: _export(args, settings, with_database))
    sheet = registry_sub.add_parser(
        "sheet",
        help="add or change an enterprise's equipment from an equipment sheet (CSV)",
        description="Check the whole sheet (columns site, line, code, name, control_type, "
        "declared_nc, processes, ideal_cycle_s; docs/registry.md), then write it; with any "
        f"problem nothing is written and each is named by row and field. {env_help}",
    )
    sheet.add_argument("enterprise", help="the enterprise's code or id")
    sheet.add_argument("file", type=Path, help="the CSV file")
    sheet.add_argument(
        "--effective", type=timestamp, help="when changed facts take effect (default: now)"
    )
    sheet.set_defaults(func=lambda args: _sheet(args, settings, with_database))
    for verb, does in (("add", "add one"), ("change", "change the fields BODY names of one")):
        item = registry_sub.add_parser(
            verb,
            help=f"{does} site, line, process step or piece of equipment",
            description=f"{does.capitalize()} entry of an enterprise's registry, as "
            "POST/PATCH /api/v1/enterprises/{id}/sites/... do (docs/registry.md): checked "
            f"against the whole enterprise before anything is written. {env_help}",
        )
        item.add_argument("enterprise", help="the enterprise's code or id")
        item.add_argument("kind", choices=["site", "line", "process", "equipment"])
        item.add_argument(
            "where",
            help="the entry's place, codes joined by '/': "
            + ("'-' for a site, SITE for a line or equipment, SITE/LINE for a process step"
               if verb == "add" else
               "SITE, SITE/LINE, SITE/LINE/PROCESS or SITE/EQUIPMENT"),
        )  # fmt: skip
        item.add_argument("body", help="the entry as JSON, e.g. '{\"declared_nc\": true}'")
        item.add_argument(
            "--effective", type=timestamp, help="when changed facts take effect (default: now)"
        )
        item.set_defaults(func=lambda args, v=verb: _item(args, v, settings, with_database))


async def _enterprise_id(conn: Any, key: str) -> int:
    cur = await conn.execute(
        "SELECT id FROM enterprise WHERE code = %s OR id::text = %s ORDER BY code = %s DESC",
        (key, key, key),
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"no enterprise {key!r}")
    return int(row[0])


def _export(args: argparse.Namespace, settings_of: Settings, with_database: WithDatabase) -> int:
    import tomli_w

    from plantwire_platform.connections import connect
    from plantwire_platform.registry.export import enterprise_document
    from plantwire_platform.registry.sheet import equipment_sheet

    settings = settings_of(args)
    if settings is None:
        return 2

    async def work() -> str:
        async with await connect(settings.database_url) as conn:
            doc = await enterprise_document(conn, await _enterprise_id(conn, args.enterprise))
        assert doc is not None
        if args.format == "csv":
            return equipment_sheet(doc)
        return tomli_w.dumps(doc.model_dump(mode="json", exclude_none=True, exclude={"park"}))

    try:
        text = with_database("registry export", settings, work)
    except LookupError as exc:
        print(f"plantwire platform registry export: {exc.args[0]}", file=sys.stderr)
        return 2
    if text is None:
        return 1
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


def _sheet(args: argparse.Namespace, settings_of: Settings, with_database: WithDatabase) -> int:
    from plantwire_platform.connections import connect
    from plantwire_platform.registry.export import enterprise_document
    from plantwire_platform.registry.sheet import SheetError, apply_sheet
    from plantwire_platform.registry.store import RegistryConflict, import_enterprise

    settings = settings_of(args)
    if settings is None:
        return 2
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        print(f"plantwire platform registry sheet: {args.file}: {exc.strerror}", file=sys.stderr)
        return 2

    async def work() -> int:
        async with await connect(settings.database_url) as conn:
            doc = await enterprise_document(conn, await _enterprise_id(conn, args.enterprise))
            assert doc is not None
            changed = apply_sheet(doc, text)
            async with conn.transaction():
                await import_enterprise(conn, changed, args.effective)
            return sum(len(s.equipment) for s in changed.sites)

    try:
        count = with_database("registry sheet", settings, work)
    except (LookupError, RegistryConflict) as exc:
        print(f"plantwire platform registry sheet: {exc.args[0]}", file=sys.stderr)
        return 2
    except SheetError as exc:
        for problem in exc.problems:
            print(f"plantwire platform registry sheet: {args.file}: {problem}", file=sys.stderr)
        print(f"nothing written ({len(exc.problems)} problems)", file=sys.stderr)
        return 2
    if count is None:
        return 1
    print(f"{args.enterprise}: {count} machines registered")
    return 0


_DEPTH = {"site": 0, "line": 1, "process": 2, "equipment": 1}
"""How many codes place a new entry of each kind (one more names an existing one)."""


def _item(
    args: argparse.Namespace, verb: str, settings_of: Settings, with_database: WithDatabase
) -> int:
    import json

    from plantwire_platform.connections import connect
    from plantwire_platform.registry import items
    from plantwire_platform.registry.export import enterprise_document
    from plantwire_platform.registry.store import RegistryConflict, import_enterprise

    name = f"plantwire platform registry {verb}"
    settings = settings_of(args)
    if settings is None:
        return 2
    path = tuple(p for p in args.where.split("/") if p and p != "-")
    depth = _DEPTH[args.kind] + (verb == "change")
    if len(path) != depth:
        print(f"{name}: where: a {args.kind} is placed by {depth} codes", file=sys.stderr)
        return 2
    try:
        body = json.loads(args.body)
    except ValueError as exc:
        print(f"{name}: body: not JSON: {exc}", file=sys.stderr)
        return 2

    async def work() -> int:
        async with await connect(settings.database_url) as conn:
            doc = await enterprise_document(conn, await _enterprise_id(conn, args.enterprise))
            assert doc is not None
            edit = items.add if verb == "add" else items.change
            changed = edit(doc, args.kind, path, body)
            async with conn.transaction():
                await import_enterprise(conn, changed, args.effective)
            return 0

    try:
        done = with_database(f"registry {verb}", settings, work)
    except (LookupError, items.ItemInvalid, items.ItemTaken, RegistryConflict) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        print("nothing written", file=sys.stderr)
        return 2
    if done is None:
        return 1
    entry = "/".join(path) if verb == "change" else "/".join((*path, str(body.get("code"))))
    print(f"{args.enterprise}: {args.kind} {entry} {verb.removesuffix('e')}ed")
    return 0
