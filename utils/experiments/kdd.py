"""The paper's KDDCUP99 experiment (Sec. 4.3, following DAGMM).

    bash train.sh kdd            # = python script_training.py <the flags of utils/experiments/settings.py>
    bash test.sh kdd             # evaluates the 20 runs' weights

Data: the 10 % file, one-hot symbolic columns, min-max scaled numeric ones, 'normal.' records as the anomalies
(data/kdd.py; parsed once and cached). A unit is one run: a random 50/50 split of all records (seed = --Seed +
run), a fully connected MemAE (or AE) of models/mlp_ae.py trained with Adam on the attack ("normal") records of the
first half (utils/one_class.py), the reconstruction error of every record of the second half as its score, and
the rule of utils/eval.py: the records scoring above the 80th percentile of the test scores are flagged (20 %,
the anomalies' share); precision, recall and F1 of the anomaly class.

Outputs: under ``<OutRoot>/res_<setting>/`` one ``run<r>.json`` and ``run<r>_scores.npz`` per run,
``summary.json``, ``opt.txt``/``opt.json``; and ``<OutRoot>/kdd_summary.json``::

    {"runs": n, "precision": {"mean", "std"}, "recall": {...}, "f1": {...}, ...}
"""
from functools import partial

from tqdm import tqdm

from data.kdd import load_kdd
from data.protocols import KDD_DESCRIPTION, kdd_indices
from models import build_model
from utils.eval import top_fraction_metrics
from utils.one_class import Unit, UnitData, UnitRunner, as_tensor, mean_std


def run(opt, options, spec, device, train):
    """Train (if ``train``) or load, and evaluate, every run; returns the summary."""
    source = load_kdd(opt.DataRoot)
    records, labels = as_tensor(source.x), source.y  # all records as one tensor; every split indexes it
    anomaly_ratio = opt.AnomalyRatio if opt.AnomalyRatio is not None else spec.anomaly_ratio
    units = [Unit(f'run{r}', f'_Run{r}', opt.Seed + r) for r in range(opt.Runs)]
    runner = UnitRunner.from_options(opt, spec.family, device, train)
    runner.start(options, units)
    print(f'{opt.Dataset}: {source.source}; protocol dagmm; {len(units)} unit(s)')

    results = []
    for unit in tqdm(units, desc='units', unit='model'):
        train_rows, test_rows = kdd_indices(labels, unit.seed)
        data = UnitData(records[train_rows], records[test_rows], labels[test_rows], KDD_DESCRIPTION)
        model = partial(build_model, opt, 'tabular', input_dim=records.shape[1])
        result, _ = runner.run(unit, model, data, partial(top_fraction_metrics, fraction=anomaly_ratio))
        results.append(result)

    summary = {'runs': len(results),
               **{name: mean_std([r['metrics'][name] for r in results]) for name in ('precision', 'recall', 'f1')},
               'dataset': opt.Dataset, 'protocol': 'dagmm', 'anomaly_ratio': anomaly_ratio, 'data': source.source}
    return runner.write_summary(summary, results, opt.OutRoot, spec.summary_name)
