"""The choice of the decision rule on held-out training videos (utils/experiments/rule_selection.py): its rows
against a direct computation, its score, its tie rule, and the program's files, on synthetic clip errors."""
import json

import numpy as np
import pytest

from utils.calibration import Calibration
from utils.decision_rules import rule_statistics
from utils.errors import InputError
from utils.experiments import rule_selection


def held_out(levels, clips=150, seed=0):
    rng = np.random.default_rng(seed)
    return {f'Train{k:03d}': level * rng.lognormal(0.0, 0.1, clips) for k, level in enumerate(levels, 1)}


def test_a_row_is_the_left_out_videos_flags_pooled():
    errors = held_out([1.0, 1.1, 0.9])
    rows = rule_selection.selection_rows(errors)
    row = next(r for r in rows if (r['rule'], r['baseline_clips'], r['requested'], r['level_factor']) ==
               ('running', 30, 0.05, 1.5))
    flagged = 0
    for name, video in errors.items():
        others = [v for n, v in errors.items() if n != name]
        threshold = Calibration.from_errors(others, 'x', {}, '', baseline_clips=30).threshold(0.05, 'running')
        flagged += rule_statistics('running', 30, 1.5 * video, threshold)[1].sum()
    assert (row['flagged'], row['clips']) == (flagged, 450) and row['realised'] == flagged / 450
    assert len(rows) == 7 * 2 * 3  # global and 2 rules x 3 windows; 2 rates; 3 factors


def test_a_rate_is_scored_by_its_worst_ratio_either_way_and_a_zero_counts_as_half_a_clip():
    rows = [{'realised': 0.02, 'requested': 0.01, 'clips': 100}, {'realised': 0.0, 'requested': 0.05, 'clips': 100}]
    assert rule_selection.worst_ratio(rows) == pytest.approx(0.05 / 0.005)
    assert rule_selection.worst_ratio(rows[:1]) == pytest.approx(2.0)


def test_within_the_tie_the_simplest_rule_and_then_the_longest_baseline_win():
    scores = {('global', None): 1.5, ('warmup', 10): 1.05, ('warmup', 60): 1.1, ('running', 30): 1.0}
    assert rule_selection.chosen_candidate(scores) == ('warmup', 60)
    assert rule_selection.chosen_candidate({**scores, ('global', None): 1.09}) == ('global', None)
    assert rule_selection.chosen_candidate({**scores, ('warmup', 60): 1.2, ('warmup', 10): 1.2}) == ('running', 30)


def test_the_program_writes_its_rows_and_chooses_a_baseline_rule_when_levels_differ(tmp_path, monkeypatch, capsys):
    """Held-out videos whose normal levels differ by a third: the global threshold misses its rate on some
    left-out video; a rule relative to the stream's level keeps it."""
    errors = held_out([1.0, 1.3, 0.8, 1.1], clips=200)
    monkeypatch.setattr(rule_selection, 'load_model', lambda opt, device: (None, tmp_path / 'w.pt'))
    monkeypatch.setattr(rule_selection, 'held_out_clip_errors', lambda *args: errors)
    assert rule_selection.main(['--HoldOutVideos', '4', '--OutRoot', str(tmp_path), '--UseCUDA', 'False',
                                '--PrintOptions', 'False']) == 0
    folder = next(tmp_path.glob('rule_selection_*'))
    stored = json.loads((folder / 'rule_selection.json').read_text())
    assert stored['chosen']['rule'] in ('warmup', 'running')
    scores = {(s['rule'], s['baseline_clips']): s['score'] for s in stored['worst_ratio']}
    assert scores[('global', None)] > 2 * min(scores.values())
    assert len((folder / 'rule_selection.csv').read_text().splitlines()) == 1 + len(stored['rows'])
    assert set(np.load(folder / 'held_out_errors.npz').files) == set(errors)
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"chosen: --DecisionRule {stored['chosen']['rule']}")


def test_fewer_than_two_held_out_videos_cannot_leave_one_out(tmp_path):
    with pytest.raises(InputError, match=r'give --HoldOutVideos N \(at least 2\)'):
        rule_selection.main(['--HoldOutVideos', '1', '--OutRoot', str(tmp_path), '--UseCUDA', 'False',
                             '--PrintOptions', 'False'])
