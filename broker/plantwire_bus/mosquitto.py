"""Run a Mosquitto broker as a child process with the project's ``broker/mosquitto.conf``.

Used by the test suite and by ``plantwire demo`` when no ``MQTT_URL`` is given: the project's
config is copied with its listener moved to a chosen port and its persistence to a private
directory, so nothing on the machine is touched and tests never share a broker.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_CONF = Path(__file__).resolve().parent.parent / "mosquitto.conf"


class BrokerStartError(RuntimeError):
    """Mosquitto could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def find_mosquitto() -> str | None:
    """The mosquitto binary on PATH (or in /usr/sbin, where Debian puts it), if any."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def render_config(template: str, port: int, data_dir: Path) -> str:
    """The project's config with its listener on ``port`` and persistence under ``data_dir``."""
    text, n = re.subn(r"(?m)^listener\s+\d+.*$", f"listener {port} 127.0.0.1", template)
    if n != 1:
        raise BrokerStartError("mosquitto.conf must contain exactly one 'listener' line")
    text = re.sub(r"(?m)^persistence_location\s+.*$", f"persistence_location {data_dir}/", text)
    # Started as root, mosquitto would switch to its own user, who cannot write a private
    # directory: the copy runs as whoever started it.
    return text + f"\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"


@dataclass
class MosquittoProcess:
    """A running broker; stop it with :meth:`stop`."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Kill -9, as a crash would."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_mosquitto(
    data_dir: Path,
    port: int | None = None,
    binary: str | None = None,
    conf: Path = PROJECT_CONF,
    timeout: float = 10.0,
) -> MosquittoProcess:
    """Start mosquitto with the project's config on ``port`` (a free one by default)."""
    binary = binary or find_mosquitto()
    if binary is None:
        raise BrokerStartError("no mosquitto binary on PATH")
    if not conf.is_file():
        raise BrokerStartError(f"broker config not found: {conf}")
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    conf_path = data_dir / "mosquitto.conf"
    conf_path.write_text(render_config(conf.read_text(), port, data_dir))
    log_path = data_dir / "mosquitto.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [binary, "-c", str(conf_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # not in the terminal's process group: Ctrl-C stops its clients first, then it
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerStartError(
                f"mosquitto exited with {process.returncode}: {log_path.read_text()[-2000:]}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return MosquittoProcess(process, port, log_path)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise BrokerStartError(f"mosquitto did not listen on port {port} within {timeout:.0f} s")
