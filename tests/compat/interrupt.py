"""Test-only, not a compatibility plugin: the event that interrupts a run, as a user's
Ctrl-C does. Its schedule ``sigint_before`` keeps the learning rate constant and, asked for
the rate of the epoch named by $MINIDL_COMPAT_SIGINT_BEFORE_EPOCH, sends SIGINT to its own
process: minidl-run's handler then stops the run with the one line that says how to resume
it. A function of the epoch alone, it holds no state, so the run stays resumable."""

import os
import signal

from minidl import hookimpl

EPOCH = "MINIDL_COMPAT_SIGINT_BEFORE_EPOCH"


def sigint_before(base_lr, epochs):
    def lr_at(epoch):
        if str(epoch) == os.environ.get(EPOCH):
            # Without minidl-run's handler the signal would be a KeyboardInterrupt, which
            # would end a whole pytest session, not just this run.
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                raise RuntimeError("SIGINT has no handler here: run through minidl.cli.main")
            os.kill(os.getpid(), signal.SIGINT)
        return base_lr

    return lr_at


@hookimpl
def register_schedules(register):
    register("sigint_before", sigint_before)
