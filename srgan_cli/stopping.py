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
    """The signals that stop a command as Ctrl-C does: SIGTERM (`timeout`, a scheduler), and
    SIGHUP (the terminal or SSH session closed) unless it is ignored, as under `nohup`, which
    asks for the command to go on; on Windows SIGBREAK (Ctrl+Break, the console closing), which
    killed a training run without its checkpoint."""
    signals = [signal.SIGTERM]
    hup = getattr(signal, "SIGHUP", None)  # not on Windows
    if hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:
        signals.append(hup)
    brk = getattr(signal, "SIGBREAK", None)  # Windows only: Ctrl+Break, and the console window closing
    if brk is not None and signal.getsignal(brk) is not signal.SIG_IGN:
        signals.append(brk)
    return signals


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP (see ``stop_signals``) raise KeyboardInterrupt, so they stop as
    cleanly as Ctrl-C (exit 130; a batch's report written, a training run's checkpoint saved)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    first: list[float] = []

    def handler(signum, frame):
        # the same request delivered again is not raised a second time: it would cut short the
        # clean-up the first one started (a batch's report); a later one stops at once
        now = time.monotonic()
        if first and now - first[0] <= SAME_REQUEST:
            return
        first[:] = [now]
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in stop_signals()}
    try:
        yield
    finally:
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)
