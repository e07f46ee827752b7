"""The first run: synthetic videos (data/synthetic.py), `bash test.sh` falling back to the demo, and the figures."""
import json
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image

import script_testing
from data.layout import VideoLayout
from data.readers import read_ground_truth
from data.synthetic import background, make_synthetic, render_video
from models import MemModule
from shell import run_script
from utils.errors import InputError
from utils.experiments.settings import experiment
from utils.eval import VideoResult
from utils.memory_usage import SlotUsage
from utils.plots import most_anomalous_clips, shaded_spans


@pytest.fixture(scope='module')
def tiny_demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    make_synthetic(root / 'SyntheticDemo', size=32, train_videos=2, test_videos=3, num_frames=24, progress=False)
    return root


def test_synthetic_set_has_the_prepared_layout_and_labels_from_the_anomalous_object(tiny_demo_root):
    layout = VideoLayout(tiny_demo_root / 'SyntheticDemo')
    assert layout.videos('train') == ['Train001', 'Train002']
    assert layout.videos('test') == ['Test001', 'Test002', 'Test003']
    summary = json.loads((tiny_demo_root / 'SyntheticDemo' / 'prepare.json').read_text())
    assert summary['anomaly_kinds'] == ['cart', 'runner', 'trespasser']
    # the videos were rendered in a temporary folder, since deleted: prepare.json names no path into it
    assert summary['video_sources'] == {'Train001': 'synthetic (pedestrians only)',
                                        'Train002': 'synthetic (pedestrians only)', 'Test001': 'synthetic (cart)',
                                        'Test002': 'synthetic (runner)', 'Test003': 'synthetic (trespasser)'}
    assert tempfile.gettempdir() not in json.dumps(summary)
    assert summary['training'] == {'videos': 2, 'frames': 48, 'clips': 2 * 9}
    for name in layout.videos('test'):
        labels = read_ground_truth(layout.gt_file(name))
        assert len(labels) == 24 and 0 < labels.sum() < 24  # every test video has normal and anomalous frames
        # the anomalous object's pixel masks are kept, and mark exactly the anomalous frames
        masks = [np.asarray(Image.open(layout.mask_dir(name) / f'{t:03d}.png')) for t in range(1, 25)]
        assert [int(m.any()) for m in masks] == labels.tolist()
    frame = np.asarray(Image.open(layout.frames_dir('test') / 'Test001' / '001.jpg'))
    assert frame.shape == (32, 32)


def test_anomalous_frames_are_those_that_show_the_anomalous_object():
    rng = np.random.default_rng(3)
    scene = background(32, rng)
    frames, masks = render_video(32, 40, rng, scene, 'cart', anomaly_start=10)
    assert frames.shape == (40, 32, 32) and frames.dtype == np.uint8
    assert not masks[:10].any() and masks[10:14].any(axis=(1, 2)).all()
    _, normal_masks = render_video(32, 40, rng, scene)
    assert not normal_masks.any()


def test_synthetic_size_must_fit_the_video_autoencoder(tmp_path):
    with pytest.raises(InputError, match='--size 40 is no multiple of 16'):
        make_synthetic(tmp_path / 'x', size=40)


@pytest.fixture(scope='module')
def demo_run(tiny_demo_root, tmp_path_factory):
    """Plain `bash test.sh` on the tiny demo data: the run and its OUT_ROOT (which holds the demo's weights)."""
    out = tmp_path_factory.mktemp('demo_run') / 'out'
    return run_script('bash', 'test.sh', DATA_ROOT=tiny_demo_root, OUT_ROOT=out), out


def test_plain_test_sh_without_ped2_runs_the_demo_with_figures(demo_run):
    done, out = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'No prepared UCSD Ped2' in done.stderr
    # both source layouts get their preparation command
    assert '--src /path/to/UCSD_Anomaly_Dataset.v1p2/UCSDped2 --dst' in done.stderr
    assert '--src /path/to/ped2 --dst' in done.stderr
    assert 'AUC: ' in done.stdout
    assert '----------------- Options' not in done.stdout  # the tables are in opt.txt
    assert done.stdout.count('options (not at their default; all in opt.txt): ') == 2  # training, testing
    setting = 'MemAE_Conv3DSpar_SyntheticDemo_MemDim2000_EntW0.0002_ShrThres0.0025_Seed1_Non'
    res = out / f'res_{setting}'
    results = json.loads((res / 'results.json').read_text())
    assert 0 <= results['metrics']['auc'] <= 1 and results['metrics']['num_clips'] == 3 * 9
    assert results['localization']['frames'] == 3 * 9  # the demo keeps its objects' masks: localization too
    figures = ['roc.png', 'error_maps.png', 'memory_usage.png', 'localization_roc.png']
    figures += [f'regularity_Test00{k}.png' for k in (1, 2, 3)]
    for name in figures:
        with Image.open(res / 'plots' / name) as image:  # a real PNG, not an empty file
            assert image.size[0] > 100 and image.size[1] > 100
    # the demo's weights land in OUT_ROOT: the final weights only (no snapshot, training state or epoch checkpoint
    # that repeats them), which is all testing needed
    weights = sorted(p.name for p in (out / f'model_{setting}').glob('*.pt'))
    assert weights == [f'{setting}_epoch_0000_final.pt']
    assert not list(out.rglob('.*.tmp'))
    assert any((out / f'log_{setting}').iterdir())  # and its TensorBoard log


def test_a_synthetic_video_of_your_own_dips_where_its_anomaly_is(demo_run, tiny_demo_root, tmp_path):
    """--Video on a new video of the demo's scene (data/synthetic.py) with the demo's weights: a cart enters at
    frame 41; the lowest regularity is a frame that shows it, and anomalous frames score lower than normal ones."""
    done, out = demo_run
    assert done.returncode == 0, done.stderr[-3000:]
    rng = np.random.default_rng(0)
    scene = background(32, rng)  # the demo's camera: make_synthetic draws its background first, from seed 0
    frames, masks = render_video(32, 64, rng, scene, 'cart', anomaly_start=40)
    folder = tmp_path / 'my video'
    folder.mkdir()
    for t, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / f'frame_{t}.png')
    argv = [*experiment('demo').flags, '--DataRoot', str(tiny_demo_root), '--ModelRoot', str(out), '--OutRoot',
            str(tmp_path / 'results'), '--Video', str(folder), '--UseCUDA', 'False', '--PrintOptions', 'False']
    assert script_testing.main(argv) == 0
    regular = np.load(tmp_path / 'results' / 'video_my video' / 'regularity.npy')
    anomalous = masks.any(axis=(1, 2))
    assert len(regular) == 64 and not anomalous[:40].any() and anomalous[40:].all()
    assert anomalous[np.argmin(regular)]
    assert regular[anomalous].mean() < regular[~anomalous].mean() - 0.2


def test_explicit_ped2_without_data_is_an_error_not_the_demo(tmp_path):
    done = run_script('bash', 'test.sh', 'ped2', '--UseCUDA', 'False', DATA_ROOT=tmp_path, MODEL_ROOT=tmp_path)
    assert done.returncode == 2 and 'No prepared UCSD Ped2' not in done.stderr


def test_slot_usage_counts_the_weight_each_slot_receives():
    memory = MemModule(mem_dim=5, fea_dim=4, shrink_thres=0.0)
    features = torch.randn(2, 4, 3, 3)
    with SlotUsage(memory) as usage:
        att = memory(features)['att']
        memory(features)
    assert usage.queries == 2 * 2 * 3 * 3
    assert torch.allclose(usage.mass, 2 * att.sum(dim=(0, 2, 3)))
    assert usage.shares().sum() == pytest.approx(1.0)
    assert usage.nonzero_per_query == pytest.approx(5.0)  # no shrinkage: every slot has some weight
    largest = att.detach().movedim(1, -1).reshape(-1, 5).max(dim=1).values.mean()  # the same queries, counted twice
    assert usage.largest_weight_per_query == pytest.approx(largest.item())
    memory(features)
    assert usage.queries == 36  # detached after the with block


def test_shaded_spans_and_most_anomalous_clips():
    assert shaded_spans([0, 1, 1, 0, 0, 1]) == [(2, 3), (6, 6)]
    assert shaded_spans([0, 0]) == []
    videos = [VideoResult('a', np.array([1.0, 5.0, 2.0, 4.0]), np.zeros(4)),
              VideoResult('b', np.array([3.0, 1.0, 9.0]), np.zeros(3))]
    # the top clip of each video first (both have regularity 0 there), then the next lowest regularity
    assert most_anomalous_clips(videos, count=3) == [('a', 1), ('b', 2), ('a', 3)]


def test_error_map_rows_share_one_colour_scale(monkeypatch, tmp_path):
    """One scale for the figure (0 to its largest error): a bright row is brighter than a dim one, not each row
    stretched to its own maximum."""
    import utils.plots as plots
    from models import AutoEncoderCov3DMem
    shown = []
    monkeypatch.setattr(plots, 'save_figure', lambda plt, figure, path: shown.append(figure))
    torch.manual_seed(0)
    model = AutoEncoderCov3DMem(1, 20).eval()
    clips = [torch.rand(1, 16, 32, 32) * 2 - 1, torch.zeros(1, 16, 32, 32)]
    clips[1][:, :, :8] = 1  # another error range
    plots.plot_error_maps(tmp_path / 'maps.png', model, clips, ['a', 'b'], memory_model=True)
    heat = [axis.images[0] for axis in shown[0].axes if axis.images and axis.images[0].get_cmap().name == 'inferno']
    limits = {image.get_clim() for image in heat}
    assert len(heat) == 2 and len(limits) == 1
    low, high = limits.pop()
    largest = max(float(np.max(image.get_array())) for image in heat)
    assert low == 0 and high == pytest.approx(largest)


def test_the_demo_hands_training_flags_to_training_only(tiny_demo_root, tmp_path):
    """The advice printed after a Ctrl-C (`... --Resume auto`) and training flags such as --EpochNum work with
    `bash test.sh demo`: its testing step gets only the flags testing takes."""
    done = run_script('bash', 'test.sh', 'demo', '--EpochNum', '1', '--Resume', 'auto', '--MemDim', '20',
                      '--NumWorker', '0', DATA_ROOT=tiny_demo_root, OUT_ROOT=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'AUC: ' in done.stdout and 'unrecognized arguments' not in done.stderr
    assert next(tmp_path.glob('res_*MemDim20*/results.json')).is_file()  # --MemDim, which both take, reached both
    if not torch.cuda.is_available():  # --UseCUDA True by default: said once for the whole command
        assert done.stderr.count('CUDA is not available') == 1
