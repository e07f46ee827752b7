"""KDDCUP99 (10 % file) prepared as DAGMM prepared it, which the MemAE paper follows.

* Read ``<DataRoot>/KDDCUP99/kddcup.data_10_percent`` (also ``.gz`` and the ``_corrected`` name; the folder may
  be called ``kddcup99``): 494,021 records of 41 features and a label.
* One-hot encode the symbolic columns protocol_type, service and flag (categories as found in the file, sorted);
  min-max scale the 38 numeric columns to [0, 1] over the whole file (a constant column becomes 0).
* Labels: the ``normal.`` records (about 20 %) are the *anomalies* (label 1) and every attack record is
  "normal" (label 0), because the attacks are the majority.
"""
import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.readers import DataFormatError

KDD_FOLDERS = ('KDDCUP99', 'kddcup99')
KDD_FILES = ('kddcup.data_10_percent', 'kddcup.data_10_percent.gz', 'kddcup.data_10_percent_corrected',
             'kddcup.data_10_percent_corrected.gz')
SYMBOLIC_COLUMNS = (1, 2, 3)  # protocol_type, service, flag
NUM_FIELDS = 42
ANOMALY_LABEL = 'normal.'


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


def read_kdd_rows(path):
    """The records of a KDD file as lists of strings (42 fields each)."""
    opener = gzip.open if Path(path).suffix == '.gz' else open
    try:
        with opener(path, 'rb') as raw:
            rows = list(csv.reader(io.TextIOWrapper(raw, encoding='ascii')))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as error:
        raise DataFormatError(f'{path} is not a readable KDDCUP99 CSV file ({error})') from None
    rows = [row for row in rows if row]
    bad = next((i for i, row in enumerate(rows) if len(row) != NUM_FIELDS), None)
    if bad is not None or not rows:
        raise DataFormatError(f'{path}: record {bad + 1 if bad is not None else 1} does not have {NUM_FIELDS} '
                              f'comma-separated fields')
    return rows


def encode_kdd(rows, source=''):
    """One-hot symbolic columns, min-max scaled numeric columns, anomaly labels."""
    columns = list(zip(*rows))
    labels = np.array([value == ANOMALY_LABEL for value in columns[-1]], dtype=np.int64)
    blocks, names = [], []
    for i, column in enumerate(columns[:-1]):
        if i in SYMBOLIC_COLUMNS:
            categories = sorted(set(column))
            index = {c: k for k, c in enumerate(categories)}
            one_hot = np.zeros((len(column), len(categories)), dtype=np.float32)
            one_hot[np.arange(len(column)), [index[v] for v in column]] = 1
            blocks.append(one_hot)
            names += [f'c{i}={c}' for c in categories]
        else:
            try:
                values = np.array(column, dtype=np.float64)
            except ValueError:
                raise DataFormatError(f'{source}: column {i + 1} should be numeric') from None
            span = values.max() - values.min()
            scaled = (values - values.min()) / span if span > 0 else np.zeros_like(values)
            blocks.append(scaled.astype(np.float32)[:, None])
            names.append(f'c{i}')
    return KDDData(np.concatenate(blocks, axis=1), labels, names, str(source))


def load_kdd(data_root):
    path = find_kdd_file(data_root)
    return encode_kdd(read_kdd_rows(path), path)
