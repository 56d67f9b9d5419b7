"""``make dev``: the Dagster UI and daemons (``dagster dev``) on the demo's instance, quietly and stoppable.

What ``dagster dev`` does not do well when started from the repository, fixed here:

- Started in the background (``make dev &``, nohup, a service manager) a shell sets SIGINT to "ignored", and
  ``dagster dev`` maps SIGTERM onto the SIGINT handler: SIGTERM was ignored and it ran on. Here Ctrl-C and
  SIGTERM both reach it as SIGINT, its own shutdown.
- After it exits, its code server lingered until a 45-s heartbeat lapsed: it runs in its own process group,
  and what is left of the group gets SIGTERM (then SIGKILL after a few seconds).
- With DAGSTER_HOME set, a ``dagster.yaml`` in the working folder (the template ``make`` copies into
  DAGSTER_HOME) makes it warn that the file "will not be used". It runs from DAGSTER_HOME instead, with the
  workspace file and the data folder given as absolute paths, and ``.env`` loaded from the repository as
  ``dagster dev`` would have.
- ``dagster dev`` says it is "superseded ... use 'dg dev'"; dg is not a dependency of this project, and the
  command works as documented, so that one warning is filtered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dotenv import load_dotenv  # python-dotenv, a dependency of dagster

REPO = Path(__file__).resolve().parent.parent
SUPERSEDED = "ignore:Function `dev_command` is superseded"
# How long the processes dagster dev leaves behind get to stop after SIGTERM before they are killed.
GRACE_S = 5.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str]) -> int:
    home = Path(os.environ.get("DAGSTER_HOME") or REPO / ".data" / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    load_dotenv(REPO / ".env")  # what dagster dev reads from its working folder; the environment wins
    data_dir = os.environ.get("INTEGRATION_DATA_DIR") or ".data"
    os.environ["INTEGRATION_DATA_DIR"] = str((REPO / data_dir).resolve())
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), SUPERSEDED]))
    dagster = str(Path(sys.executable).parent / "dagster")
    started: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, frame: object) -> None:
        for proc in started:
            proc.send_signal(signal.SIGINT)  # dagster dev's own shutdown of the webserver and the daemons

    # Handlers first: the child gets them reset to the defaults, so its SIGINT is never inherited as ignored.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    # Its own process group, so what it leaves behind can be stopped as one (below).
    proc = subprocess.Popen(  # noqa: S603  # our own venv's dagster with the arguments make passes
        [dagster, "dev", "-w", str(REPO / "workspace.yaml"), *argv], cwd=home, start_new_session=True
    )
    started.append(proc)
    code = proc.wait()
    # The code server and its gRPC server only exit when their 45-s heartbeat lapses (docs/DAGSTER.md): stop
    # them, and any run still executing, now; they handle SIGTERM as an interrupt.
    deadline = time.monotonic() + GRACE_S
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGTERM)
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
