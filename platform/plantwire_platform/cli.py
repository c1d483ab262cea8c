"""``plantwire platform``: migrate, registry import, ingest, serve, the partner tools and
accounts (``admin create``, ``person create``), the broker's logins (``broker init``,
``gateway provision``, ``gateway revoke``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from plantwire_bus.arguments import host, port
from plantwire_bus.runner import run_until_signalled

T = TypeVar("T")
_ENV_HELP = (
    "Configured by environment variables: DATABASE_URL (default postgresql:///plantwire, the "
    "database 'plantwire' of the PostgreSQL server on this machine's socket), MQTT_URL "
    "(default mqtt://127.0.0.1:1883) and PLANTWIRE_* (see docs)."
)


def add_parser(subparsers: Any) -> None:
    platform = subparsers.add_parser(
        "platform",
        help="run the platform (ingest, API, migrations)",
        description=f"The platform service. {_ENV_HELP}",
    )
    sub = platform.add_subparsers(dest="platform_command", metavar="ACTION", required=True)
    migrate = sub.add_parser(
        "migrate",
        help="apply database schema migrations (idempotent)",
        description=f"Apply missing schema migrations. {_ENV_HELP}",
    )
    migrate.add_argument(
        "--timescaledb",
        action="store_true",
        help="convert a database that runs on plain PostgreSQL to TimescaleDB hypertables "
        "(after installing and preloading the extension; see docs/storage.md)",
    )
    migrate.set_defaults(func=_migrate)
    registry = sub.add_parser(
        "registry",
        help="import a registry file (enterprises, sites, lines, processes, equipment)",
        description="The registry of enterprises, sites, lines, process steps, equipment, "
        "parks and chains; its file format is described in docs/registry.md.",
    )
    registry_sub = registry.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    imp = registry_sub.add_parser(
        "import",
        help="create or update registry entries from a registry file (idempotent)",
        description="Validate the whole file, then create or update every entry it names. "
        f"A simulator scenario's registry part: 'plantwire sim registry'. {_ENV_HELP}",
    )
    imp.add_argument("file", type=Path, help="registry TOML file")
    imp.add_argument(
        "--effective",
        type=_timestamp,
        help="when changed facts take effect (ISO 8601; default: now); past windows keep the "
        "registry as it was",
    )
    imp.set_defaults(func=_registry_import)
    ingest = sub.add_parser(
        "ingest",
        help="run a Sparkplug ingest worker",
        description=f"Receive Sparkplug B and store it. {_ENV_HELP}",
    )
    ingest.set_defaults(func=_ingest)
    serve = sub.add_parser(
        "serve",
        help="serve the HTTP API",
        description=f"Serve the HTTP API (OpenAPI at /docs). {_ENV_HELP}",
    )
    serve.add_argument("--host", type=host, help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=port, help="listen port (default 8000)")
    serve.add_argument(
        "--no-access-log", action="store_true", help="do not log every request (uvicorn)"
    )
    serve.set_defaults(func=_serve)
    verify = sub.add_parser(
        "audit-verify",
        help="check the audit log's keyed hash chain, its head and kept anchors",
        description="Recompute the audit log's hash chain with PLANTWIRE_AUDIT_KEY and compare "
        "its end with the chain head; exit 1 naming the first entry that was changed, removed, "
        f"inserted or reordered. {_ENV_HELP}",
    )
    verify.add_argument(
        "--anchor",
        type=Path,
        action="append",
        default=[],
        help="a signed head saved by 'audit-head' (JSON file); its signature is checked and "
        "the chain must still hold it (repeatable)",
    )
    verify.set_defaults(func=_audit_verify)
    head = sub.add_parser(
        "audit-head",
        help="print the audit log's head, signed (an anchor to keep elsewhere)",
        description="Print the audit chain's head (last id and hash) signed with the Ed25519 "
        "key derived from PLANTWIRE_AUDIT_KEY, as JSON: keep it outside the database (or "
        f"send it to the parties) and pass it to 'audit-verify --anchor' later. {_ENV_HELP}",
    )
    head.set_defaults(func=_audit_head)
    seal = sub.add_parser(
        "audit-seal",
        help="give the audit tables to a role the application cannot use to alter them",
        description="Make OWNER own the audit tables and their append functions, and leave "
        "APP (the role the platform connects as) reading them and appending through the "
        "functions only. Run as a database administrator, after 'migrate'. Refused if APP is "
        f"a superuser, a member of OWNER or the owner of the tables' schema. {_ENV_HELP}",
    )
    seal.add_argument("--owner", required=True, help="the role to own the audit tables")
    seal.add_argument("--app", required=True, help="the role the platform connects as")
    seal.set_defaults(func=_audit_seal)
    client = sub.add_parser(
        "partner-client",
        help="register a partner API client and print its secret",
        description=f"Register an API client of the partner interface (e.g. the first "
        f"platform admin); the secret is printed once and stored hashed. {_ENV_HELP}",
    )
    client.add_argument("client_id")
    client.add_argument(
        "--role", choices=["platform_admin", "enterprise_admin", "partner"], required=True
    )
    client.add_argument("--enterprise", type=int, help="enterprise id (not for platform_admin)")
    client.set_defaults(func=_partner_client)
    from plantwire_platform.accounts import commands as accounts_commands
    from plantwire_platform.command import Command
    from plantwire_platform.gateways import commands as gateway_commands
    from plantwire_platform.registry import commands as registry_commands

    registry_commands.add_parsers(registry_sub, _ENV_HELP, _settings, _with_database, _timestamp)
    command = Command(_ENV_HELP, _settings, _with_database, _timestamp)
    accounts_commands.add_parsers(sub, command)
    gateway_commands.add_parsers(sub, command)


def _timestamp(text: str) -> Any:
    from datetime import UTC, datetime

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _settings(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from plantwire_platform.settings import PlatformSettings

    overrides = {}
    if getattr(args, "host", None):
        overrides["api_host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["api_port"] = args.port
    try:
        return PlatformSettings(**overrides)
    except ValidationError as exc:
        from plantwire_bus.tomlfile import problems

        print(f"plantwire platform: {problems(exc)}", file=sys.stderr)
        return None


def _with_database(command: str, settings: Any, work: Callable[[], Awaitable[T]]) -> T | None:
    """Run ``work``; an unreachable database ends in one line on stderr (and None)."""
    import psycopg

    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        text = str(exc).strip()
        reason = text.partition("FATAL:")[2].strip() if "FATAL:" in text else text.splitlines()[0]
        reason = reason.removeprefix("connection failed: ")
        print(
            f"plantwire platform {command}: cannot use the database at "
            f"{_redacted(settings.database_url)}: {reason} (set DATABASE_URL)",
            file=sys.stderr,
        )
        return None


def _redacted(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def _migrate(args: argparse.Namespace) -> int:
    import psycopg

    from plantwire_platform.database import (
        TimescaleMissing,
        convert_to_timescaledb,
        create_if_missing,
        migrate,
        storage_summary,
    )

    settings = _settings(args)
    if settings is None:
        return 2

    async def work() -> tuple[list[int], str]:
        if await create_if_missing(settings.database_url):
            print(f"created database {_redacted(settings.database_url)}")
        applied = await migrate(settings.database_url)
        print(f"applied {len(applied)} migrations" if applied else "schema is up to date")
        if args.timescaledb:
            moved = await convert_to_timescaledb(
                settings.database_url, settings.compress_after_days
            )
            print(f"sample tables on TimescaleDB hypertables ({moved} samples moved)")
        return applied, await storage_summary(settings.database_url)

    try:
        done = _with_database("migrate", settings, work)
    except TimescaleMissing as exc:
        print(f"plantwire platform migrate --timescaledb: {exc}", file=sys.stderr)
        return 2
    except psycopg.errors.RaiseException as exc:  # a migration refused the data it found
        print(f"plantwire platform migrate: {exc.diag.message_primary}", file=sys.stderr)
        if exc.diag.message_hint:
            print(f"hint: {exc.diag.message_hint}", file=sys.stderr)
        return 2
    if done is None:
        return 1
    print(done[1])
    return 0


def _registry_import(args: argparse.Namespace) -> int:
    from plantwire_platform.connections import connect
    from plantwire_platform.registry.document import RegistryError, parse_registry
    from plantwire_platform.registry.store import RegistryConflict, import_registry

    settings = _settings(args)
    if settings is None:
        return 2
    try:
        registry = parse_registry(args.file.read_text(encoding="utf-8"), str(args.file))
    except OSError as exc:
        print(f"plantwire platform registry: {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    except RegistryError as exc:
        print(f"plantwire platform registry: {exc}", file=sys.stderr)
        return 2

    async def write() -> dict[str, int]:
        async with await connect(settings.database_url) as conn:
            return await import_registry(conn, registry, args.effective)

    try:
        ids = _with_database("registry", settings, write)
    except RegistryConflict as exc:
        print(f"plantwire platform registry: {args.file}: {exc}", file=sys.stderr)
        print("nothing written", file=sys.stderr)
        return 2
    if ids is None:
        return 1
    print(
        f"imported {len(ids)} enterprises from {args.file}: "
        + ", ".join(f"{code} (id {i})" for code, i in ids.items())
    )
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from plantwire_platform.indicators.usage import keep_current
    from plantwire_platform.ingest.worker import IngestWorker

    settings = _settings(args)
    if settings is None:
        return 2
    worker = IngestWorker(settings, upkeep=(keep_current,))
    return asyncio.run(run_until_signalled(worker.run))


def _serve(args: argparse.Namespace) -> int:
    import gc

    import uvicorn

    from plantwire_platform.server import create_app

    settings = _settings(args)
    if settings is None:
        return 2
    app = create_app(settings)
    gc.freeze()  # what start-up built stays out of garbage collections: shorter pauses
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        access_log=not args.no_access_log,
        timeout_graceful_shutdown=2,  # requests still running then are cancelled
    )
    return 0


def _audit_key(args: argparse.Namespace) -> Any:
    """The settings and the audit key, or None after saying what is missing."""
    from plantwire_platform.partner.audit_chain import AuditKey

    settings = _settings(args)
    if settings is None:
        return None
    if settings.audit_key is None:
        print("plantwire platform: PLANTWIRE_AUDIT_KEY is not set", file=sys.stderr)
        return None
    return settings, AuditKey(settings.audit_key.get_secret_value())


def _audit_verify(args: argparse.Namespace) -> int:
    import json

    from plantwire_platform.connections import connect
    from plantwire_platform.partner.audit_chain import Anchor, anchor_signed, verify

    found = _audit_key(args)
    if found is None:
        return 2
    settings, key = found
    anchors = []
    for path in args.anchor:
        try:
            anchor = json.loads(path.read_text(encoding="utf-8"))
            anchors.append(Anchor(int(anchor["id"]), str(anchor["hash"])))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problem = f"{path}: not an anchor ({exc})"
            print(f"plantwire platform audit-verify: {problem}", file=sys.stderr)
            return 2
        if not anchor_signed(anchor, key.public_key):
            print(f"audit anchor {path} is not signed with this key", file=sys.stderr)
            return 1

    async def run() -> Any:
        async with await connect(settings.database_url) as conn:
            return await verify(conn, key, anchors)

    verdict = _with_database("audit-verify", settings, run)
    if verdict is None:
        return 1
    if verdict.ok:
        kept = f", {len(anchors)} anchors held" if anchors else ""
        print(f"audit chain intact: {verdict.rows} rows up to head {verdict.head_id}{kept}")
        return 0
    print(f"audit chain broken at row {verdict.bad_id}: {verdict.problem}", file=sys.stderr)
    return 1


def _audit_head(args: argparse.Namespace) -> int:
    import json

    from plantwire_platform.connections import connect
    from plantwire_platform.partner.audit_chain import signed_head

    found = _audit_key(args)
    if found is None:
        return 2
    settings, key = found

    async def run() -> Any:
        async with await connect(settings.database_url) as conn:
            return await signed_head(conn, key)

    head = _with_database("audit-head", settings, run)
    if head is None:
        return 1
    print(json.dumps(head, indent=2))
    return 0


def _audit_seal(args: argparse.Namespace) -> int:
    import psycopg

    from plantwire_platform.connections import connect
    from plantwire_platform.partner.audit import SealRefused, seal

    settings = _settings(args)
    if settings is None:
        return 2

    async def run() -> bool:
        async with await connect(settings.database_url) as conn:
            await seal(conn, args.owner, args.app)
        return True

    try:
        done = _with_database("audit-seal", settings, run)
    except SealRefused as exc:
        print(f"plantwire platform audit-seal: {exc}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        print(f"plantwire platform audit-seal: {exc}", file=sys.stderr)
        return 1
    if done is None:
        return 1
    print(f"audit log owned by {args.owner}; {args.app} may read it and append only")
    return 0


def _partner_client(args: argparse.Namespace) -> int:
    from plantwire_platform.connections import connect
    from plantwire_platform.partner.tokens import create_client

    settings = _settings(args)
    if settings is None:
        return 2
    if (args.role == "platform_admin") != (args.enterprise is None):
        need = "--enterprise is required except for platform_admin"
        print(f"plantwire platform partner-client: {need}", file=sys.stderr)
        return 2

    async def run() -> str:
        async with await connect(settings.database_url) as conn:
            return await create_client(conn, args.client_id, args.role, args.enterprise)

    secret = _with_database("partner-client", settings, run)
    if secret is None:
        return 1
    print(f"client_id={args.client_id}\nclient_secret={secret}")
    return 0
