import json

import numpy as np
import pytest
from PIL import Image

from data.prepare_video import clip_starts, main, mask_labels, parse_ucsd_m_file, prepare, ranges_to_labels
from data.readers import DataFormatError, read_ground_truth, read_index
from synthetic import anomaly_ranges, frame_and_mask, make_jpeg_redistribution, make_ucsd_original


def expected_labels(num_test, num_frames):
    return [ranges_to_labels([r], num_frames) for r in anomaly_ranges(num_test, num_frames)]


def test_original_ucsd_layout_with_masks(tmp_path):
    src = make_ucsd_original(tmp_path / 'src', num_train=2, num_test=3, num_frames=18)
    summary = prepare(src, tmp_path / 'out', size=(32, 48), progress=False)
    out = tmp_path / 'out'
    assert summary['label_origin'].startswith('pixel masks')
    assert summary['training'] == {'videos': 2, 'frames': 36, 'clips': 6}
    assert summary['testing'] == {'videos': 3, 'frames': 54, 'clips': 9, 'anomalous_frames': 24,
                                  'videos_with_pixel_masks': ['Test001', 'Test002', 'Test003']}
    assert sorted(p.name for p in (out / 'testing').iterdir()) == ['Test001', 'Test002', 'Test003']
    frames = sorted(p.name for p in (out / 'training' / 'Train002').iterdir())
    assert frames == [f'{n:03d}.jpg' for n in range(1, 19)]
    with Image.open(out / 'training' / 'Train002' / '001.jpg') as image:
        assert (image.mode, image.size) == ('L', (48, 32))
    # one index file per 16-frame clip at stride 1, as the MATLAB script wrote them
    assert read_index(out / 'testing_idx' / 'Test003' / 'Test003_i003.mat') == ('Test003', pytest.approx(np.arange(3, 19)))
    for k, labels in enumerate(expected_labels(3, 18), start=1):
        assert np.array_equal(read_ground_truth(out / 'testing_gt' / f'Test{k:03d}.mat'), labels)
    assert json.loads((out / 'prepare.json').read_text())['testing']['anomalous_frames'] == 24


def test_pixel_masks_are_kept_at_the_frame_size_frame_by_frame(tmp_path):
    src = make_ucsd_original(tmp_path / 'src', num_train=1, num_test=2, num_frames=17)
    prepare(src, tmp_path / 'out', size=(32, 48), progress=False)
    for k, (start, end) in enumerate(anomaly_ranges(2, 17), start=1):
        folder = tmp_path / 'out' / 'testing_masks' / f'Test{k:03d}'
        assert sorted(p.name for p in folder.iterdir()) == [f'{t:03d}.png' for t in range(1, 18)]
        for t in range(1, 18):
            _, source_mask = frame_and_mask(t, start <= t <= end, seed=100 + k)
            expected = np.asarray(Image.fromarray(source_mask).resize((48, 32), Image.Resampling.NEAREST)) > 0
            prepared = np.asarray(Image.open(folder / f'{t:03d}.png'))
            assert prepared.shape == (32, 48) and set(np.unique(prepared)) <= {0, 255}
            assert np.array_equal(prepared > 0, expected), (k, t)
            assert prepared.any() == (start <= t <= end)
    # at the source's own size the masks are the source's, bit for bit
    prepare(src, tmp_path / 'same', size=(24, 36), progress=False)
    mask = np.asarray(Image.open(tmp_path / 'same' / 'testing_masks' / 'Test002' / '017.png'))
    assert np.array_equal(mask, frame_and_mask(17, True, seed=102)[1])


def test_masks_named_frameNNN_and_m_file_ranges_agree(tmp_path):
    src = make_ucsd_original(tmp_path / 'src', num_test=2, num_frames=17, frame_prefix_videos=(1, 2))
    prepare(src, tmp_path / 'masks', size=(16, 16), labels='masks', progress=False)
    prepare(src, tmp_path / 'ranges', size=(16, 16), labels='ranges', progress=False)
    for name in ('Test001', 'Test002'):
        from_masks = read_ground_truth(tmp_path / 'masks' / 'testing_gt' / f'{name}.mat')
        assert np.array_equal(from_masks, read_ground_truth(tmp_path / 'ranges' / 'testing_gt' / f'{name}.mat'))
        assert from_masks.any() and not from_masks.all()


def test_jpeg_redistribution_renames_zero_based_frames(tmp_path):
    src, ranges = make_jpeg_redistribution(tmp_path, num_train=2, num_test=2, num_frames=17)
    summary = prepare(src, tmp_path / 'out', size=(24, 36), progress=False)  # the source size: no resizing
    out = tmp_path / 'out'
    assert summary['layout'] == 'jpeg_redistribution'
    assert sorted(p.name for p in (out / 'training').iterdir()) == ['Train001', 'Train002']
    # source 000.jpg (0-based) becomes 001.jpg (1-based): same picture, one more JPEG generation
    with Image.open(src / 'training' / 'frames' / '02' / '004.jpg') as image:
        source = np.asarray(image.convert('L'), dtype=float)
    differences = {}
    for name in ('004.jpg', '005.jpg', '006.jpg'):
        with Image.open(out / 'training' / 'Train002' / name) as image:
            differences[name] = np.abs(source - np.asarray(image, dtype=float)).mean()
    assert min(differences, key=differences.get) == '005.jpg'
    for k, labels in enumerate(expected_labels(2, 17), start=1):
        assert np.array_equal(read_ground_truth(out / 'testing_gt' / f'Test{k:03d}.mat'), labels)


def test_separate_mask_folder_overrides_ranges(tmp_path):
    src, _ = make_jpeg_redistribution(tmp_path / 'jpeg', num_test=2, num_frames=17)
    masks_src = make_ucsd_original(tmp_path / 'orig', num_test=2, num_frames=17)
    # invert the frame labels of Test002's masks so that they differ from the .mat ranges
    for mask in (masks_src / 'Test' / 'Test002_gt').iterdir():
        anomalous = np.asarray(Image.open(mask)).any()
        Image.fromarray(np.full((4, 4), 0 if anomalous else 255, np.uint8)).save(mask)
    summary = prepare(src, tmp_path / 'out', size=(16, 16), masks=masks_src / 'Test', progress=False)
    assert summary['label_origin'].startswith('pixel masks in')
    assert np.array_equal(read_ground_truth(tmp_path / 'out' / 'testing_gt' / 'Test002.mat'),
                          1 - expected_labels(2, 17)[1])


def test_other_clip_lengths_and_strides(tmp_path):
    src = make_ucsd_original(tmp_path / 'src', num_train=1, num_test=1, num_frames=20)
    summary = prepare(src, tmp_path / 'out', size=(16, 16), clip_len=8, stride=3, progress=False)
    assert summary['training']['clips'] == len(clip_starts(20, 8, 3)) == 5
    assert read_index(tmp_path / 'out' / 'training_idx' / 'Train001' / 'Train001_i005.mat')[1].tolist() == \
        list(range(13, 21))


def test_clip_starts():
    assert clip_starts(180, 16, 1) == list(range(1, 166))
    assert clip_starts(15, 16, 1) == []
    assert clip_starts(16, 16, 4) == [1]


def test_refuses_a_non_empty_destination_without_overwrite(tmp_path):
    src = make_ucsd_original(tmp_path / 'src', num_train=1, num_test=1, num_frames=16)
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'keep.txt').write_text('mine')
    with pytest.raises(DataFormatError, match='--overwrite'):
        prepare(src, out, size=(16, 16), progress=False)
    (out / '.preparing.999999.tmp' / 'training').mkdir(parents=True)  # what a killed preparation leaves
    prepare(src, out, size=(16, 16), overwrite=True, progress=False)
    assert (out / 'keep.txt').read_text() == 'mine'  # only the prepared folders are replaced
    assert (out / 'testing_gt' / 'Test001.mat').is_file()
    assert sorted(p.name for p in out.iterdir()) == ['keep.txt', 'prepare.json', 'testing', 'testing_gt',
                                                     'testing_idx', 'testing_masks', 'training', 'training_idx']


@pytest.mark.parametrize('make, message', [
    (lambda root: root, 'not a known source layout'),
    (lambda root: (root / 'UCSDped2').mkdir() or root, 'UCSDped2'),
    (lambda root: root / 'missing', 'not a folder'),
])
def test_unknown_sources_fail_with_one_sentence(tmp_path, make, message):
    with pytest.raises(DataFormatError, match=message):
        prepare(make(tmp_path), tmp_path / 'out', progress=False)


def test_a_known_layout_one_level_down_is_named(tmp_path):
    """--src given the folder that holds the data set (e.g. the parent of ped2/): the message names the folder to
    pass instead, and its layout."""
    make_jpeg_redistribution(tmp_path / 'downloads')  # downloads/ped2/...
    (tmp_path / 'downloads' / 'other').mkdir()
    with pytest.raises(DataFormatError) as error:
        prepare(tmp_path / 'downloads', tmp_path / 'out', progress=False)
    assert str(error.value) == (f'--src {tmp_path / "downloads"} holds a known layout one level down: '
                                f'{tmp_path / "downloads" / "ped2"} (JPEG re-distribution); pass that folder')


def test_the_command_prints_a_short_summary_and_where_the_details_are(tmp_path, capsys):
    src = make_ucsd_original(tmp_path / 'src', num_train=2, num_test=3, num_frames=18)
    assert main(['--src', str(src), '--dst', str(tmp_path / 'out'), '--size', '16', '16']) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    details = json.loads((tmp_path / 'out' / 'prepare.json').read_text())
    assert len(printed) == 4 and printed[-1].endswith(f"details in {tmp_path / 'out' / 'prepare.json'}")
    assert printed[1] == (f"  training: 2 videos, 36 frames, {details['training']['clips']} clips")
    assert printed[2].startswith(f"  testing: 3 videos, 54 frames ({details['testing']['anomalous_frames']} "
                                 f"anomalous), {details['testing']['clips']} clips")


def test_label_count_must_match_frames(tmp_path):
    src = make_ucsd_original(tmp_path / 'src', num_train=1, num_test=1, num_frames=16)
    (src / 'Test' / 'Test001_gt' / '016.bmp').unlink()
    with pytest.raises(DataFormatError, match='15 frame labels'):
        prepare(src, tmp_path / 'out', size=(16, 16), progress=False)


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    from utils.errors import run_cli
    assert run_cli(main, ['--src', str(tmp_path / 'nothing'), '--dst', str(tmp_path / 'out')]) == 2
    assert capsys.readouterr().err.startswith('error: --src')


def test_m_file_and_mask_parsers(tmp_path):
    m_file = tmp_path / 'UCSDped1.m'
    m_file.write_text('TestVideoFile{end+1}.gt_frame = [60:152];\nTestVideoFile{end+1}.gt_frame = [5:90, 140:200];\n')
    assert parse_ucsd_m_file(m_file) == [[(60, 152)], [(5, 90), (140, 200)]]
    masks = tmp_path / 'masks'
    masks.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(masks / 'frame001.bmp')
    Image.fromarray(np.pad(np.full((1, 1), 255, np.uint8), ((3, 0), (0, 3)))).save(masks / 'frame002.bmp')
    assert mask_labels(masks).tolist() == [0, 1]
