"""Worker processes that never outlive the reco command that started them."""

from __future__ import annotations

import os
import sys


def exit_with_parent(parent: int, *_worker_id) -> None:
    """Make this (worker) process die when ``parent`` does, however it dies (SIGKILL included).

    On Linux, PR_SET_PDEATHSIG has the kernel send SIGKILL to this process when the thread that
    started it exits; if ``parent`` is already gone, exit now. Elsewhere nothing is done (the
    pools' own shutdown applies). Usable as a DataLoader ``worker_init_fn`` (through
    ``functools.partial(exit_with_parent, os.getpid())``) or a pool ``initializer``.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def bound_to_this_process():
    """A picklable ``worker_init_fn`` / ``initializer`` binding workers to the calling process."""
    from functools import partial

    return partial(exit_with_parent, os.getpid())
