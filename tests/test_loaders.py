import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from data.layout import VideoLayout
from data.readers import DataFormatError, read_ground_truth, read_index, write_index
from data.registry import DATASETS, dataset_spec
from data.video_datasets import VideoDataset, VideoDatasetOneDir, frame_to_tensor
from utils.errors import InputError


def test_frame_transform_is_bit_identical_to_torchvision():
    frame = np.random.default_rng(0).integers(0, 256, size=(9, 7, 1), dtype=np.uint8)
    released = transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
    assert torch.equal(frame_to_tensor(frame), released(frame))
    colour = np.random.default_rng(1).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    released = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    assert torch.equal(frame_to_tensor(colour), released(colour))


def test_training_dataset_lists_every_clip_of_every_video(prepared_root):
    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    dataset = VideoDataset(layout.index_dir('train'), layout.frames_dir('train'), frame_num=16)
    assert len(dataset) == 2 * 5
    item, clip = dataset[7]
    assert item == 7 and clip.shape == (1, 16, 32, 32)
    assert clip.min() >= -1 and clip.max() <= 1


def test_test_clip_is_its_frames_in_index_order(prepared_root):
    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    video = 'Test002'
    dataset = VideoDatasetOneDir(layout.index_dir('test') / video, layout.frames_dir('test') / video)
    _, clip = dataset[3]
    frames = read_index(layout.index_dir('test') / video / f'{video}_i004.mat')[1]
    for t, n in enumerate(frames):
        expected = np.array(Image.open(layout.frames_dir('test') / video / f'{n:03d}.jpg'))
        assert torch.equal(clip[0, t], torch.from_numpy(expected).float().div(255).sub(0.5).div(0.5))
    # the frame cache returns the same values as a fresh decode
    uncached = VideoDatasetOneDir(layout.index_dir('test') / video, layout.frames_dir('test') / video, cache_frames=0)
    for i in range(len(dataset)):
        assert torch.equal(dataset[i][1], uncached[i][1])
    assert dataset.frame_indices().shape == (5, 16)


def test_frames_padded_beyond_three_digits_are_found(tmp_path):
    idx_dir, frame_dir = tmp_path / 'idx', tmp_path / 'frames'
    idx_dir.mkdir()
    frame_dir.mkdir()
    for n in range(998, 1003):
        Image.fromarray(np.full((16, 16), n % 256, np.uint8)).save(frame_dir / f'{n:04d}.jpg')
    write_index(idx_dir / 'V_i1000.mat', 'V', np.arange(999, 1003))
    write_index(idx_dir / 'V_i999.mat', 'V', np.arange(998, 1002))
    dataset = VideoDatasetOneDir(idx_dir, frame_dir)
    assert [c[2][0] for c in dataset.clips] == [998, 999]  # natural order: clip 999 before clip 1000
    assert dataset[1][1].shape == (1, 4, 16, 16)


def test_later_released_folder_names_are_detected(prepared_root, tmp_path):
    import shutil
    copy = tmp_path / 'UCSD_P2_256'
    shutil.copytree(prepared_root / 'UCSD_P2_256', copy)
    for old, new in (('training', 'Train'), ('training_idx', 'Train_idx'), ('testing', 'Test'),
                     ('testing_idx', 'Test_idx'), ('testing_gt', 'Test_gt')):
        (copy / old).rename(copy / new)
    layout = VideoLayout(copy)
    assert layout.frames_dir('train').name == 'Train' and layout.gt_dir().name == 'Test_gt'
    assert layout.videos('test') == ['Test001', 'Test002']
    assert len(read_ground_truth(layout.gt_file('Test001'))) == 20


def test_frame_count_must_match_framenum(prepared_root):
    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    with pytest.raises(DataFormatError, match='lists 16 frames but --FrameNum is 8'):
        VideoDatasetOneDir(layout.index_dir('test') / 'Test001', layout.frames_dir('test') / 'Test001', frame_num=8)


def test_missing_frame_names_the_index_file(tmp_path):
    (tmp_path / 'idx').mkdir()
    (tmp_path / 'frames').mkdir()
    write_index(tmp_path / 'idx' / 'V_i001.mat', 'V', np.arange(1, 5))
    dataset = VideoDatasetOneDir(tmp_path / 'idx', tmp_path / 'frames')
    with pytest.raises(DataFormatError, match=r'V_i001.mat names frame 1, which is not in'):
        dataset[0]


@pytest.mark.parametrize('content, message', [
    (b'not a mat file', 'not a readable MATLAB'),
    ({'v_name': 'V'}, 'lacks the variable'),
    ({'v_name': 'V', 'idx': np.array([[0.0, 1.0]])}, '1-based'),
    ({'v_name': 'V', 'idx': np.array([[1.5, 2.0]])}, 'whole numbers'),
])
def test_bad_index_files_fail_with_one_sentence(tmp_path, content, message):
    import scipy.io as sio
    path = tmp_path / 'V_i001.mat'
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        sio.savemat(str(path), content)
    with pytest.raises(DataFormatError, match=message):
        read_index(path)


def test_missing_dataset_folder_says_how_to_prepare(tmp_path):
    with pytest.raises(DataFormatError, match='prepare_video'):
        VideoLayout(tmp_path / 'nothing')


def test_dataset_registry(prepared_root, tmp_path):
    assert dataset_spec('UCSD_P2_256', tmp_path).reader is VideoDataset
    assert dataset_spec('UCSD_P2_256', prepared_root) is DATASETS['UCSD_P2_256']
    (tmp_path / 'MyCam' / 'testing_idx').mkdir(parents=True)
    assert dataset_spec('MyCam', tmp_path).family == 'video'
    (tmp_path / 'MyImages' / 'cats').mkdir(parents=True)
    assert dataset_spec('MyImages', tmp_path).family == 'image'
    with pytest.raises(InputError, match='UCSD_P2_256, UCSD_P1_256'):
        dataset_spec('Nope', tmp_path)
