"""Errors that a user's input causes (a flag, a file, a folder), and how the command-line entry points show them.

They are reported as one sentence and a non-zero exit code, without a traceback: the sentence names the flag or
file at fault, which is all the user needs. Anything else is a bug and keeps its traceback.
"""
import sys


class InputError(ValueError):
    """A flag, file or folder given to us is missing, unreadable or inconsistent."""


def run_cli(main, argv=None):
    """Run ``main(argv)``; an :class:`InputError` becomes ``error: <sentence>`` on stderr and exit code 2."""
    try:
        return main(argv)
    except InputError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
