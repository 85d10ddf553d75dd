"""Child processes that go when charflow goes, however it goes (kill -9 included): Linux's PR_SET_PDEATHSIG."""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_this_process() -> Callable[[], None]:
    """A `preexec_fn`: in the child, before exec, ask for SIGTERM when this process dies."""
    parent = os.getpid()

    def arm() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return arm
