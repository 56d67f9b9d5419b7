"""Servers a test starts, stops and kills itself: its own PostgreSQL 15 cluster and its own RabbitMQ node,
each on free loopback ports, with data under a temporary directory removed afterwards.

Fault scenarios that need a server to die use these, never the machine's shared services (5432/5672).
Only the processes started here are ever signalled, by the pids they wrote (postmaster.pid, the node's
pid file). Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("INTEGRATION_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
RABBITMQ_SERVER = Path(
    os.environ.get("INTEGRATION_TEST_RABBITMQ_SERVER", "/usr/lib/rabbitmq/bin/rabbitmq-server")
)


class ServerError(RuntimeError):
    """The server could not be started or stopped in time (its log tail is in the message)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0): look at its state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return not _pid_alive(pid)


class OwnPostgres:
    """A PostgreSQL cluster of our own: ``initdb`` as the ``postgres`` OS user (the server refuses to run
    as root), trust auth, listening on 127.0.0.1:<free port> only."""

    def __init__(self, root: Path | None = None) -> None:
        if not (PG_BIN / "initdb").exists():
            raise ServerError(f"PostgreSQL binaries not found in {PG_BIN}")
        self.root = Path(tempfile.mkdtemp(prefix="ia-faults-pg-", dir=root))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, user="postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        cmd = [str(PG_BIN / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=self.root)
        if proc.returncode != 0:
            raise ServerError(f"{tool} failed ({proc.returncode}): {proc.stderr[-2000:]}\n{_tail(self.log)}")
        return proc

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=60"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", opts, "start")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>``; ``immediate`` is a crash stop (no checkpoint: recovery on start)."""
        if self.pid is None:
            return
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def create_database(self, name: str) -> str:
        import sqlalchemy as sa

        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except (ServerError, subprocess.TimeoutExpired):
            pid = self.pid
            if pid is not None:  # our own postmaster only, by the pid it wrote
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 10)
        shutil.rmtree(self.root, ignore_errors=True)


class OwnRabbitMQ:
    """A RabbitMQ node of our own (a new node name, its own AMQP and distribution ports, Mnesia and logs
    under a temporary directory, no plugins). ``kill()`` is a ``kill -9`` of its Erlang VM, ``start()``
    brings it back on the same ports and data, so durable queues and confirmed messages survive."""

    def __init__(self, root: Path | None = None) -> None:
        if not RABBITMQ_SERVER.exists():
            raise ServerError(f"rabbitmq-server not found at {RABBITMQ_SERVER}")
        self.root = Path(tempfile.mkdtemp(prefix="ia-faults-rmq-", dir=root))
        self.port = free_port()
        self.node = f"iafaults{os.getpid()}x{self.port}@localhost"
        self.pid_file = self.root / "beam.pid"
        self.log = self.root / "server.out"
        (self.root / "rabbitmq-env.conf").write_text("")  # not the machine's (it names the shared node)
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.root),  # the node's Erlang cookie
            RABBITMQ_CONF_ENV_FILE=str(self.root / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(self.root / "rabbitmq.conf"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(free_port()),
            RABBITMQ_MNESIA_BASE=str(self.root / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.root / "log"),
            RABBITMQ_PID_FILE=str(self.pid_file),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.root / "enabled_plugins"),
            RABBITMQ_ENABLED_PLUGINS="",
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    @property
    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self, timeout_s: float = 60.0) -> float:
        """Start the node and wait until it accepts AMQP connections; returns the seconds it took."""
        import pika

        t0 = time.monotonic()
        self.pid_file.unlink(missing_ok=True)
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed binary, our own arguments
                [str(RABBITMQ_SERVER)],
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,
            )
        deadline = t0 + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerError(f"rabbitmq-server exited with {self._proc.returncode}:\n{_tail(self.log)}")
            if port_open(self.port):
                try:
                    pika.BlockingConnection(
                        pika.URLParameters(self.amqp_url + "?connection_attempts=1")
                    ).close()
                    return time.monotonic() - t0
                except Exception:  # noqa: BLE001 - not ready yet (boot steps still running)
                    pass
            time.sleep(0.2)
        raise ServerError(f"RabbitMQ node {self.node} not up within {timeout_s:.0f}s:\n{_tail(self.log)}")

    def kill(self) -> None:
        """``kill -9`` of the node's Erlang VM (by the pid it wrote), then wait for it and its wrapper."""
        pid = self.pid
        if pid is None:
            raise ServerError("the node wrote no pid file")
        os.kill(pid, signal.SIGKILL)
        if not _wait_gone(pid, 15):
            raise ServerError(f"beam {pid} still alive after SIGKILL")
        if self._proc is not None:
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()  # our own wrapper shell
                self._proc.wait(timeout=5)
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def pause(self) -> None:
        """``kill -STOP`` of the node's Erlang VM: it hangs, its sockets stay open."""
        pid = self.pid
        if pid is None:
            raise ServerError("the node wrote no pid file")
        os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        pid = self.pid
        if pid is not None and _pid_alive(pid):
            os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        pid = self.pid
        if pid is not None and _pid_alive(pid):
            os.kill(pid, signal.SIGCONT)  # in case a test left it paused
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, 20):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 10)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)
