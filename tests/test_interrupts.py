"""SIGTERM to a Lightning run: the process ends without hanging, and nothing written is lost.

KeyboardInterrupt and exceptions are in tests/test_lightning.py and tests/test_session.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.conftest import summaries_by_step

CHILD = os.path.join(os.path.dirname(__file__), "sigterm_child.py")


def test_sigterm_to_lightning_keeps_every_written_step(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    child = subprocess.Popen([sys.executable, CHILD, str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)  # fmt: skip
    last = 0
    for line in child.stdout:
        last = int(line.split()[1])
        if last >= 20:
            child.send_signal(signal.SIGTERM)
            break
    rest, _ = child.communicate(timeout=120)  # never hangs on the writer thread
    for line in rest.splitlines():
        last = int(line.split()[1])
    assert child.returncode == 0  # Lightning 2.6 stops gracefully on SIGTERM ("Received SIGTERM")
    assert last < 100_000  # it stopped before its max_steps
    steps = sorted(summaries_by_step(str(tmp_path)))
    assert steps[:last] == list(range(1, last + 1))  # every step reported as written is on disk
