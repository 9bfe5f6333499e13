"""Private services for fault tests: a PostgreSQL cluster (``initdb`` into a temporary
directory, a spare port) and a ``redis-server``, each started, stopped and restarted by the
test. The machine's shared PostgreSQL (5432) and Redis (6379) are never touched."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_PORTS = {5432, 6379}


def spare_port() -> int:
    """A port no one listens on, picked by the kernel (checkouts running their tests at once
    must not pick the same one)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in SHARED_PORTS:
            return port


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # the condition is not met yet
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found")
    return path


def _as_postgres_user() -> list[str]:
    # initdb refuses to run as root: run the cluster as the postgres system user then.
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root and there is no 'postgres' user") from None
        return ["runuser", "-u", "postgres", "--"]
    return []


class PgCluster:
    """A throwaway PostgreSQL cluster with trust auth for the superuser ``kx``."""

    user = "kx"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kx-pg-"))
        self.data = self.dir / "data"
        self.port = spare_port()
        self.prefix = _as_postgres_user()
        if self.prefix:
            shutil.chown(self.dir, "postgres")

    def url(self, db: str = "kx") -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{db}"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> PgCluster:
        self._run(
            pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        return self

    def start(self) -> PgCluster:
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=60"
        )
        self._run(
            pg_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "30",
            "start",
        )
        return self

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate`` drops every connection at once, like a crash)."""
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = subprocess.run(
            [
                pg_bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-XAtc",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip()

    def migrate(self, db: str = "kx") -> None:
        self.psql(f"CREATE DATABASE {db}")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=service_env(DATABASE_URL=self.url(db)),
            check=True,
            timeout=300,
        )

    def clone(self, template: str, db: str) -> str:
        self.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        self.psql(f"CREATE DATABASE {db} TEMPLATE {template}")
        return self.url(db)

    def destroy(self) -> None:
        if self.running():
            try:
                self.stop()
            except subprocess.SubprocessError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kx-redis-"))
        self.port = spare_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def pong():
            with socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(7).startswith(b"+PONG")

        wait_until(pong, 10, "redis-server to answer")
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def service_env(**overrides: str) -> dict:
    """The environment of a project subprocess: no shared service unless given explicitly."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_DEBUG": "false",
        }
    )
    env.update(overrides)
    return env


class ProjectProcess:
    """A project process (daphne or a management command) with its own log file."""

    def __init__(self, args: list[str], env: dict, name: str) -> None:
        self.args = args
        self.env = env
        self.log_path = Path(tempfile.mkstemp(prefix=f"kx-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None
        self._final_log: str | None = None

    @classmethod
    def manage(cls, *args: str, env: dict) -> ProjectProcess:
        return cls([sys.executable, "manage.py", *args], env, args[0])

    @classmethod
    def daphne(cls, port: int, env: dict) -> ProjectProcess:
        proc = cls(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "config.asgi:application",
            ],
            env,
            f"daphne-{port}",
        )
        proc.port = port
        return proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ProjectProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        return self

    def wait_listening(self, timeout: float = 30) -> ProjectProcess:
        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited: {self.log()[-2000:]}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True

        try:
            wait_until(listening, timeout, f"{self.args[-1]} to listen")
        except RuntimeError as exc:
            raise AssertionError(str(exc)) from None
        return self

    def log(self) -> str:
        if self._final_log is not None:
            return self._final_log
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 5) -> int:
        """SIGTERM, then wait at most ``timeout`` seconds; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def cleanup(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._final_log = self.log()  # kept for assertions after the file is gone
        self.log_path.unlink(missing_ok=True)
