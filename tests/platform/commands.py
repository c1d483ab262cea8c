"""``plantwire platform ...`` run as a user would: a child process of this interpreter against
one database."""

from __future__ import annotations

import asyncio
import os
import sys

CLI = "from plantwire.cli import main; raise SystemExit(main())"
"""The ``plantwire`` command, as ``python -c`` code (the console script may not be on PATH)."""


async def platform_command(url: str, *args: str, **env: str) -> tuple[int, str]:
    """``plantwire platform <args>`` against the database at ``url`` (and ``env`` besides
    the test's own environment): its exit code and its output (stdout, then stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLI,
        "platform",
        *args,
        env={**os.environ, "DATABASE_URL": url, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()
