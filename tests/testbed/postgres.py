"""A throwaway PostgreSQL server (Debian's package) on 127.0.0.1 for tests that need Dagster storage."""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.testbed import state
from tests.testbed.processes import LOOPBACK, Process, TestbedError, alive, free_ports, spawn, stop, wait_for

SUPERUSER = "phlo"
OS_USER = "postgres"  # PostgreSQL refuses to run as root; as root we drop to this account.
_TEMP_PREFIX = "phlo-testbed-pg-"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def find_bin_dir() -> Path:
    """Newest /usr/lib/postgresql/<major>/bin with initdb (or $PHLO_PG_BIN)."""
    override = os.environ.get("PHLO_PG_BIN")
    if override:
        if not (Path(override) / "initdb").exists():
            raise TestbedError(f"PHLO_PG_BIN={override} has no initdb")
        return Path(override)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise TestbedError(
            "PostgreSQL server not found under /usr/lib/postgresql/*/bin: install it "
            "(apt-get install postgresql; .ci/run does this) or set PHLO_PG_BIN"
        )
    return candidates[-1].parent


@dataclass
class Postgres:
    """Connection details of the running server; create_database hands each test its own database."""

    __test__ = False

    host: str
    port: int
    user: str
    password: str
    directory: Path
    process: Process
    data_dir: Path

    def params(self, database: str) -> dict[str, Any]:
        """Keyword arguments for psycopg2.connect / Dagster's postgres_db config."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": database,
        }

    def dsn(self, database: str) -> str:
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{database}"
        )

    def create_database(self, name: str) -> str:
        """Create database name (lowercase letters, digits, _; the caller makes it unique); return its DSN."""
        if not _DB_NAME.match(name):
            raise ValueError(
                f"database name {name!r} is invalid: use 1-63 lowercase letters, digits or '_', "
                "starting with a letter or '_'"
            )
        import psycopg2

        connection = psycopg2.connect(**self.params("postgres"), connect_timeout=10)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.dsn(name)

    def accepts_connections(self) -> bool:
        import psycopg2

        try:
            psycopg2.connect(**self.params("postgres"), connect_timeout=3).close()
        except psycopg2.OperationalError:
            return False
        return True

    def alive(self) -> bool:
        return alive(self.process) and self.accepts_connections()

    def stop(self, remove_data: bool = True) -> None:
        """Fast shutdown (SIGINT: disconnect clients, no waiting for them), then drop the data."""
        stop(self.process, grace=20, first_signal=signal.SIGINT)
        if remove_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            if self.data_dir.parent.name.startswith(_TEMP_PREFIX):
                shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def start_again(self) -> None:
        """Start a server stopped with stop(remove_data=False) on its data and port (a database outage
        ended); returns once it accepts connections."""
        if alive(self.process):
            raise TestbedError(f"PostgreSQL (pid {self.process.pid}) is still running")
        argv = _server_argv(self.data_dir, self.port)
        log = self.directory / "postgres.log"
        self.process = spawn("postgres", argv, log, env=_ENV, cwd=self.data_dir.parent, executable="postgres")
        wait_for("PostgreSQL to accept connections again", self.accepts_connections, 60, [self.process])

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "directory": str(self.directory),
            "process": self.process.to_json(),
            "data_dir": str(self.data_dir),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Postgres:
        return cls(
            host=data["host"],
            port=int(data["port"]),
            user=data["user"],
            password=data["password"],
            directory=Path(data["directory"]),
            process=Process.from_json(data["process"]),
            data_dir=Path(data.get("data_dir") or Path(data["directory"]) / "data"),
        )


def _as_postgres_user() -> list[str]:
    """Command prefix that runs a program as the postgres OS user when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(OS_USER)
    except KeyError as error:
        raise TestbedError(
            f"running as root but there is no '{OS_USER}' OS user to run PostgreSQL"
        ) from error
    return ["setpriv", f"--reuid={OS_USER}", f"--regid={OS_USER}", "--init-groups", "--"]


def _traversable_by_postgres(path: Path) -> bool:
    """Whether the postgres OS user can reach path (not when the checkout is under /root, mode 700)."""
    if os.geteuid() != 0:
        return True
    entry = pwd.getpwnam(OS_USER)
    for ancestor in [path, *path.parents]:
        info = ancestor.stat()
        if info.st_uid == entry.pw_uid:
            continue
        if info.st_mode & 0o001 or (info.st_gid == entry.pw_gid and info.st_mode & 0o010):
            continue
        return False
    return True


def _chown_tree(path: Path) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(OS_USER)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _server_argv(data: Path, port: int) -> list[str]:
    """The server's command line (as the postgres OS user when we are root)."""
    return [
        *_as_postgres_user(),
        str(find_bin_dir() / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-c",
        f"listen_addresses={LOOPBACK}",
        "-c",
        f"unix_socket_directories={data}",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=300",
        "-c",
        "logging_collector=off",
    ]


def start(directory: Path, state_dir: Path) -> Postgres:
    """initdb a fresh cluster in directory/data and start it on a free 127.0.0.1 port (password auth)."""
    bin_dir = find_bin_dir()
    prefix = _as_postgres_user()
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    shutil.rmtree(data, ignore_errors=True)
    if not _traversable_by_postgres(directory):
        # The server's own files must be reachable by its OS user: fall back to a private dir under /tmp.
        data = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX)) / "data"
        _chown_tree(data.parent)
    data.mkdir(mode=0o700)
    password = secrets.token_hex(16)
    pwfile = data.parent / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    for owned in {directory, data.parent}:
        _chown_tree(owned)
    log = directory / "postgres.log"
    env = _ENV
    initdb = subprocess.run(
        [
            *prefix,
            str(bin_dir / "initdb"),
            f"--pgdata={data}",
            f"--username={SUPERUSER}",
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=data.parent,
        check=False,
    )
    pwfile.unlink(missing_ok=True)
    if initdb.returncode != 0:
        raise TestbedError(f"initdb failed (exit {initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}")

    errors: list[str] = []
    for attempt in range(1, 4):
        (port,) = free_ports(1)
        argv = _server_argv(data, port)
        process = spawn("postgres", argv, log, env=_ENV, cwd=data.parent, executable="postgres")
        server = Postgres(LOOPBACK, port, SUPERUSER, password, directory, process, data)
        try:
            wait_for("PostgreSQL to accept connections", server.accepts_connections, 60, [process])
        except TestbedError as error:
            stop(process, grace=5, first_signal=signal.SIGINT)
            errors.append(f"attempt {attempt}: {error}")
            print(f"testbed: postgres attempt {attempt} failed", file=sys.stderr)
            continue
        state.update(state_dir, "postgres", server.to_json())
        return server
    raise TestbedError("PostgreSQL did not start:\n" + "\n".join(errors))


def attach(state_dir: Path) -> Postgres | None:
    """The server recorded in state_dir/state.json when it still accepts connections."""
    data = state.read(state_dir).get("postgres")
    if not data:
        return None
    server = Postgres.from_json(data)
    return server if server.alive() else None


def stop_recorded(state_dir: Path) -> bool:
    """Stop the server recorded in state_dir/state.json; True when one was recorded."""
    data = state.read(state_dir).get("postgres")
    if not data:
        return False
    Postgres.from_json(data).stop()
    state.update(state_dir, "postgres", None)
    return True
