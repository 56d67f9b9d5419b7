"""``make dev``: the Dagster UI and daemons (``dagster dev``) on the demo's instance, quietly and stoppable.

Three things ``dagster dev`` does not do well when started from the repository, each fixed here before it is
exec'd (so the process that gets Ctrl-C or SIGTERM is ``dagster dev`` itself):

- Started in the background (``make dev &``, nohup, a service manager) a shell sets SIGINT to "ignored", and
  ``dagster dev`` maps SIGTERM onto the SIGINT handler: SIGTERM was ignored and it ran on. SIGINT is reset to
  its default, so both signals end it (docs/DAGSTER.md).
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
import sys
from pathlib import Path

from dotenv import load_dotenv  # python-dotenv, a dependency of dagster

REPO = Path(__file__).resolve().parent.parent
SUPERSEDED = "ignore:Function `dev_command` is superseded"


def main(argv: list[str]) -> None:
    home = Path(os.environ.get("DAGSTER_HOME") or REPO / ".data" / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    load_dotenv(REPO / ".env")  # what dagster dev reads from its working folder; the environment wins
    data_dir = os.environ.get("INTEGRATION_DATA_DIR") or ".data"
    os.environ["INTEGRATION_DATA_DIR"] = str((REPO / data_dir).resolve())
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), SUPERSEDED]))
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # inherited by exec: Python installs KeyboardInterrupt again
    os.chdir(home)
    dagster = str(Path(sys.executable).parent / "dagster")
    # exec, not a child process: Ctrl-C and SIGTERM reach dagster dev directly.
    os.execv(dagster, [dagster, "dev", "-w", str(REPO / "workspace.yaml"), *argv])  # noqa: S606


if __name__ == "__main__":
    main(sys.argv[1:])
