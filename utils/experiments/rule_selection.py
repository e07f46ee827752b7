"""Choose the causal decision rule on held-out *training* videos, never on test data (docs/DEPLOYMENT.md,
*Decision rules*).

    python -m utils.experiments.rule_selection <script_testing.py's model flags> --HoldOutVideos N

The held-out videos are normal footage that the model did not train on. Each in turn is left out: the others
calibrate (utils/calibration.py), and on it every rule of utils/decision_rules.py, with each number of baseline
clips in ``WINDOWS``, decides at each false-alarm rate in ``RATES``: on its errors as they are, and with every error
multiplied by each factor in ``LEVEL_FACTORS``. The held-out videos share the calibration's camera and encoding, so
the level changes that break a fixed threshold elsewhere are simulated: on UCSD Ped2 the normal test clips' median
errors lie up to 1.6 times above the held-out training videos', and the demo's test video encoded as an MP4 1.5
times above the same frames as images. Pooled over the left-out videos: the realised false-alarm rate of each
(rule, window, rate, factor), with a 95 % interval from resampling the videos.

The choice, fixed before this program first ran: a candidate's score is its *worst* ratio between realised and
requested rate, whichever is larger (a realised rate of 0 counts as half a clip), over the rates and factors; the
smallest score wins, and among candidates within ``TIE`` of it the simplest (global, then warmup, then running),
then the one with the most baseline clips (the steadier level).

Outputs in ``<OutRoot>/rule_selection_<setting>/``: ``rule_selection.json`` (every row, each candidate's score, the
choice), ``rule_selection.csv`` (the rows) and ``held_out_errors.npz`` (each held-out video's clip errors).
"""
import sys
from pathlib import Path

from models import is_memory_model
from options import TestOptions
from utils.calibration import Calibration, video_bootstrap_interval
from utils.checkpoint import load_model
from utils.decision_rules import BASELINE_RULES, RULES, rule_statistics
from utils.errors import InputError, run_cli
from utils.files import save_npz, write_csv, write_json
from utils.runtime import select_device, set_precision
from utils.scoring import held_out_clip_errors, resolve_score_type

WINDOWS = (10, 30, 60)
RATES = (0.01, 0.05)
LEVEL_FACTORS = (1 / 1.5, 1.0, 1.5)
TIE = 1.10  # candidates whose score is within 10 % of the best count as equally good


def candidates():
    """(rule, baseline clips) pairs; ``global`` has no baseline."""
    return [('global', None)] + [(rule, window) for rule in BASELINE_RULES for window in WINDOWS]


def left_out_counts(errors, rule, window, rate, factor, calibrations):
    """Per held-out video: (normal clips flagged, clips) when the other videos calibrate and its errors are
    multiplied by ``factor``. ``calibrations[(video, window)]`` caches the fold's calibration."""
    counts = []
    for name, video in errors.items():
        key = (name, window)
        if key not in calibrations:
            others = [other for other_name, other in errors.items() if other_name != name]
            calibrations[key] = Calibration.from_errors(others, f'all held-out videos but {name}', {}, '',
                                                        baseline_clips=window or WINDOWS[0])
        threshold = calibrations[key].threshold(rate, rule)
        _, flagged = rule_statistics(rule, window, factor * video, threshold)
        counts.append((int(flagged.sum()), len(flagged)))
    return counts


def selection_rows(errors):
    """One row per (rule, window, rate, factor): the realised rate pooled over the left-out videos."""
    rows, calibrations = [], {}
    for rule, window in candidates():
        for rate in RATES:
            for factor in LEVEL_FACTORS:
                counts = left_out_counts(errors, rule, window, rate, factor, calibrations)
                flagged, clips = (sum(column) for column in zip(*counts))
                rows.append({'rule': rule, 'baseline_clips': window, 'requested': rate, 'level_factor': factor,
                             'flagged': flagged, 'clips': clips, 'realised': flagged / clips,
                             'interval_95': video_bootstrap_interval(*zip(*counts))})
    return rows


def worst_ratio(rows):
    """The candidate's score: its largest ratio between realised and requested rate, either way round."""
    ratios = []
    for row in rows:
        realised = max(row['realised'], 0.5 / row['clips'])
        ratios.append(max(realised / row['requested'], row['requested'] / realised))
    return max(ratios)


def chosen_candidate(scores):
    """The choice of the module docstring among ``{(rule, window): score}``."""
    best = min(scores.values())
    near = [candidate for candidate, score in scores.items() if score <= best * TIE]
    return min(near, key=lambda c: (RULES.index(c[0]), -(c[1] or 0)))


def main(argv=None):
    options = TestOptions()
    opt = options.parse(argv)
    if opt.HoldOutVideos < 2:
        raise InputError('the rule is chosen on the training videos held out of training, each left out while the '
                         'others calibrate: give --HoldOutVideos N (at least 2), the N the model was trained with')
    device = select_device(opt.UseCUDA)
    set_precision(opt.AMP)
    model, weights = load_model(opt, device)
    score = resolve_score_type(opt.ScoreType, opt.ModelName)
    errors = held_out_clip_errors(opt, model, device, is_memory_model(opt.ModelName), score)
    folder = Path(opt.OutRoot) / f'rule_selection_{opt.setting}'
    options.save(opt, folder)
    save_npz(folder / 'held_out_errors.npz', **errors)
    rows = selection_rows(errors)
    scores = {candidate: worst_ratio([row for row in rows if (row['rule'], row['baseline_clips']) == candidate])
              for candidate in candidates()}
    rule, window = chosen_candidate(scores)
    write_csv(folder / 'rule_selection.csv', list(rows[0]), [list(row.values()) for row in rows])
    write_json(folder / 'rule_selection.json', {
        'weights': str(weights), 'held_out_videos': {name: len(video) for name, video in errors.items()},
        'windows': WINDOWS, 'rates': RATES, 'level_factors': LEVEL_FACTORS, 'rows': rows,
        'worst_ratio': [{'rule': r, 'baseline_clips': w, 'score': s} for (r, w), s in scores.items()],
        'chosen': {'rule': rule, 'baseline_clips': window}}, sort_keys=True)
    print('rule      clips  rate   factor  realised  (95 % over videos)')
    for row in rows:
        low, high = row['interval_95']
        print(f"{row['rule']:<9} {row['baseline_clips'] or '-':>5}  {row['requested']:<5}  {row['level_factor']:6.3f}  "
              f"{row['realised']:.4f}    [{low:.4f}, {high:.4f}]")
    for (r, w), s in sorted(scores.items(), key=lambda item: item[1]):
        print(f'{r} {w or "-"}: worst ratio {s:.2f}')
    print(f'chosen: --DecisionRule {rule}' + (f' --BaselineClips {window}' if window else '') + f' -> {folder}')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
