"""Errors that a user's input causes (a flag, a file, a folder), and how the command-line entry points show them.

They are reported as one sentence and a non-zero exit code, without a traceback: the sentence names the flag or
file at fault, which is all the user needs (``--Debug True`` shows the traceback as well). Anything else is a bug
and keeps its traceback.
"""
import sys

from utils.flags import str2bool
from utils.interrupts import Interrupted, report_errors_again, settle_after_interrupt, signal_number, stop_on_signals

# DataLoader workers re-raise a worker's exception in the main process with the worker's traceback in its text
WORKER_TRACEBACK = 'Original Traceback'


class InputError(ValueError):
    """A flag, file or folder given to us is missing, unreadable or inconsistent."""


class OutputError(InputError):
    """A file or folder could not be written (a full disk, a read-only folder, ...): told like an input error,
    since the fix is the user's (free space, another --OutRoot), not ours."""


def one_sentence(error):
    """The error's own sentence, without the traceback a DataLoader worker puts into it."""
    text = str(error)
    if WORKER_TRACEBACK not in text:
        return text
    last = text.strip().splitlines()[-1]  # "data.readers.DataFormatError: <sentence>"
    return last.split(': ', 1)[1] if ': ' in last else last


def debug_requested(argv):
    """Whether the command line asks for tracebacks (``--Debug``, ``--Debug True``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if '--Debug' not in args:
        return False
    position = args.index('--Debug') + 1
    if position == len(args) or args[position].startswith('--'):
        return True
    try:
        return str2bool(args[position])
    except Exception:
        return False


KEPT = 'files written before it are kept'


def run_cli(main, argv=None, interrupted=KEPT):
    """Run ``main(argv)``; an :class:`InputError` becomes ``error: <sentence>`` on stderr and exit code 2; Ctrl-C,
    SIGTERM or SIGHUP (utils/interrupts.py) becomes ``interrupted (<signal>); <interrupted>`` and exit code
    128 + the signal number. ``interrupted`` says what is kept and how to go on."""
    try:
        with stop_on_signals():
            return main(argv)
    except InputError as error:
        report_errors_again()  # if it came while stopping
        if debug_requested(argv):
            raise
        print(f'error: {one_sentence(error)}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted) as stop:
        signum = signal_number(stop)
        print(f'interrupted ({signum.name}); {interrupted}', file=sys.stderr)
    except BaseException:  # another error, perhaps raised while stopping: its traceback must not be dropped
        report_errors_again()
        raise
    settle_after_interrupt()  # after the except block, which kept the interrupted frames alive
    return 128 + signum
