"""KDDCUP99 (10 % file) prepared as DAGMM prepared it, which the MemAE paper follows.

* Read ``<DataRoot>/KDDCUP99/kddcup.data_10_percent`` (also ``.gz`` and the ``_corrected`` name; the folder may
  be called ``kddcup99``): 494,021 records of 41 features and a label.
* One-hot encode the symbolic columns protocol_type, service and flag (categories as found in the file, sorted);
  min-max scale the 38 numeric columns to [0, 1] over the whole file (a constant column becomes 0).
* Labels: the ``normal.`` records (about 20 %) are the *anomalies* (label 1) and every attack record is
  "normal" (label 0), because the attacks are the majority.

The file is parsed column-wise by NumPy (a few seconds for the 10 % file) and the result cached as
``kdd-<sha256 of the file>.npz`` in ``$MEMAE_CACHE`` (default ``~/.cache/memae/``): a later run, of any script,
reads the cache in well under a second. Deleting the folder is always safe; a changed file has another hash.
"""
import gzip
import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.readers import DataFormatError
from utils.errors import OutputError
from utils.files import make_folder, save_npz

KDD_FOLDERS = ('KDDCUP99', 'kddcup99')
KDD_FILES = ('kddcup.data_10_percent', 'kddcup.data_10_percent.gz', 'kddcup.data_10_percent_corrected',
             'kddcup.data_10_percent_corrected.gz')
SYMBOLIC_COLUMNS = (1, 2, 3)  # protocol_type, service, flag
NUM_FIELDS = 42
ANOMALY_LABEL = 'normal.'
NUMERIC_COLUMNS = tuple(i for i in range(NUM_FIELDS - 1) if i not in SYMBOLIC_COLUMNS)
CACHE_VERSION = 1  # bump when the encoding changes: older cache files are then ignored


@dataclass
class KDDData:
    x: np.ndarray          # N x d float32 features
    y: np.ndarray          # N int64, 1 = anomaly (a 'normal.' record)
    feature_names: list
    source: str


def find_kdd_file(data_root):
    root = Path(data_root)
    for folder in KDD_FOLDERS:
        for name in KDD_FILES:
            if (root / folder / name).is_file():
                return root / folder / name
    raise DataFormatError(f"the KDDCUP99 10 % file ({' or '.join(KDD_FILES[:2])}) is in none of "
                          f"{', '.join(str(root / f) for f in KDD_FOLDERS)}")


def read_kdd_lines(path):
    """The non-empty lines of a KDD file (plain or gzip-compressed)."""
    opener = gzip.open if Path(path).suffix == '.gz' else open
    try:
        with opener(path, 'rb') as raw:
            text = raw.read().decode('ascii')
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataFormatError(f'{path} is not a readable KDDCUP99 CSV file ({error})') from None
    lines = [line for line in text.splitlines() if line]
    if not lines:
        raise DataFormatError(f'{path}: record 1 does not have {NUM_FIELDS} comma-separated fields')
    return lines


def split_columns(lines, source):
    """(numeric columns N x 38 float64, symbolic columns and label N x 4 str), checking every record's width."""
    widths = np.fromiter((line.count(',') for line in lines), dtype=np.int64, count=len(lines))
    bad = np.flatnonzero(widths != NUM_FIELDS - 1)
    if len(bad):
        raise DataFormatError(f'{source}: record {bad[0] + 1} does not have {NUM_FIELDS} comma-separated fields')
    try:
        numeric = np.loadtxt(lines, delimiter=',', usecols=NUMERIC_COLUMNS, dtype=np.float64)
    except ValueError as error:
        raise DataFormatError(f'{source}: a numeric column holds text ({error})') from None
    symbolic = np.loadtxt(lines, delimiter=',', usecols=(*SYMBOLIC_COLUMNS, NUM_FIELDS - 1), dtype=str)
    return numeric.reshape(len(lines), -1), symbolic.reshape(len(lines), -1)


def min_max(numeric):
    """Every column scaled to [0, 1] over all records; a constant column becomes 0."""
    low, span = numeric.min(axis=0), numeric.max(axis=0) - numeric.min(axis=0)
    return ((numeric - low) / np.where(span > 0, span, 1)).astype(np.float32)


def encode_columns(numeric, symbolic):
    """The compact encoding that is cached: scaled numeric columns, per symbolic column its sorted categories and
    every record's category index, and the labels."""
    encoded = {'numeric': min_max(numeric), 'labels': (symbolic[:, -1] == ANOMALY_LABEL).astype(np.int64)}
    for k in range(len(SYMBOLIC_COLUMNS)):
        categories, codes = np.unique(symbolic[:, k], return_inverse=True)
        encoded[f'categories{k}'], encoded[f'codes{k}'] = categories, codes.astype(np.int64)
    return encoded


def assemble(encoded, source):
    """Features in the file's column order: each symbolic column replaced by its one-hot block."""
    blocks, names, numeric_at = [], [], 0
    for i in range(NUM_FIELDS - 1):
        if i in SYMBOLIC_COLUMNS:
            k = SYMBOLIC_COLUMNS.index(i)
            categories, codes = encoded[f'categories{k}'], encoded[f'codes{k}']
            blocks.append(np.eye(len(categories), dtype=np.float32)[codes])
            names += [f'c{i}={c}' for c in categories]
        else:
            blocks.append(encoded['numeric'][:, numeric_at:numeric_at + 1])
            names.append(f'c{i}')
            numeric_at += 1
    return KDDData(np.concatenate(blocks, axis=1), encoded['labels'], names, str(source))


def cache_folder():
    return Path(os.environ.get('MEMAE_CACHE') or Path.home() / '.cache' / 'memae')


def cache_file(path):
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:32]
    return cache_folder() / f'kdd-v{CACHE_VERSION}-{digest}.npz'


CACHED_KEYS = ('numeric', 'labels', *(f'{kind}{k}' for k in range(len(SYMBOLIC_COLUMNS))
                                     for kind in ('categories', 'codes')))


def read_cache(cached):
    """The cached encoding, or None when the file is unreadable (truncated by a full disk, say) or incomplete:
    the file is then parsed again and the cache rewritten."""
    try:
        with np.load(cached, allow_pickle=False) as stored:
            return {key: stored[key] for key in CACHED_KEYS}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None


def write_cache(cached, encoded):
    """Write the cache atomically; a folder that cannot be written only costs the next run the parse."""
    try:
        save_npz(make_folder(cached.parent) / cached.name, **encoded)
    except OutputError:
        pass


def encode_kdd_file(path):
    """The compact encoding of a KDD file, from the cache when it holds this file's."""
    cached = cache_file(path)
    encoded = read_cache(cached) if cached.is_file() else None
    if encoded is None:
        encoded = encode_columns(*split_columns(read_kdd_lines(path), path))
        write_cache(cached, encoded)
    return encoded


def load_kdd(data_root):
    path = find_kdd_file(data_root)
    return assemble(encode_kdd_file(path), path)


def kdd_record_labels(data_root):
    """Every record's label as the file writes it (``normal.``, ``smurf.``, ``neptune.``, ...), in file order."""
    return np.array([line.rsplit(',', 1)[1] for line in read_kdd_lines(find_kdd_file(data_root))])
