"""Parsers of flag values that both the options and the error reporting need.

This is a ground-floor module: it imports nothing of ours, so that ``utils.errors`` (imported by almost every
module) can read ``--Debug`` without importing ``options``, which imports the models and data packages.
"""
import argparse

TRUE_WORDS = ('yes', 'true', 't', 'y', '1')
FALSE_WORDS = ('no', 'false', 'f', 'n', '0')
BOOL_METAVAR = '{true,false}'
BOOL_HELP = (f'Boolean flags {BOOL_METAVAR} accept {"/".join(TRUE_WORDS)} and {"/".join(FALSE_WORDS)}, in any '
             'case.')


def str2bool(value):
    """The released boolean parser: yes/true/t/y/1 and no/false/f/n/0, in any case."""
    if isinstance(value, bool):
        return value
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f'boolean value expected ({"/".join(TRUE_WORDS)} or {"/".join(FALSE_WORDS)}), '
                                     f'got {value!r}')


def bool_or_auto(value):
    """A boolean flag (:func:`str2bool`) that may also be left to the program: 'auto'."""
    return 'auto' if isinstance(value, str) and value.lower() == 'auto' else str2bool(value)


def optional_path(value):
    """A path flag whose default is None. The released test script passes ``--ModelFilePath None``, which it
    then took for a file literally called 'None'; here 'None' and '' mean "no path"."""
    return None if value in ('None', 'none', '') else value
