"""Writing output files: whole or not at all, and a failure told in one sentence.

Every file the project writes goes through :func:`replace_atomically`: it is written to a temporary file beside
its final path (``.<name>.<pid>.tmp``) and renamed over it when complete, so that a reader, a crash, a full disk
or Ctrl-C never sees half a file, and the previous version stays intact until the new one is whole. An
``OSError`` while writing (no space left, a read-only folder, a path too long, ...) becomes an
:class:`~utils.errors.OutputError` whose sentence names the file and the cause; the temporary file is removed
in every case, an interrupt included.

:func:`read_json` reads such a JSON file back (a result, a record of a finished step), telling a damaged or
unreadable one in one sentence.
"""
import csv
import fcntl
import io
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import scipy.io as sio
import torch
from PIL import Image

from utils.errors import InputError, OutputError


def cause_of(error):
    """The OS's words for an ``OSError`` ('No space left on device'), else its type."""
    return error.strerror or str(error) or type(error).__name__


def make_folder(path):
    """``path`` (and its parents) as a folder; a failure is one sentence naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f'cannot create the folder {path}: {cause_of(error)}') from None
    return path


@contextmanager
def writing(path):
    """Inside it, an ``OSError`` becomes one sentence naming ``path``."""
    try:
        yield
    except OSError as error:
        raise OutputError(f'cannot write {path}: {cause_of(error)}') from None


def replace_atomically(path, write):
    """Call ``write(file)`` with a binary file open on a temporary file beside ``path``, then rename it over
    ``path``; see the module docstring."""
    path = Path(path)
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    with writing(path):
        try:
            with open(temporary, 'wb') as file:
                write(file)
            os.replace(temporary, path)
        except BaseException as error:
            _remove(temporary)
            stop = interrupt_behind(error)
            if stop is not None:
                raise stop from None
            raise


def interrupt_behind(error):
    """The interrupt (Ctrl-C, a signal: a ``BaseException`` that is no ``Exception``) that ``error``, an
    ``Exception``, was raised while handling, or None. A writer's clean-up can fail because the interrupt cut its
    write short (``torch.save``'s zip writer: 'unexpected pos 64 vs 0'); the interrupt, not that failure, is what
    the command must report and exit with."""
    if not isinstance(error, Exception):
        return None
    context = error.__context__
    while context is not None and isinstance(context, Exception):
        context = context.__context__
    return context


def _remove(temporary):
    try:
        temporary.unlink(missing_ok=True)
    except OSError:
        pass  # the folder refuses even that: nothing of ours is left in it to remove


JSON_LIMIT_BYTES = 256 * 2 ** 20  # the largest JSON this project writes (a --Stream's results) is far smaller


def read_json(path, what):
    """The JSON object (a dict) in ``path``, which holds ``what`` ('the result of a finished unit'); a file larger
    than any this project writes, or nested deeper than Python's parser can follow, counts as damaged."""
    try:
        if Path(path).stat().st_size > JSON_LIMIT_BYTES:
            raise ValueError
        value = json.loads(Path(path).read_text())
    except OSError as error:
        raise InputError(f'cannot read {path} ({what}): {cause_of(error)}') from None
    except (ValueError, RecursionError):  # UnicodeDecodeError included
        value = None
    if not isinstance(value, dict):
        raise InputError(f'{path} ({what}) is damaged: not a JSON object; delete it and run again')
    return value


def csv_line(values):
    """One CSV row (no line end) as the csv module quotes it: a field holding a comma, quote or line break (a frame
    file called ``001,cam 1.jpg``) stays one field."""
    line = io.StringIO()
    csv.writer(line, lineterminator='').writerow(values)
    return line.getvalue()


def write_csv(path, header, rows):
    """A CSV file of ``header`` and ``rows`` (sequences of values), whole or not at all."""
    write_text(path, ''.join(csv_line(row) + '\n' for row in [header, *rows]))


@contextmanager
def only_writer(folder, what):
    """Held while this process writes ``folder`` (an advisory lock on ``<folder>/.writing.lock``): a second
    process that would write the same folder at once is refused with one sentence instead of interleaving its
    rows into the same files."""
    lock = Path(folder) / '.writing.lock'
    with writing(lock):
        handle = lock.open('a')
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(f'another process is writing {folder} ({what}); give this one its own --OutRoot') \
                from None
        yield
    finally:
        handle.close()


def write_text(path, text):
    replace_atomically(path, lambda file: file.write(text.encode()))


def write_json(path, value, **dumps):
    """``value`` as indented JSON and a final newline (``dumps``: more arguments of ``json.dumps``)."""
    write_text(path, json.dumps(value, indent=2, **dumps) + '\n')


def save_torch(value, path):
    replace_atomically(path, lambda file: torch.save(value, file))


def save_npy(path, array):
    replace_atomically(path, lambda file: np.save(file, array))


def save_npz(path, **arrays):
    replace_atomically(path, lambda file: np.savez(file, **arrays))


def save_mat(path, variables):
    """A MATLAB v5 .mat file (what ``scipy.io.savemat`` writes)."""
    replace_atomically(path, lambda file: sio.savemat(file, variables))


def write_figure(figure, path, **savefig):
    """A matplotlib figure, in the format its file name's suffix says."""
    path = Path(path)
    replace_atomically(path, lambda file: figure.savefig(file, format=path.suffix[1:], **savefig))


def save_image(image, path, **save):
    """A PIL image, in the format its file name's suffix says (``save``: the format's options)."""
    path = Path(path)
    kind = Image.registered_extensions()[path.suffix.lower()]
    replace_atomically(path, lambda file: image.save(file, format=kind, **save))


class AppendedLines:
    """A text file that grows by whole lines as a run goes (``train_log.csv``): it starts as ``first_lines``
    (written atomically), and a failed append is one sentence naming the file."""

    def __init__(self, path, first_lines):
        self.path = Path(path)
        write_text(self.path, ''.join(line + '\n' for line in first_lines))
        with writing(self.path):
            self.file = self.path.open('a')

    def write_line(self, line):
        with writing(self.path):
            self.file.write(line + '\n')

    def flush(self):
        with writing(self.path):
            self.file.flush()

    def close(self):
        with writing(self.path):  # the last lines are flushed here
            self.file.close()
