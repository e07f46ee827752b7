"""Running the shell scripts (test.sh, train.sh) from tests."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Generous: a busy 2-core machine runs these several times slower than an idle one.
SHELL_TIMEOUT = 900


def shell_env(**variables):
    """The environment for the shell scripts: this interpreter's folder first on PATH (so their `python` is the
    one running pytest, whatever else PATH holds), plus ``variables`` as strings."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, 'PATH': path, **{name: str(value) for name, value in variables.items()}}


def run_script(*command, **variables):
    """``command`` (e.g. 'bash', 'test.sh', 'ped2') in the repository root with :func:`shell_env`."""
    return subprocess.run(list(command), cwd=REPO, env=shell_env(**variables), capture_output=True, text=True,
                          timeout=SHELL_TIMEOUT)
