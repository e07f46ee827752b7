"""Classes of bug a mutation audit found the suite blind to (one test per class, each on an example where the
plausible wrong variant gives another answer; the comment beside each says which variant it tells apart):

* per-unit seeds and splits of every one-class family: distinct, and as documented (run r uses seed Seed + r);
* the order of files: unpadded and mixed-width names sort by value everywhere the project lists frames, videos or
  index files;
* selection and threshold helpers at their boundaries;
* flags with equal defaults (--L1Weight and --EntropyLossWeight are both 0.0002) given different values.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import script_training
from data.frame_stream import frame_image_files
from data.layout import VideoLayout, files_with_suffixes, list_video_folders, natural_key
from data.protocols import kdd_rows
from data.readers import write_index
from synthetic import make_kdd, make_mnist
from utils.eval import top_fraction_metrics
from utils.single_video import most_anomalous
from utils.training import LossSettings, compute_losses

KDD = ['--Dataset', 'KDDCUP99', '--EpochNum', '1', '--BatchSize', '64', '--MemDim', '10', '--ShrinkThres', '0.1',
       '--ModelSetting', 'FCSpar', '--UseCUDA', 'False', '--IsTbLog', 'False']
MIXED = ['10.png', '2.png', '1.png', '011.png', '9.png', '100.png']  # unpadded and mixed-width frame names
BY_VALUE = ['1.png', '2.png', '9.png', '10.png', '011.png', '100.png']


def test_each_kdd_run_has_its_own_seed_and_split_as_documented(tmp_path):
    """Run r trains and scores with seed --Seed + r (not --Seed for all): its run<r>.json says so, and its saved
    scores are those of that seed's split, which differ between runs."""
    make_kdd(tmp_path / 'data', num_rows=400)
    argv = [*KDD, '--Runs', '3', '--Seed', '5', '--DataRoot', str(tmp_path / 'data'), '--ModelRoot',
            str(tmp_path / 'm'), '--OutRoot', str(tmp_path / 'o')]
    assert script_training.main(argv) == 0
    res = next((tmp_path / 'o').glob('res_*'))
    from data.kdd import load_kdd
    labels = load_kdd(tmp_path / 'data').y
    pools = []
    for r in range(3):
        result = json.loads((res / f'run{r}.json').read_text())
        assert result['seed'] == 5 + r and result['unit'] == f'run{r}'
        saved = np.load(res / f'run{r}_scores.npz')
        rows = kdd_rows(labels, 5 + r, 'dagmm')
        assert np.array_equal(saved['labels'], labels[rows.pool])  # the documented split of seed 5 + r
        assert result['train_samples'] == len(rows.train)
        pools.append(tuple(rows.pool))
    assert len(set(pools)) == 3  # three different test sets
    weights = sorted((tmp_path / 'm').rglob('*_Run*.pt'))
    assert len(weights) == 3 and len({w.read_bytes() for w in weights}) == 3


def test_each_image_unit_has_the_seed_of_its_run(tmp_path):
    make_mnist(tmp_path / 'data', per_class_train=6, per_class_test=3)
    argv = ['--Dataset', 'MNIST', '--ModelSetting', 'Conv2DSpar', '--MemDim', '10', '--ShrinkThres', '0.1',
            '--EpochNum', '1', '--BatchSize', '16', '--UseCUDA', 'False', '--IsTbLog', 'False', '--NormalClass', '3',
            '--Runs', '2', '--Seed', '7', '--DataRoot', str(tmp_path / 'data'), '--ModelRoot', str(tmp_path / 'm'),
            '--OutRoot', str(tmp_path / 'o')]
    assert script_training.main(argv) == 0
    res = next((tmp_path / 'o').glob('res_*'))
    units = [json.loads((res / f'class3_run{r}.json').read_text()) for r in range(2)]
    assert [(u['seed'], u['normal_class']) for u in units] == [(7, 3), (8, 3)]
    scores = [np.load(res / f'class3_run{r}_scores.npz') for r in range(2)]
    # the drawn anomalies differ between the runs' seeds
    assert not np.array_equal(scores[0]['labels'], scores[1]['labels']) or \
        not np.array_equal(scores[0]['scores'], scores[1]['scores'])


def test_frame_files_sort_by_value_with_unpadded_and_mixed_width_names(tmp_path):
    """Lexicographic order would put 10.png before 2.png and 100.png before 11.png."""
    for name in MIXED:
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / name)
    assert [p.name for p in frame_image_files(tmp_path)] == BY_VALUE
    assert [p.name for p in files_with_suffixes(tmp_path, ('.png',))] == BY_VALUE
    assert sorted(['Test10', 'Test9', 'Test1'], key=natural_key) == ['Test1', 'Test9', 'Test10']


def test_video_folders_and_index_files_sort_by_value(tmp_path):
    """A prepared layout whose videos and clips carry unpadded numbers: videos and clips come in value order."""
    root = tmp_path / 'set'
    for video in ('Test10', 'Test2', 'Test1'):
        folder = root / 'testing_idx' / video
        folder.mkdir(parents=True)
        for start in (10, 2, 1):
            write_index(folder / f'{video}_i{start}.mat', video, list(range(start, start + 16)))
    (root / 'testing').mkdir()
    (root / 'testing_gt').mkdir()
    layout = VideoLayout(root)
    assert layout.videos('test') == ['Test1', 'Test2', 'Test10']
    assert [p.name for p in list_video_folders(root / 'testing_idx')] == ['Test1', 'Test2', 'Test10']
    from data.video_datasets import VideoDatasetOneDir
    (root / 'testing' / 'Test10').mkdir()
    dataset = VideoDatasetOneDir(root / 'testing_idx' / 'Test10', root / 'testing' / 'Test10', frame_num=16)
    assert [indices[0] for indices in dataset.frame_indices()] == [1, 2, 10]


def test_a_video_folder_of_unpadded_frames_is_scored_in_value_order(tmp_path):
    """--Video's rows name their files in value order: frame 2 is 2.png, not 10.png."""
    from utils.single_video import frame_sources
    for t in range(1, 12):
        Image.fromarray(np.full((4, 4), t, np.uint8)).save(tmp_path / f'{t}.png')
    column, names = frame_sources(tmp_path, 11)
    assert column == 'source_file' and names[:3] == ['1.png', '2.png', '3.png'] and names[-1] == '11.png'


def test_most_anomalous_frames_may_be_exactly_one_clip_apart():
    """The documented rule is 'at least FrameNum frames apart': two own-centre frames exactly clip_len apart are
    both picked (a strict '>' would drop the second), one frame less apart is not."""
    clip_len, frames = 4, 20
    clips_of_frames = np.clip(np.arange(frames) - clip_len // 2, 0, frames - clip_len)
    regularity = np.ones(frames)
    regularity[[6, 10, 9]] = [0.0, 0.1, 0.05]  # 10 is exactly 4 frames after 6; 9 only 3
    picks = most_anomalous(regularity, regularity, clips_of_frames, clip_len, count=3)
    assert [p.frame for p in picks][:2] == [6, 10]
    assert 9 not in [p.frame for p in picks]


def test_kdd_threshold_pool_includes_the_training_scores_under_dagmm_reimpl():
    """An example where the two pools give different thresholds: the 80th percentile of all scored records
    (training and test) is not the test records' own (which would flag a fifth of the test records)."""
    scores = np.array([0.0] * 8 + [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    labels = np.array([0] * 8 + [0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    is_test = np.arange(18) >= 8
    pooled = top_fraction_metrics(scores, labels, 0.2, is_test=is_test)
    test_only = top_fraction_metrics(scores[is_test], labels[is_test], 0.2)
    assert pooled['threshold'] == pytest.approx(np.percentile(scores, 80))
    assert pooled['threshold'] != test_only['threshold']
    # pooled: the 80th percentile of all 18 scores is 6.6, so 7-10 are flagged; test only: 8.2, so 9 and 10
    assert pooled['threshold'] == pytest.approx(6.6) and test_only['threshold'] == pytest.approx(8.2)
    assert (pooled['precision'], pooled['recall']) == (1.0, 1.0)
    assert (test_only['precision'], test_only['recall']) == (1.0, 0.5)


def test_the_l1_and_entropy_weights_are_each_their_own_flag():
    """Both default to 0.0002: given different values, AE-l1's loss uses --L1Weight and MemAE's --EntropyLossWeight
    (a swap of the two would go unseen at the defaults)."""
    from options import TrainOptions
    from models import build_model
    torch.manual_seed(0)
    batch = torch.rand(4, 118)
    for name, setting, weight_flag, term in (('AEL1', 'FC', 'L1Weight', 'l1_loss'),
                                             ('MemAE', 'FCSpar', 'EntropyLossWeight', 'entropy_loss')):
        opt = TrainOptions().parse(['--ModelName', name, '--ModelSetting', setting, '--Dataset', 'KDDCUP99',
                                    '--MemDim', '10', '--L1Weight', '0.5', '--EntropyLossWeight', '0.125'],
                                   is_print=False)
        losses = LossSettings.from_options(opt)
        assert (losses.l1_weight, losses.entropy_weight) == (0.5, 0.125)
        model = build_model(opt, 'tabular', input_dim=118)
        _, _, values = compute_losses(model, batch, losses)
        weight = getattr(opt, weight_flag)
        assert values['loss'] == pytest.approx(values['recon_loss'] + weight * values[term], rel=1e-6)
        assert values[term] > 0


def test_preparation_numbers_unpadded_source_videos_by_value(tmp_path):
    """Source video folders 1, 2, 10 (not 01, 02, 10) become Train001, Train002, Train003 in that order."""
    from data.prepare_video import prepare
    from synthetic import make_jpeg_redistribution
    src, _ = make_jpeg_redistribution(tmp_path / 'dl', num_train=3, num_test=1, num_frames=16)
    for old, new in (('03', '10'), ('02', '2'), ('01', '1')):
        (src / 'training' / 'frames' / old).rename(src / 'training' / 'frames' / new)
    summary = prepare(src, tmp_path / 'out', size=(16, 16), progress=False)
    sources = summary['video_sources']
    assert [sources[f'Train00{k}'].rsplit('/', 1)[-1] for k in (1, 2, 3)] == ['1', '2', '10']
