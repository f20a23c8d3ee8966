"""Test-only fault injection, kept in this one place: ``NEUROSCOPE_FAULT=WHERE:WHEN`` makes the
process SIGKILL itself at a moment a timer cannot hit reliably. The points are
``after_checkpoint:STEP`` (right after the checkpoint that continues at row STEP is on disk) and
``final_save:history|model|summary`` (during the end-of-run save, right after that file). Unset,
as it always is outside tests/test_faults.py, it does nothing.
"""
from __future__ import annotations

import os
import signal

FAULT_ENV = "NEUROSCOPE_FAULT"


def fault_point(where: str, when: object) -> None:
    """Kill this process with SIGKILL if ``NEUROSCOPE_FAULT`` names this point."""
    if os.environ.get(FAULT_ENV) == f"{where}:{when}":
        os.kill(os.getpid(), signal.SIGKILL)
