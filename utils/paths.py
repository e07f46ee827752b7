"""Checks of the folder flags (--DataRoot, --OutRoot, --ModelRoot) before a run reads or writes anything, so that a
file given for a folder, or a folder that cannot be written, is one sentence naming the flag instead of an OS
error deep in a run."""
import tempfile
from pathlib import Path

from utils.errors import InputError


def input_folder(path, flag):
    """``path`` as a Path; an error if it names a file (a missing folder is left to the readers, which say what
    they looked for, or to --Download, which creates it)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f'{flag} {path} is a file, not a folder')
    return path


def output_folder(path, flag):
    """``path`` as a Path, after checking that it can be written: a file can be created in it or, if it does not
    exist yet, a folder in its nearest existing parent. Nothing is left behind (a run that fails later on its input
    has written nothing)."""
    path = input_folder(path, flag)
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(0, f'{existing} is a file')
        probe = tempfile.TemporaryFile if existing == path else tempfile.TemporaryDirectory
        with probe(dir=existing):
            pass
    except OSError as error:
        raise InputError(f'{flag} {path} cannot be written ({error.strerror or type(error).__name__})') from None
    return path
