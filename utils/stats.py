"""Summary statistics of repeated runs, as the reproduction reports them (docs/REPRODUCTION.md).

Every mean over runs (seeds, or KDDCUP99's random splits) carries the *sample* standard deviation (ddof 1) and a
t-based 95 % confidence interval of the mean; with a single value both are undefined and written as None (null in
JSON), never as 0.
"""
import numpy as np
from scipy import stats

# What the fields of :func:`mean_std` mean, written into the summary files beside them
MEAN_STD_DEFINITIONS = {
    'mean': 'mean over the n values',
    'std': 'sample standard deviation of the n values (ddof 1); null for n = 1',
    'ci95': 't-based 95 % confidence interval of the mean, [low, high]; null for n = 1',
    'n': 'how many values',
}


def sample_std(values):
    """The sample standard deviation (ddof 1) of ``values``, or None for fewer than two."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1)) if len(values) > 1 else None


def mean_std(values):
    """``{'mean', 'std', 'ci95', 'n'}`` of ``values`` (see :data:`MEAN_STD_DEFINITIONS`)."""
    values = np.asarray(values, dtype=np.float64)
    mean, std = float(values.mean()), sample_std(values)
    if std is None:
        return {'mean': mean, 'std': None, 'ci95': None, 'n': len(values)}
    half_width = float(stats.t.ppf(0.975, len(values) - 1)) * std / np.sqrt(len(values))
    return {'mean': mean, 'std': std, 'ci95': [mean - half_width, mean + half_width], 'n': len(values)}


def mean_std_definitions(values):
    """:data:`MEAN_STD_DEFINITIONS` saying what ``values`` are (e.g. 'one per run (random split)'), for the
    ``definitions`` entry beside a :func:`mean_std` in a summary file."""
    return {field: f'{meaning}; the values: {values}' for field, meaning in MEAN_STD_DEFINITIONS.items()}
