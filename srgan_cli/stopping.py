"""Stopping on a signal: which signals stop a command or a training run as Ctrl-C does, and
when a repeat is the same request. Free of click and torch: the trainer and its loader workers
use it too."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

# Seconds within which a second stop signal is the first one delivered again (to the process, then
# its group; a closing session's SIGHUP, then SIGTERM), not a second request: the commands, the
# trainer and its loader workers share it.
SAME_REQUEST = 1.0


# Set once this process has started a torch.distributed process group (train under torchrun, or
# upscale's barrier between ranks): the command line then ends without the interpreter's teardown,
# where gloo could abort a finished run (see cli.run).
PROCESS_GROUP_STARTED = False


def process_group_started() -> None:
    global PROCESS_GROUP_STARTED
    PROCESS_GROUP_STARTED = True


def stop_signals() -> list[signal.Signals]:
    """The signals that stop a command as Ctrl-C does: SIGTERM (`timeout`, a scheduler), SIGHUP
    (the terminal or SSH session closed) and on Windows SIGBREAK (Ctrl+Break, the console closing),
    which killed a training run without its checkpoint; each unless it is ignored, which asks for
    the command to go on: `nohup` ignores SIGHUP, `trap '' TERM` SIGTERM."""
    names = ("SIGTERM", "SIGHUP", "SIGBREAK")  # SIGHUP is not on Windows, SIGBREAK only there
    return [sig for name in names if (sig := getattr(signal, name, None)) is not None and not _ignored(sig)]


def interrupt_signals() -> list[signal.Signals]:
    """SIGINT (Ctrl-C) and the :func:`stop_signals`, less those ignored: a shell starts a
    non-interactive script's background jobs with SIGINT ignored, so that Ctrl-C stops the script
    and not them, and srgan stopped them all the same."""
    return [sig for sig in (signal.SIGINT, *stop_signals()) if not _ignored(sig)]


def _ignored(sig: signal.Signals) -> bool:
    return signal.getsignal(sig) is signal.SIG_IGN


_first_request: float | None = None  # when the latest stop request came (monotonic), for same_request


def same_request() -> bool:
    """Called by each stop-signal handler of this process as a signal arrives: True when it is
    the request already being handled delivered again (within SAME_REQUEST seconds of it), else
    it is recorded as a new request. One record for all the handlers: the one in force when a
    signal comes may not be the one that saw the first (train's handler gives way to the
    program's as the run ends, which took the repeat for a new request and was killed by it)."""
    global _first_request
    now = time.monotonic()
    if _first_request is not None and now - _first_request <= SAME_REQUEST:
        return True
    _first_request = now
    return False


def forget_requests() -> None:
    """A new stage of handling begins (a training run, a command from the API): no request is
    being handled yet, so the next signal is a new one whenever the last came."""
    global _first_request
    _first_request = None


class _Program:
    """The srgan program's own handling of stop signals (:func:`start_program`), from its first
    line to its exit: Ctrl-C, SIGTERM and SIGHUP raise KeyboardInterrupt (exit 130, one line),
    except while ``deferring`` (a KeyboardInterrupt raised inside the import of PyTorch aborted
    the process from C++, or left numpy half imported), where one is kept ``pending`` and raised
    as the deferral ends, and once ``finished`` (the command is over: its exit status stands; a
    signal in the second of teardown after it killed the process with 143, or printed a traceback
    from an atexit callback)."""

    active = False
    deferring = 0
    pending = False
    finished = False


def _program_handler(signum, frame) -> None:
    if same_request() or _Program.finished:
        return
    if _Program.deferring and not _Program.pending:
        _Program.pending = True  # held; a second request, not a repeat, stops at once (a blocked write)
        return
    _Program.pending = False
    raise KeyboardInterrupt


def start_program() -> None:
    """Install the program's handler (:class:`_Program`) for SIGINT and the stop signals, holding
    them through the start-up (imports, parsing the command line) until :func:`end_start_up`,
    which a command calls as it starts: for the command line only, never for a program using
    the API. A signal held then is raised where the command can stop cleanly (cli.Command); one
    that comes while ``--help`` or a usage error is printed is let go with the program."""
    _Program.active, _Program.deferring = True, 1
    for sig in interrupt_signals():
        signal.signal(sig, _program_handler)


def end_start_up() -> None:
    """Hand the start-up's hold over to the caller's :func:`deferred_interrupts`, which raises a
    signal held since the start as it ends."""
    if _Program.active and _Program.deferring > 1:
        _Program.deferring -= 1


def program_finished() -> None:
    """The command is over and its exit status decided: stop signals are ignored from here on.
    Python's teardown resets the handlers it set to the default, so a signal in the second of
    PyTorch's teardown killed the process (143, 129: the repeat of a request already handled) or
    printed a traceback from an atexit callback; an ignored signal stays ignored."""
    if not _Program.active:  # cli.run called by a program of its own (or a test): not ours to change
        return
    _Program.finished = True
    if threading.current_thread() is threading.main_thread():
        for sig in interrupt_signals():
            signal.signal(sig, signal.SIG_IGN)


def _settle_pending(raise_it: bool = True) -> None:
    """Once nothing holds signals any more: raise the one held (or, without ``raise_it``, drop it)."""
    if not _Program.active or _Program.deferring or not _Program.pending:
        return
    _Program.pending = False
    if raise_it and not _Program.finished:
        raise KeyboardInterrupt


def program_active() -> bool:
    return _Program.active


@contextlib.contextmanager
def deferred_interrupts(raise_pending: bool = True) -> Iterator[None]:
    """In the srgan program, hold stop signals while the block runs (importing PyTorch), and raise
    one that came as it ends (unless the block raised; or, without ``raise_pending``, drop it: the
    block let signals through where it could stop, :func:`interruptible`, and one after that came
    when its work was done); elsewhere (the API, a thread) a no-op."""
    if not _Program.active or threading.current_thread() is not threading.main_thread():
        yield
        return
    _Program.deferring += 1
    try:
        yield
    except BaseException:
        _Program.deferring -= 1
        raise
    _Program.deferring -= 1
    _settle_pending(raise_pending)


@contextlib.contextmanager
def interruptible(raise_pending: bool = True) -> Iterator[None]:
    """Inside :func:`deferred_interrupts`, let stop signals interrupt the block at once (raising one
    that came before it, as it starts; without ``raise_pending`` dropping it: it came when the
    outcome was decided): a command's body from where it can end cleanly (upscale's report is
    written by the ``finally`` around it)."""
    if not _Program.active or threading.current_thread() is not threading.main_thread():
        yield
        return
    saved, _Program.deferring = _Program.deferring, 0
    try:
        _settle_pending(raise_pending)
        yield
    finally:
        _Program.deferring = saved


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (see ``stop_signals``) raise KeyboardInterrupt, so they stop as
    cleanly as Ctrl-C (exit 130; a batch's report written, a training run's checkpoint saved).
    In the srgan program its own handler (:func:`start_program`) does so already."""
    if threading.current_thread() is not threading.main_thread() or _Program.active:
        yield
        return

    def handler(signum, frame):
        # the same request delivered again is not raised a second time: it would cut short the
        # clean-up the first one started (a batch's report); a later one stops at once
        if same_request():
            return
        raise KeyboardInterrupt

    forget_requests()
    previous = {sig: signal.signal(sig, handler) for sig in stop_signals()}
    try:
        yield
    finally:
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)
