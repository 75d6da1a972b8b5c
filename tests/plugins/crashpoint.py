"""A pytest plugin for crash tests: ``INVARIANTS_CRASH=point:n`` kills the process (SIGKILL, no cleanup)
the n-th time the repair reaches ``point``:

    locked     the batch's rows are locked and their images staged; the repair statement has not run
    journaled  the batch's statement ran and its journal lines are fsynced; the transaction is still open
    committed  one rule x project's repair transaction has committed
    torn       the n-th batch's journal write is cut in the middle of its last line (a kill during the write)
"""

import os
import signal

from antenna_invariants import case, journal

POINT, _, NTH = os.environ["INVARIANTS_CRASH"].partition(":")
reached = 0


def after(func, point):
    def wrapper(*args, **kwargs):
        global reached
        result = func(*args, **kwargs)
        if point == POINT:
            reached += 1
            if reached == int(NTH):
                os.kill(os.getpid(), signal.SIGKILL)
        return result

    return wrapper


journal.Journal.watch = after(journal.Journal.watch, "locked")
journal.Journal._append = after(journal.Journal._append, "journaled")
case.repair = after(case.repair, "committed")


def torn(write):
    """``torn:n``: the n-th batch's write reaches the disk up to the middle of its last line (what a process
    killed during the write leaves), and the process is killed before the batch can commit."""

    def wrapper(journal_, texts):
        global reached
        write(journal_, texts)
        reached += 1
        if reached == int(NTH):
            data = journal_.path.read_bytes()
            last_line = data.rindex(b"\n", 0, len(data) - 1) + 1
            os.truncate(journal_.path, last_line + (len(data) - last_line) // 2)
            os.kill(os.getpid(), signal.SIGKILL)

    return wrapper


if POINT == "torn":
    journal.Journal._write = torn(journal.Journal._write)
