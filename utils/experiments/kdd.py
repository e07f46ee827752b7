"""The paper's KDDCUP99 experiment (Sec. 4.3, following DAGMM).

    bash train.sh kdd            # = python script_training.py <the flags of utils/experiments/settings.py>
    bash test.sh kdd             # evaluates the 20 runs' weights

Data: the 10 % file, one-hot symbolic columns, min-max scaled numeric ones, 'normal.' records as the anomalies
(data/kdd.py; parsed once and cached). A unit is one run: a random 50/50 split of all records (seed = --Seed +
run), a fully connected MemAE (or AE) of models/mlp_ae.py trained with Adam on the attack ("normal") records of the
first half (utils/one_class.py), the reconstruction error as each record's score, and the rule of utils/eval.py:
the records scoring above the 80th percentile of the threshold pool are flagged; precision, recall and F1 of the
anomaly class over the test records. --Protocol chooses test records and pool (data/protocols.py): ``dagmm``
(default) tests on the second half and thresholds its scores; ``dagmm_reimpl`` tests on the second half's attack
records plus every anomaly record and thresholds training and test scores together. The training records are
the same under both, so the weights of one serve the other. With --EarlyStopping (``bash train.sh kdd`` sets it)
each run holds out a validation set from its own training half, trains on the rest and keeps the weights of the
epoch its validation F1 chooses (utils/one_class.py ``ValidationStop``); ``dagmm_reimpl`` then does not count the
run's validation records as test records (data/protocols.py ``kdd_rows``), so testing takes the same flag.

Outputs: under ``<OutRoot>/res_<setting>/`` one ``run<r>.json`` and ``run<r>_scores.npz`` per run,
``summary.json``, ``opt.txt``/``opt.json`` (the scores file holds every scored record and, for
``dagmm_reimpl``, ``is_test``: which of them are test records); and ``<OutRoot>/kdd_summary.json``::

    {"runs": n, "precision": {"mean", "std", "ci95", "n"}, "recall": {...}, "f1": {...}, "definitions": {...}, ...}

(std: the sample standard deviation over runs, ddof 1; ci95: the t-based 95 % interval of the mean; both null for
one run; ``definitions`` says so in the file).
"""
from functools import partial

from tqdm import tqdm

from data.kdd import load_kdd
from data.protocols import KDD_DESCRIPTIONS, kdd_rows, resolve_kdd_protocol
from models import build_model
from utils.eval import top_fraction_metrics
from utils.one_class import Unit, UnitData, UnitRunner, as_tensor, trains_in_lockstep
from utils.stats import mean_std, mean_std_definitions


def validation_f1(scores, labels, fraction):
    """--EarlyStopping: the F1 of the test rule (flag the top ``fraction``) on a run's validation set."""
    return top_fraction_metrics(scores, labels, fraction)['f1']


def run(opt, options, spec, device, train):
    """Train (if ``train``) or load, and evaluate, every run; returns the summary."""
    source = load_kdd(opt.DataRoot)
    records, labels = as_tensor(source.x), source.y  # all records as one tensor; every split indexes it
    anomaly_ratio = opt.AnomalyRatio if opt.AnomalyRatio is not None else spec.anomaly_ratio
    protocol = resolve_kdd_protocol(opt.Protocol)
    units = [Unit(f'run{r}', f'_Run{r}', opt.Seed + r) for r in range(opt.Runs)]
    runner = UnitRunner.from_options(opt, spec.family, device, train)
    runner.start(options, units)
    print(f'{opt.Dataset}: {source.source}; protocol {protocol}; {len(units)} unit(s)')

    model = partial(build_model, opt, 'tabular', input_dim=records.shape[1])
    splits = [kdd_rows(labels, unit.seed, protocol, opt.EarlyStopping, anomaly_ratio) for unit in units]
    val_metric = partial(validation_f1, fraction=anomaly_ratio)
    lockstep = train and trains_in_lockstep(opt, spec.family)
    if lockstep:
        runner.train_in_lockstep(units, model, records, [rows.train for rows in splits],
                                 [(records[rows.val], labels[rows.val]) for rows in splits] if opt.EarlyStopping
                                 else None, val_metric)
    results = []
    for unit, rows in tqdm(list(zip(units, splits)), desc='units', unit='model'):
        is_test = None if rows.is_test.all() else rows.is_test
        # the one-at-a-time path's validation samples (lockstep trained the units above, with theirs)
        one_at_a_time = train and not lockstep
        validation = (records[rows.val], labels[rows.val]) if rows.val is not None and one_at_a_time else (None, None)
        data = UnitData(records[rows.train], records[rows.pool], labels[rows.pool], KDD_DESCRIPTIONS[protocol],
                        is_test, *validation)
        metric = partial(top_fraction_metrics, fraction=anomaly_ratio, is_test=is_test)
        result, _ = runner.run(unit, model, data, metric, val_metric)
        results.append(result)

    summary = {'runs': len(results),
               **{name: mean_std([r['metrics'][name] for r in results]) for name in ('precision', 'recall', 'f1')},
               'definitions': {name: mean_std_definitions('one per run (random split)')
                               for name in ('precision', 'recall', 'f1')},
               'dataset': opt.Dataset, 'protocol': protocol, 'anomaly_ratio': anomaly_ratio, 'data': source.source}
    return runner.write_summary(summary, results, opt.OutRoot, spec.summary_name, ('F1', 'f1', ('run', '')))
