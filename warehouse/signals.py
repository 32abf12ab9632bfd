"""SIGINT and SIGTERM delivered as exceptions, reliably, to the build and the reports.

Both a build (which must clean its unpublished snapshot up) and a long report (which
must stop its query) turn SIGINT into KeyboardInterrupt and SIGTERM into `Terminated`;
the CLI maps them to exit codes 130 and 143 (warehouse.errors.ExitCode).
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager

from warehouse.errors import ExitCode


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so the build cleans up like on Ctrl-C."""

    exit_code = ExitCode.TERMINATED



# The interrupt being delivered, if any (KeyboardInterrupt or Terminated).
_pending: list = [None]


# Inside `signals_held`: how deep, and whether an interrupt came meanwhile.
_held = [0]
_deferred = [False]


def _on_signal(signum, frame):
    _pending[0] = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    if _held[0]:
        _deferred[0] = True
        return
    raise _pending[0]()


def _raise_pending(signum, frame):
    if _pending[0] is not None:
        if _held[0]:
            _deferred[0] = True
            return
        raise _pending[0]()


def _unraisable_hook(previous):
    def hook(unraisable):
        # Raised while Python ran a __del__ or weakref callback, the exception was
        # swallowed ("Exception ignored in ...") and the build would carry on: deliver
        # it again a moment later, from ordinary code.
        if _pending[0] is not None and isinstance(unraisable.exc_value, _pending[0]):
            signal.setitimer(signal.ITIMER_REAL, 0.001)
            return
        previous(unraisable)

    return hook


@contextmanager
def interrupts_as_exceptions():
    """In the main thread: SIGINT -> KeyboardInterrupt, SIGTERM -> Terminated, reliably.

    Python's own SIGINT handling can lose the KeyboardInterrupt when the signal lands
    inside a garbage-collection callback; a lost interrupt would let a killed build run
    to completion.  Here a swallowed interrupt is re-delivered (SIGALRM) until the
    code being interrupted really sees it, so its cleanup (removing the staging
    directory) runs.
    """
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)
    try:
        previous = {s: signal.signal(s, _on_signal if s != signal.SIGALRM else _raise_pending) for s in sigs}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable_hook(previous_hook)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _pending[0] = None
        _deferred[0] = False
        sys.unraisablehook = previous_hook
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def signals_held():
    """SIGINT, SIGTERM and SIGALRM held (blocked) in this thread, delivered at the end.

    For the steps an interrupt must not cut in two: starting a thread the cleanup must
    wait for, waiting for it, and removing the unpublished snapshot (an interrupt
    re-delivered by `interrupts_as_exceptions` inside that rmtree left a directory).
    """
    # Python runs a handler between bytecodes, possibly after the signal itself came:
    # blocking the signal is not enough, the handlers defer too (`_on_signal`).
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    _held[0] += 1
    try:
        yield
    finally:
        _held[0] -= 1
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        if not _held[0] and _deferred[0]:
            _deferred[0] = False
            raise _pending[0]()
