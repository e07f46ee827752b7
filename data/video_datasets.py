"""PyTorch datasets of video clips listed by index files.

Each item is ``(item, clip)`` as released: the position of the clip and a C x T x H x W float tensor whose
frames are mapped to [-1, 1] (ToTensor, then Normalize(mean 0.5, std 0.5)). Frames are used at the size they
are stored; data preparation does the resizing.

Unlike the released loaders, these read every index file once (at construction), find frames whatever their
zero-padding, and keep the most recently decoded frames: consecutive test clips overlap in all but one frame,
so a video is decoded about once instead of ``clip_len`` times.
"""
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data.readers import DataFormatError, frame_files, load_frame, read_index
from data.layout import list_index_files, list_video_folders

NORM_MEAN = 0.5
NORM_STD = 0.5


def frame_to_tensor(frame):
    """uint8 H x W x C -> float C x H x W in [-1, 1]; the same operations as torchvision's ToTensor followed by
    Normalize(0.5, 0.5), so the values are bit-identical to the released transform's."""
    tensor = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))).to(torch.float32).div(255)
    return tensor.sub_(NORM_MEAN).div_(NORM_STD)


def normalised_frames(frames):
    """uint8 frames (any shape) as float32 in [-1, 1], the values of
    :func:`frame_to_tensor` (same operations, same order)."""
    return frames.to(torch.float32).div(255).sub_(NORM_MEAN).div_(NORM_STD)


class ClipDataset(Dataset):
    """Clips given as (index file, frame folder, 1-based frame numbers)."""

    def __init__(self, clips, transform=None, channels=1, frame_num=None, cache_frames=64):
        self.clips = clips
        self.transform = transform or frame_to_tensor
        self.channels = channels
        self.cache_frames = cache_frames
        self._cache = OrderedDict()
        self._frame_paths = {}
        self._frame_size = None  # (shape, path) of the first frame read
        if frame_num is not None:
            for index_file, _, frames in clips:
                if len(frames) != frame_num:
                    raise DataFormatError(f'{index_file} lists {len(frames)} frames but --FrameNum is {frame_num}')

    def __len__(self):
        return len(self.clips)

    def frame_indices(self):
        """(num_clips x clip_len) 1-based frame numbers, one row per clip."""
        return np.stack([frames for _, _, frames in self.clips])

    def checked_size(self, frame, path):
        """``frame``, after checking that it has the size of the first frame this data set read: frames of one data
        set must all have one size (clips are stacked from them)."""
        if self._frame_size is None:
            self._frame_size = (frame.shape, path)
        elif frame.shape != self._frame_size[0]:
            (height, width, _), first = self._frame_size
            raise DataFormatError(f'frame {path} is {frame.shape[1]} x {frame.shape[0]} pixels, but {first} is '
                                  f'{width} x {height}: every frame must have the prepared size')
        return frame

    def frame_path(self, folder, number, index_file):
        if folder not in self._frame_paths:
            self._frame_paths[folder] = frame_files(folder)
        path = self._frame_paths[folder].get(int(number))
        if path is None:
            raise DataFormatError(f'{index_file} names frame {number}, which is not in {folder}')
        return path

    def _frame(self, folder, number, index_file):
        key = (folder, int(number))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        path = self.frame_path(folder, number, index_file)
        tensor = self.transform(self.checked_size(load_frame(path, self.channels), path))
        self._cache[key] = tensor
        if len(self._cache) > self.cache_frames:
            self._cache.popitem(last=False)
        return tensor

    def __getitem__(self, item):
        index_file, folder, frames = self.clips[item]
        clip = torch.stack([self._frame(folder, n, index_file) for n in frames], dim=1)  # C x T x H x W
        return item, clip


def _read_clips(index_files, frame_folder_of):
    clips = []
    for index_file in index_files:
        v_name, frames = read_index(index_file)
        clips.append((index_file, frame_folder_of(v_name), frames))
    return clips


class VideoDataset(ClipDataset):
    """All clips of all videos under ``idx_root`` (one sub-folder per video) but those named in ``exclude``, for
    training. The frames of a clip are read from ``frame_root/<v_name>``, ``v_name`` being the video name its index
    file holds."""

    def __init__(self, idx_root, frame_root, transform=None, channels=1, frame_num=None, cache_frames=0, exclude=()):
        index_files = [f for video in list_video_folders(idx_root) if video.name not in exclude
                       for f in list_index_files(video)]
        clips = _read_clips(index_files, lambda v_name: Path(frame_root) / v_name)
        super().__init__(clips, transform, channels, frame_num, cache_frames)


class VideoDatasetOneDir(ClipDataset):
    """The clips of one video: index files in ``idx_dir``, frames in ``frame_root``, in clip order (testing)."""

    def __init__(self, idx_dir, frame_root, transform=None, channels=1, frame_num=None, cache_frames=64):
        clips = _read_clips(list_index_files(idx_dir), lambda v_name: Path(frame_root))
        super().__init__(clips, transform, channels, frame_num, cache_frames)

    @classmethod
    def in_layout(cls, layout, split, name, **options):
        """Video ``name`` of ``split`` ('train' or 'test') of a prepared data set (a
        :class:`data.layout.VideoLayout`); ``options`` as the constructor's."""
        return cls(layout.index_dir(split) / name, layout.frames_dir(split) / name, **options)


class PreloadedVideo:
    """The clips of one :class:`ClipDataset` cut from its frames decoded once into a single uint8 tensor on
    ``device`` (GPU memory when on CUDA: 64 kB per 256 x 256 grayscale frame, 129 MB for Ped2's 2010 test frames).
    ``batches(n)`` yields ``(positions, clips)`` like a DataLoader, with the values :func:`frame_to_tensor` gives."""

    def __init__(self, dataset, device):
        named_by = {}  # every frame the clips use -> the first index file naming it (for error messages)
        for index_file, folder, numbers in dataset.clips:
            for number in numbers:
                named_by.setdefault((folder, int(number)), index_file)
        row = {key: i for i, key in enumerate(named_by)}
        paths = [dataset.frame_path(folder, number, index_file) for (folder, number), index_file in named_by.items()]
        frames = np.stack([dataset.checked_size(load_frame(path, dataset.channels), path) for path in paths])
        self.frames = torch.from_numpy(frames).to(device)  # F x H x W x C
        self.rows = torch.tensor([[row[folder, int(n)] for n in numbers] for _, folder, numbers in dataset.clips],
                                 device=device)

    def __len__(self):
        return len(self.rows)

    def normalised(self, rows):
        """The frames ``rows`` selects (any shape of indices, then H x W x C) as floats in [-1, 1], the channel
        moved before the time: ``(..., C, H, W)`` -> for clips B x C x T x H x W, for a row of frames F x C x H x W."""
        frames = self.frames[rows]
        frames = frames.permute(0, 4, 1, 2, 3) if rows.dim() == 2 else frames.permute(0, 3, 1, 2)
        # standard strides, as the DataLoader's stacked clips have: with one channel the permuted tensor counts as
        # contiguous, but a convolution's backward chooses its kernel by the strides and rounds differently
        return normalised_frames(frames.clone(memory_format=torch.contiguous_format))

    def batches(self, batch_size):
        for start in range(0, len(self.rows), batch_size):
            rows = self.rows[start:start + batch_size]
            yield range(start, start + len(rows)), self.normalised(rows)

    def windows(self, clips_per_window):
        """``(positions, frames)``: the clips in runs where each clip is the previous one shifted by one frame, a
        run cut into windows of at most ``clips_per_window`` clips, all of about the same size (a small last
        window shares less); ``frames`` (F x C x H x W) are the window's frames in order, clip ``i`` of the window
        being frames ``i .. i + T - 1``. A clip that does not continue the previous one starts a new run (so any
        index files work; prepared data is one run per video)."""
        start = 0
        while start < len(self.rows):
            end = start + 1
            while end < len(self.rows) and torch.equal(self.rows[end, :-1], self.rows[end - 1, 1:]):
                end += 1
            count = -(-(end - start) // clips_per_window)
            bounds = [start + (end - start) * i // count for i in range(count + 1)]
            for first, stop in zip(bounds[:-1], bounds[1:]):
                rows = torch.cat([self.rows[first], self.rows[first + 1:stop, -1]])
                yield range(first, stop), self.normalised(rows)
            start = end


class TrainingClipsOnDevice:
    """Training batches cut from a :class:`PreloadedVideo` of ``dataset`` (every frame decoded once, one uint8 tensor
    on ``device``): no JPEG decoding per epoch and no worker processes. The order is drawn by a DataLoader over the
    clip positions alone with the same ``batch_size``, ``sampler`` (a multi-process run's share) and ``generator``
    as the DataLoader over ``dataset`` that this replaces, so for a seed it gives the same batches, value for value
    (``frame_to_tensor``'s operations), and leaves the generator where that one would (a resumed run draws the same
    later epochs). Iterating yields ``(positions, clips)`` like that DataLoader."""

    def __init__(self, dataset, device, batch_size, sampler=None, generator=None):
        self.video = PreloadedVideo(dataset, device)
        self.order = DataLoader(range(len(dataset)), batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                                generator=generator, pin_memory=device.type == 'cuda')
        self.device = device

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        for positions in self.order:
            rows = self.video.rows[positions.to(self.device, non_blocking=True)]
            yield positions, self.video.normalised(rows)

    @staticmethod
    def frame_bytes(dataset):
        """Bytes the frames of ``dataset`` take on the device (distinct frames x the first frame's size), known
        before any is decoded but the first."""
        frames = {(folder, int(n)) for _, folder, numbers in dataset.clips for n in numbers}
        return len(frames) * dataset[0][1][:, 0].numel()
