"""Preparation of UCSD Ped1, CUHK Avenue (as released, and its JPEG re-distribution) and ShanghaiTech, on tiny
synthetic trees written inside the tests (video files with PyAV); and videos longer than 999 frames."""
import builtins
import json

import numpy as np
import pytest
from PIL import Image

from data.layout import VideoLayout
from data.prepare_video import prepare, ranges_to_labels
from data.readers import DataFormatError, read_ground_truth, read_index
from data.video_datasets import VideoDatasetOneDir
from synthetic import (anomaly_ranges, frame_and_mask, make_avenue_official, make_jpeg_redistribution,
                       make_shanghaitech, make_ucsd_original)

pytest.importorskip('av')  # the video-file layouts need PyAV (in requirements.txt)


def assert_labels(out, ranges, num_frames):
    for k, r in enumerate(ranges, start=1):
        assert np.array_equal(read_ground_truth(out / 'testing_gt' / f'Test{k:03d}.mat'),
                              ranges_to_labels([r], num_frames))


def nearest_source_frame(prepared_frame, num_frames, seed):
    """The 1-based number of the synthetic source frame a prepared frame looks most like."""
    with Image.open(prepared_frame) as image:
        frame = np.asarray(image.resize((36, 24)), dtype=float)
    distances = [np.abs(frame - frame_and_mask(t, False, seed=seed)[0]).mean() for t in range(1, num_frames + 1)]
    return int(np.argmin(distances)) + 1


def test_ped1_labels_come_from_the_m_file_when_some_masks_are_missing(tmp_path):
    src = make_ucsd_original(tmp_path, num_train=2, num_test=3, num_frames=18, name='UCSDped1', mask_videos=(2,))
    summary = prepare(src, tmp_path / 'out', size=(32, 32), progress=False)
    assert summary['label_origin'] == 'frame ranges of UCSDped1.m'
    assert_labels(tmp_path / 'out', anomaly_ranges(3, 18), 18)
    # the one video with masks keeps them; the others have none (localization evaluates only that video)
    assert summary['testing']['videos_with_pixel_masks'] == ['Test002']
    assert [p.name for p in (tmp_path / 'out' / 'testing_masks').iterdir()] == ['Test002']


def test_avenue_as_released_decodes_avi_and_reads_vollabel_masks(tmp_path):
    src, ranges = make_avenue_official(tmp_path, num_train=2, num_test=2, num_frames=20)
    out = tmp_path / 'out'
    summary = prepare(src, out, size=(32, 32), progress=False)
    assert summary['layout'] == 'avenue_official'
    assert summary['training'] == {'videos': 2, 'frames': 40, 'clips': 10}
    assert summary['video_sources']['Test002'].endswith('testing_videos/02.avi')
    assert_labels(out, ranges, 20)
    assert summary['testing']['videos_with_pixel_masks'] == ['Test001', 'Test002']
    start, end = ranges[1]  # the volLabel masks, frame by frame
    masks = [np.asarray(Image.open(out / 'testing_masks' / 'Test002' / f'{t:03d}.png')) for t in range(1, 21)]
    assert [bool(m.any()) for m in masks] == [start <= t <= end for t in range(1, 21)]
    assert sorted(p.name for p in (out / 'training' / 'Train002').iterdir()) == [f'{n:03d}.jpg' for n in range(1, 21)]
    for t in (1, 7, 20):  # the decoded frames are in order and are the video's frames (lossy codec: nearest)
        assert nearest_source_frame(out / 'training' / 'Train002' / f'{t:03d}.jpg', 20, seed=2) == t


def test_avenue_jpeg_redistribution_is_the_known_layout(tmp_path):
    src, ranges = make_jpeg_redistribution(tmp_path, num_train=1, num_test=2, num_frames=17)
    (src.parent / 'avenue').mkdir()
    src = src.rename(src.parent / 'avenue' / 'avenue')
    (src / 'ped2.mat').rename(src / 'avenue.mat')
    summary = prepare(src, tmp_path / 'out', size=(16, 16), progress=False)
    assert summary['layout'] == 'jpeg_redistribution' and summary['label_origin'] == 'frame ranges of avenue.mat'
    assert_labels(tmp_path / 'out', ranges, 17)


def test_shanghaitech_training_videos_and_test_frames(tmp_path):
    src, ranges = make_shanghaitech(tmp_path, num_train=2, num_test=2, num_frames=20)
    out = tmp_path / 'out'
    summary = prepare(src, out, size=(32, 32), progress=False)
    assert summary['layout'] == 'shanghaitech'
    assert (summary['training']['frames'], summary['testing']['frames']) == (40, 40)
    assert summary['video_sources']['Train001'].endswith('training/videos/01_001.avi')
    assert summary['video_sources']['Test002'].endswith('testing/frames/01_0002')
    assert_labels(out, ranges, 20)
    layout = VideoLayout(out)
    assert layout.videos('train') == ['Train001', 'Train002'] and layout.videos('test') == ['Test001', 'Test002']


def test_shanghaitech_label_count_must_match_the_frames(tmp_path):
    src, _ = make_shanghaitech(tmp_path, num_train=1, num_test=1, num_frames=18)
    np.save(src / 'testing' / 'test_frame_mask' / '01_0001.npy', np.zeros(17, dtype=np.int8))
    with pytest.raises(DataFormatError, match=r'Test001 \(.*01_0001\): 17 frame labels'):
        prepare(src, tmp_path / 'out', size=(16, 16), progress=False)


def test_missing_pyav_is_one_sentence(tmp_path, monkeypatch):
    src, _ = make_avenue_official(tmp_path, num_train=1, num_test=1, num_frames=16)
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == 'av':
            raise ImportError('No module named av')
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', no_av)
    with pytest.raises(DataFormatError, match='need PyAV to decode: pip install av'):
        prepare(src, tmp_path / 'out', size=(16, 16), progress=False)


def test_a_damaged_video_file_names_itself(tmp_path):
    src, _ = make_avenue_official(tmp_path, num_train=1, num_test=1, num_frames=16)
    (src / 'training_videos' / '01.avi').write_bytes(b'RIFF\x00\x00')
    with pytest.raises(DataFormatError, match='01.avi is not a readable video file'):
        prepare(src, tmp_path / 'out', size=(16, 16), progress=False)


def test_videos_longer_than_999_frames(tmp_path):
    """Avenue and ShanghaiTech have such videos: four-digit frame names and index numbers, read in order."""
    src = tmp_path / 'UCSDped2'
    (src / 'Train' / 'Train001').mkdir(parents=True)
    (src / 'Test' / 'Test001').mkdir(parents=True)
    frame = np.zeros((16, 16), np.uint8)
    for t in range(1, 1021):
        frame[0, 0] = t % 256
        Image.fromarray(frame).save(src / 'Test' / 'Test001' / f'{t:04d}.png')
    Image.fromarray(frame).save(src / 'Train' / 'Train001' / '001.png')
    (src / 'Test' / 'UCSDped2.m').write_text('TestVideoFile{end+1}.gt_frame = [1000:1020];\n')
    summary = prepare(src, tmp_path / 'out', size=(16, 16), progress=False)
    assert summary['testing'] == {'videos': 1, 'frames': 1020, 'clips': 1005, 'anomalous_frames': 21,
                                  'videos_with_pixel_masks': []}
    out = tmp_path / 'out'
    assert (out / 'testing' / 'Test001' / '1020.jpg').is_file() and (out / 'testing' / 'Test001' / '0001.jpg').is_file()
    assert read_index(out / 'testing_idx' / 'Test001' / 'Test001_i1005.mat')[1].tolist() == list(range(1005, 1021))
    clips = VideoDatasetOneDir(out / 'testing_idx' / 'Test001', out / 'testing' / 'Test001').frame_indices()
    assert clips[:, 0].tolist() == list(range(1, 1006))  # natural order, not 1, 10, 100, 1000, ...
    assert json.loads((out / 'prepare.json').read_text())['testing']['clips'] == 1005


@pytest.mark.parametrize('experiment, dataset', [('ped1', 'UCSD_P1_256'), ('avenue', 'Avenue_256'),
                                                 ('shanghaitech_ae', 'ShanghaiTech_256')])
def test_experiments_of_the_other_video_sets(experiment, dataset):
    from data.registry import DATASETS
    from utils.experiments.settings import experiment as named
    chosen = named(experiment)
    assert chosen.dataset == dataset and DATASETS[dataset].family == 'video'
    assert chosen.flag('--MemDim') == (None if experiment.endswith('_ae') else '2000')
