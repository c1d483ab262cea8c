"""A real TimescaleDB on this machine, for the tests and the benchmarks: the prebuilt extension
for PostgreSQL 15 (``../shared/timescaledb/``) installed when missing, and a private cluster
started from the system's PostgreSQL 15 binaries with the extension preloaded.

The system cluster is left as it is: installing only adds the extension's files, and a database
there keeps the plain-PostgreSQL path because the library is not preloaded.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from plantwire_bus.mosquitto import free_port
from plantwire_platform.services import Service

VERSION = "2.28.3"  # the release the tests run on; docker-compose.yml pins the same
PG_BINDIR = Path(os.environ.get("PLANTWIRE_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
EXTENSION_DIR = Path("/usr/share/postgresql/15/extension")
INSTALLER = "timescaledb/install.sh"


class TimescaleUnavailable(RuntimeError):
    """TimescaleDB cannot be installed or started on this machine (the reason says why)."""


def installer() -> Path | None:
    """``install.sh`` of the prebuilt extension: ``$PLANTWIRE_TIMESCALEDB_DIR``, else a
    ``shared/timescaledb`` beside this checkout or one of its parents."""
    explicit = os.environ.get("PLANTWIRE_TIMESCALEDB_DIR")
    if explicit:
        path = Path(explicit) / "install.sh"
        return path if path.is_file() else None
    for parent in Path(__file__).resolve().parents:
        path = parent / "shared" / INSTALLER
        if path.is_file():
            return path
    return None


def installed() -> bool:
    return (EXTENSION_DIR / "timescaledb.control").is_file()


def ensure_installed() -> None:
    """Install the prebuilt TimescaleDB into PostgreSQL 15 unless it is there (needs root)."""
    if installed():
        return
    script = installer()
    if script is None:
        raise TimescaleUnavailable(
            "TimescaleDB is not installed and no shared/timescaledb/install.sh was found "
            "(set PLANTWIRE_TIMESCALEDB_DIR)"
        )
    if os.geteuid() != 0:
        raise TimescaleUnavailable(f"TimescaleDB is not installed; run as root: sh {script}")
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not installed():
        raise TimescaleUnavailable(f"{script} failed: {(done.stderr or done.stdout).strip()}")


def _server_user() -> pwd.struct_passwd | None:
    """The user the server runs as: this one, or ``postgres`` when this is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as exc:
        raise TimescaleUnavailable("running as root and there is no 'postgres' user") from exc


def start_cluster(
    *,
    durable: bool = False,
    preload: bool = True,
    settings: dict[str, str] | None = None,
) -> Service:
    """Start a private PostgreSQL 15 cluster with TimescaleDB preloaded in a new temporary
    directory on a free port; ``stop()`` stops it and removes the directory.

    ``durable=False`` (tests) turns fsync off; ``preload=False`` gives the same cluster as
    plain PostgreSQL (a benchmark's baseline with identical settings). TimescaleDB's
    background scheduler is off: on PostgreSQL 15.20 its jobs are recorded as failed although
    they did their work, so policies are run with ``CALL run_job`` (plantwire's maintenance
    does that)."""
    if preload:
        ensure_installed()
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BINDIR / tool).is_file():
            raise TimescaleUnavailable(f"{PG_BINDIR / tool} missing: install postgresql-15")
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="plantwire-timescaledb-"))
    data = root / "data"
    as_user: dict[str, int] = {}
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid}
    port = free_port()
    options = {
        "listen_addresses": "127.0.0.1",
        **(
            {
                "shared_preload_libraries": "timescaledb",
                "timescaledb.telemetry_level": "off",
                "timescaledb.max_background_workers": "0",
            }
            if preload
            else {}
        ),
        "shared_buffers": "128MB" if durable else "64MB",
        "max_connections": "200",
        **({} if durable else {"fsync": "off", "full_page_writes": "off"}),
        **(settings or {}),
    }

    def run(*args: str) -> None:
        done = subprocess.run(
            args,
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
            **as_user,  # type: ignore[call-overload]
        )
        if done.returncode != 0:
            log_file = root / "server.log"
            tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            raise TimescaleUnavailable(
                f"{Path(args[0]).name} failed: {(done.stderr or done.stdout).strip()} {tail}"
            )

    def stop() -> None:
        with contextlib.suppress(Exception):
            run(str(PG_BINDIR / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)

    try:
        run(str(PG_BINDIR / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-sync")  # fmt: skip
        flags = " ".join(f"-c {k}={v}" for k, v in options.items())
        run(str(PG_BINDIR / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
            "-o", f"-p {port} -k {root} {flags}", "start")  # fmt: skip
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        row = None
        if preload:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                row = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                ).fetchone()
    except BaseException:
        stop()
        raise
    what = f"TimescaleDB {row[0] if row else '?'}" if preload else "PostgreSQL 15"
    return Service(url, f"{what} on port {port} ({root})", stop)


def extension_version(url: str) -> str | None:
    """The TimescaleDB version installed in the database ``url`` names, if any."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
    return str(row[0]) if row else None
