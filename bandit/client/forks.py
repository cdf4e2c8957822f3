"""Threads, locks and connections held by objects that may cross a fork: rebuilt in the child on first use.

Nothing is rebuilt at the fork itself. A hook there runs in every child (a multiprocessing
worker, a subprocess's preexec_fn), most of which never use the object, and it runs while locks
that the parent's other threads held at the fork (OpenSSL's, httpcore's, the batcher's own) stay
held for good in the child: building an SSL context or starting a thread there may hang. The
hook below only counts the fork; an object rebuilds what it holds on its first use in the child.

Forks are counted rather than process ids compared: a pid can come back (a grandchild may get
the pid of a grandparent that has exited), a count of forks in this line of descent cannot.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

#: Forks this process is down from since this module was imported (0 in the process that imported it).
_forks = 0
#: Serialises rebuilds, so that two threads using an object at once in a child rebuild it once
#: (re-entrant: a rebuild may use another object of this kind).
_rebuilding = threading.RLock()


def _count_fork() -> None:
    global _forks, _rebuilding
    _forks += 1
    _rebuilding = threading.RLock()  # the parent's may have been held by a thread that does not exist here


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_count_fork)


class ProcessBound:
    """Marks what an object holds as this process's; `rebuild_if_forked` makes it anew in a child."""

    def __init__(self) -> None:
        self._forks = _forks

    def rebuild_if_forked(self, rebuild: Callable[[], None]) -> None:
        """Call `rebuild` once in a child forked since (the first time any thread gets here), else nothing."""
        if self._forks == _forks:
            return
        with _rebuilding:
            if self._forks != _forks:
                rebuild()
                self._forks = _forks
