"""Run a Mosquitto broker as a child process with the project's ``broker/mosquitto.conf``.

Used by the test suite and by ``plantwire demo`` when no ``MQTT_URL`` is given: the project's
config is copied with its listeners moved to chosen ports, its persistence to a private
directory and its password file, ACL and certificates to a directory of the caller's, so
nothing on the machine is touched and tests never share a broker. Anonymous clients are
refused: the caller makes the logins (``plantwire_platform.gateways``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

PROJECT_CONF = Path(__file__).resolve().parent.parent / "mosquitto.conf"


class BrokerStartError(RuntimeError):
    """Mosquitto could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def reserve_port(host: str = "127.0.0.1") -> socket.socket:
    """A socket bound to a free port (``getsockname()[1]``) and held, not listening, until it
    is closed: a port from :func:`free_port` can be taken by anyone (an outgoing connection's
    local port, too) before its server binds it, and again while a server is restarted. A
    server that binds with ``SO_REUSEADDR`` (asyncio's servers and Mosquitto do) still gets
    the held port; nobody else can bind it or pick it for an outgoing connection."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def find_mosquitto() -> str | None:
    """The mosquitto binary on PATH (or in /usr/sbin, where Debian puts it), if any."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


SECRETS_IN_CONF = "/etc/mosquitto/plantwire"
HASH_ITERATIONS = 101  # what mosquitto_passwd uses
DEV_USER = "plantwire-dev"


def password_hash(password: str, salt: bytes | None = None) -> str:
    """``password`` as Mosquitto 2's password file holds it (``$7$``: PBKDF2-HMAC-SHA512)."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, HASH_ITERATIONS, 64)
    b64 = base64.b64encode
    return f"$7${HASH_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def dev_login(directory: Path) -> tuple[str, str]:
    """A login that may do anything, for tests and benchmarks: a password file and ACL in
    ``directory`` holding it alone; kept in ``directory/login`` and reused, so a broker
    restarted on the same directory takes the same login."""
    saved = directory / "login"
    if saved.exists():
        user, _, password = saved.read_text().strip().partition(":")
        return user, password
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    (directory / "passwd").write_text(f"{DEV_USER}:{password_hash(password)}\n")
    (directory / "acl").write_text(f"user {DEV_USER}\ntopic readwrite #\n")
    saved.write_text(f"{DEV_USER}:{password}\n")
    return DEV_USER, password


LISTENERS_MARK = "# -- listeners"


def render_config(
    template: str,
    port: int,
    data_dir: Path,
    secrets_dir: Path | None = None,
    tls_port: int | None = None,
) -> str:
    """The project's config with its listeners on ``port`` (plain) and ``tls_port`` (TLS),
    both on 127.0.0.1, persistence under ``data_dir`` and the password file, ACL, pid file and
    certificates in ``secrets_dir`` (default ``data_dir``)."""
    head, mark, _ = template.partition(LISTENERS_MARK)
    if not mark or re.search(r"(?m)^listener\s", head):
        raise BrokerStartError(
            f"mosquitto.conf must end with its listeners after {LISTENERS_MARK!r}"
        )
    secrets = str(secrets_dir or data_dir)
    text = head.replace(SECRETS_IN_CONF, secrets)
    text = re.sub(r"(?m)^persistence_location\s+.*$", f"persistence_location {data_dir}/", text)
    text += f"{LISTENERS_MARK}\nlistener {port} 127.0.0.1\n"
    if tls_port is not None:
        text += (
            f"listener {tls_port} 127.0.0.1\ncafile {secrets}/ca.crt\n"
            f"certfile {secrets}/server.crt\nkeyfile {secrets}/server.key\n"
        )
    # Started as root, mosquitto would switch to its own user, who cannot write a private
    # directory: the copy runs as whoever started it.
    return text + f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"


@dataclass
class MosquittoProcess:
    """A running broker; stop it with :meth:`stop`."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    login: tuple[str, str] | None = None  # whose url :attr:`url` gives
    tls_port: int | None = None
    secrets_dir: Path | None = None

    @property
    def url(self) -> str:
        """Plain MQTT on loopback, with :attr:`login`."""
        return f"mqtt://{self._userinfo()}127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        """TLS with :attr:`login`, trusting the CA in :attr:`secrets_dir`."""
        assert self.tls_port is not None and self.secrets_dir is not None
        ca = quote(str(self.secrets_dir / "ca.crt"), safe="")
        return f"mqtts://{self._userinfo()}127.0.0.1:{self.tls_port}?cafile={ca}"

    def _userinfo(self) -> str:
        if self.login is None:
            return ""
        return f"{quote(self.login[0], safe='')}:{quote(self.login[1], safe='')}@"

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
    *,
    secrets_dir: Path | None = None,
    login: tuple[str, str] | None = None,
    tls_port: int | None = None,
) -> MosquittoProcess:
    """Start mosquitto with the project's config on ``port`` (a free one by default) and,
    with ``tls_port``, a TLS listener; ``secrets_dir`` holds its password file, ACL and
    certificates (``plantwire platform broker init``), ``login`` is who :attr:`url` is for.
    Without ``secrets_dir``, a login that may do anything is made (:func:`dev_login`)."""
    binary = binary or find_mosquitto()
    if binary is None:
        raise BrokerStartError("no mosquitto binary on PATH")
    if not conf.is_file():
        raise BrokerStartError(f"broker config not found: {conf}")
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    if secrets_dir is None:
        if tls_port is not None:
            raise BrokerStartError("a TLS listener needs secrets_dir with its certificates")
        login = dev_login(data_dir)
    conf_path = data_dir / "mosquitto.conf"
    conf_path.write_text(render_config(conf.read_text(), port, data_dir, secrets_dir, tls_port))
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
                return MosquittoProcess(
                    process, port, log_path, login, tls_port, secrets_dir or data_dir
                )
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise BrokerStartError(f"mosquitto did not listen on port {port} within {timeout:.0f} s")
