"""The difference between two image or KDDCUP99 results, paired by unit (the same split or seed on both sides).

    python -m utils.experiments.paired ./results/res_<A>/ ./results/res_<B>/ [--Metric f1]

Reads the unit results (``<unit>.json``) of both folders, pairs the units of the same name, checks that each pair
used the same seed (hence, for KDDCUP99, the same split; for images the same normal class and draw), and prints
the mean of B - A over the pairs with its sample standard deviation and t-based 95 % interval
(utils/stats.py): "B beats A" is supported only where the interval excludes 0. It prints the same paired by seed
(``b_minus_a_by_seed``: the mean difference over each seed's units, then over the seeds): for images the ten
classes of one seed are not independent draws, and the summaries' spread is over seeds too, so that is the
interval to read there; for KDDCUP99 each run is its own seed and the two agree.
"""
import argparse
import json
import math
import sys
from pathlib import Path

from utils.errors import InputError, run_cli
from utils.files import read_json
from utils.stats import mean_std


def unit_results(folder):
    """unit name -> result, for every unit result of ``folder`` (the JSON files with a unit and its metrics; the
    summary and the options are not)."""
    results = {}
    for path in sorted(Path(folder).glob('*.json')):
        result = read_json(path, 'a result file')
        if 'unit' in result and 'metrics' in result:
            problem = unit_result_problem(result)
            if problem:
                raise InputError(f'{path} is damaged: {problem}; rerun its unit (bash test.sh with the same flags)')
            results[result['unit']] = result
    if not results:
        raise InputError(f'{folder} holds no unit results (<unit>.json): give a result folder res_<setting>')
    return results


def unit_result_problem(result):
    """What a unit result lacks for pairing, in a few words naming the field, or None."""
    if not isinstance(result['unit'], str):
        return '"unit" is no name'
    if not isinstance(result.get('seed'), int) or isinstance(result.get('seed'), bool):
        return 'no whole-number "seed"'
    metrics = result['metrics']
    if not isinstance(metrics, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                and math.isfinite(v) for v in metrics.values()):
        return '"metrics" holds something other than finite numbers'
    return None


# What two results of one unit must share to pair: the data they were tested on
PAIRED_ON = ('dataset', 'protocol', 'test_samples', 'test_anomalies')


def paired_differences(a, b, metric):
    """{unit: B - A} of ``metric`` over the units both hold, which must have used the same seeds and test data."""
    shared = sorted(set(a) & set(b))
    if not shared:
        raise InputError('the two folders have no unit in common')
    for unit in shared:
        if a[unit]['seed'] != b[unit]['seed']:
            raise InputError(f'{unit} used seed {a[unit]["seed"]} in one folder and {b[unit]["seed"]} in the other: '
                             f'the units do not pair')
        for field in PAIRED_ON:
            if a[unit].get(field) != b[unit].get(field):
                raise InputError(f'{unit} was tested on other data in the two folders ({field} {a[unit].get(field)!r} '
                                 f'against {b[unit].get(field)!r}): the units do not pair')
    first, second = (metric_values({unit: results[unit] for unit in shared}, metric) for results in (a, b))
    return {unit: second[unit] - first[unit] for unit in shared}


def metric_values(results, metric):
    """{unit: its value of ``metric``} (``results``: unit name -> result); a unit without it is refused."""
    for unit, result in results.items():
        if metric not in result['metrics']:
            raise InputError(f'{unit} has no metric {metric!r}; it has {", ".join(result["metrics"])}')
    return {unit: result['metrics'][metric] for unit, result in results.items()}


def means_by_seed(values, results):
    """{seed: the mean of ``values`` (unit name -> number) over the units of that seed} (``results``: unit name ->
    result)."""
    per_seed = {}
    for unit, value in values.items():
        per_seed.setdefault(results[unit]['seed'], []).append(value)
    return {seed: sum(values) / len(values) for seed, values in sorted(per_seed.items())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('a', help='result folder A (res_<setting>)')
    parser.add_argument('b', help='result folder B')
    parser.add_argument('--Metric', default=None, help='f1, precision, recall (KDD) or auc (images; the default '
                        'for them); default: f1 where the units have it, else auc')
    args = parser.parse_args(argv)
    a, b = unit_results(args.a), unit_results(args.b)
    metric = args.Metric or ('f1' if 'f1' in next(iter(a.values()))['metrics'] else 'auc')
    differences = paired_differences(a, b, metric)
    per_seed = means_by_seed(differences, a)
    print(json.dumps({'metric': metric, 'b_minus_a': mean_std(list(differences.values())),
                      'b_minus_a_by_seed': mean_std(list(per_seed.values())), 'a': str(args.a), 'b': str(args.b),
                      'per_unit': differences, 'per_seed': per_seed}))
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
