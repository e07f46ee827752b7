"""Where the files of a prepared video data set are.

The layout (``<DataRoot>/<Dataset>/``)::

    training/<Video>/NNN.jpg                  frames (1-based names)
    training_idx/<Video>/<Video>_iNNN.mat     one index file per clip
    testing/<Video>/NNN.jpg
    testing_idx/<Video>/<Video>_iNNN.mat
    testing_gt/<Video>.mat                    frame labels of each test video
    testing_masks/<Video>/NNN.png             (optional; ours) pixel masks of the test frames, 0 / 255

The authors' later scripts name the splits ``Train``/``Test`` (``Train_idx``, ``Test_gt``, ...); either naming
is found automatically.
"""
import re
from pathlib import Path

from data.readers import DataFormatError, is_hidden
from utils.errors import InputError

MASK_FOLDER = 'testing_masks'
SPLIT_FOLDERS = {'train': ('training', 'Train'), 'test': ('testing', 'Test')}
PREPARE_HINT = 'prepare it with: python -m data.prepare_video --src <downloaded data set> --dst <that folder>'


def natural_key(name):
    """Sort key that orders embedded numbers by value (clip 1000 after clip 999 whatever the padding)."""
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', name)]


def files_with_suffixes(folder, suffixes):
    """The files of ``folder`` whose suffix (any case) is one of ``suffixes``, hidden files left out, in natural
    name order (``2.png`` before ``10.png``)."""
    return sorted((p for p in Path(folder).iterdir()
                   if p.is_file() and p.suffix.lower() in suffixes and not is_hidden(p)),
                  key=lambda p: natural_key(p.name))


def list_video_folders(index_root):
    """The per-video index folders under ``index_root``, in natural order."""
    index_root = Path(index_root)
    if not index_root.is_dir():
        raise DataFormatError(f'index folder {index_root} does not exist; {PREPARE_HINT}')
    folders = sorted((p for p in index_root.iterdir() if p.is_dir() and not is_hidden(p)),
                     key=lambda p: natural_key(p.name))
    if not folders:
        raise DataFormatError(f'{index_root} holds no video index folders; {PREPARE_HINT}')
    return folders


def list_index_files(folder):
    """The clip index files of one video folder, in clip order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(f'index folder {folder} does not exist')
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix == '.mat' and not is_hidden(p)),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise DataFormatError(f'index folder {folder} holds no .mat files')
    return files


class VideoLayout:
    """The folders of one prepared data set; every method fails with a sentence that names the missing path."""

    def __init__(self, root):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataFormatError(f'data set folder {self.root} does not exist (check --DataRoot and --Dataset); '
                                  f'{PREPARE_HINT}')

    def _split_folder(self, split, suffix=''):
        names = [name + suffix for name in SPLIT_FOLDERS[split]]
        for name in names:
            if (self.root / name).is_dir():
                return self.root / name
        raise DataFormatError(f"{self.root} has no {' or '.join(names)} folder; {PREPARE_HINT}")

    def frames_dir(self, split):
        return self._split_folder(split)

    def index_dir(self, split):
        return self._split_folder(split, '_idx')

    def gt_dir(self):
        return self._split_folder('test', '_gt')

    def videos(self, split):
        """Names of the videos that have index folders, in natural order."""
        return [folder.name for folder in list_video_folders(self.index_dir(split))]

    def held_out(self, count):
        """The last ``count`` training videos (``--HoldOutVideos``), which training leaves out; at least one must
        remain."""
        videos = self.videos('train')
        if count >= len(videos):
            raise InputError(f'--HoldOutVideos {count} would hold out every training video of {self.root} (it has '
                             f'{len(videos)})')
        return videos[len(videos) - count:] if count else []

    def gt_file(self, video):
        path = self.gt_dir() / f'{video}.mat'
        if not path.is_file():
            raise DataFormatError(f'ground-truth file {path} does not exist')
        return path

    def mask_dir(self, video):
        """The pixel-mask folder of a test video, or None when it has none (masks are optional)."""
        folder = self.root / MASK_FOLDER / video
        return folder if folder.is_dir() else None

    def ground_truth_videos(self):
        names = sorted((p.stem for p in self.gt_dir().glob('*.mat') if not is_hidden(p)), key=natural_key)
        if not names:
            raise DataFormatError(f'{self.gt_dir()} holds no ground-truth .mat files')
        return names
