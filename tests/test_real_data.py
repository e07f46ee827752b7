"""Checks on the real data sets in MEMAE_REAL_DATA (``.ci/run`` sets it to ../shared/data when that exists)."""
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from data.layout import VideoLayout
from data.prepare_video import mask_labels, prepare
from data.readers import read_ground_truth, read_index
from data.video_datasets import VideoDataset
from shell import REPO, run_script

PED2_TEST_FRAMES = [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]


@pytest.fixture(scope='module')
def ped2(real_data, tmp_path_factory):
    """Real UCSD Ped2 prepared from the JPEG re-distribution, and the official pixel masks unpacked."""
    src = real_data / 'ucsd_ped2' / 'ped2'
    if not src.is_dir():
        pytest.skip(f'{src} is not there')
    root = tmp_path_factory.mktemp('ped2')
    summary = prepare(src, root / 'UCSD_P2_256', progress=False)
    with tarfile.open(real_data / 'ucsd_ped2' / 'UCSD_Anomaly_Dataset.v1p2' / 'UCSDped2_Test_gt_bmp.tar.gz') as tar:
        tar.extractall(root / 'masks', filter='data')
    return summary, root / 'UCSD_P2_256', root / 'masks' / 'UCSDped2' / 'Test'


def test_prepared_ped2_has_the_published_counts(ped2):
    summary, out, _ = ped2
    assert summary['training'] == {'videos': 16, 'frames': 2550, 'clips': 2310}
    assert summary['testing'] == {'videos': 12, 'frames': 2010, 'clips': 1830, 'anomalous_frames': 1648}
    layout = VideoLayout(out)
    assert layout.videos('test') == [f'Test{k:03d}' for k in range(1, 13)]
    assert [len(list((out / 'testing' / v).iterdir())) for v in layout.videos('test')] == PED2_TEST_FRAMES
    with Image.open(out / 'testing' / 'Test012' / '180.jpg') as image:
        assert (image.mode, image.size) == ('L', (256, 256))
    assert read_index(out / 'testing_idx' / 'Test012' / 'Test012_i165.mat') == ('Test012', pytest.approx(range(165, 181)))


def test_prepared_labels_equal_the_official_pixel_masks(ped2):
    _, out, masks = ped2
    for k in range(1, 13):
        labels = read_ground_truth(out / 'testing_gt' / f'Test{k:03d}.mat')
        assert np.array_equal(labels, mask_labels(masks / f'Test{k:03d}_gt')), f'Test{k:03d}'


def test_prepared_labels_equal_the_frame_label_file(ped2, real_data):
    _, out, _ = ped2
    reference = np.load(real_data / 'ucsd_ped2' / 'frame_labels_ped2.npy').ravel()
    ours = np.concatenate([read_ground_truth(out / 'testing_gt' / f'Test{k:03d}.mat') for k in range(1, 13)])
    assert np.array_equal(ours, reference)


def test_a_real_training_clip_loads(ped2):
    _, out, _ = ped2
    layout = VideoLayout(out)
    dataset = VideoDataset(layout.index_dir('train'), layout.frames_dir('train'), frame_num=16)
    assert len(dataset) == 2310
    clip = dataset[2309][1]
    assert clip.shape == (1, 16, 256, 256) and -1 <= clip.min() < clip.max() <= 1


# Reported for the shipped weights (README.md, memae_models/README.md): MNIST, mean AUC over the ten classes; KDD,
# the F1 of the first three of the 20 runs (0.9449, 0.9407, 0.9402; all 20 would take a minute more).
SHIPPED = {'mnist': ('mnist_summary.json', ('auc', 'mean'), 0.9197, []),
           'kdd': ('kdd_summary.json', ('f1', 'mean'), 0.9419, ['--Runs', '3'])}


@pytest.mark.parametrize('experiment', sorted(SHIPPED))
def test_shipped_weights_reproduce_the_reported_numbers(real_data, tmp_path, experiment):
    summary_name, keys, expected, extra = SHIPPED[experiment]
    result = run_script('bash', 'test.sh', experiment, '--UseCUDA', 'False', *extra, DATA_ROOT=real_data,
                        OUT_ROOT=tmp_path, MODEL_ROOT=REPO / 'memae_models')
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / summary_name).read_text())
    assert summary[keys[0]][keys[1]] == pytest.approx(expected, abs=5e-4)
