"""The registry that maps ``--Dataset`` to how its data is read and which family of models it takes.

* video data sets (prepared by ``data.prepare_video``) are read clip by clip by :class:`VideoDataset`; a folder
  of another name under ``--DataRoot`` with that layout counts as a video data set too;
* image data sets (one-class protocol) are read whole by a loader returning :class:`ImageSplits`; a folder
  ``<DataRoot>/<name>/<class>/*.png`` of another name counts as one, if its images fit an architecture;
* KDDCUP99 is read by :func:`data.kdd.load_kdd`.
"""
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from data.image_sets import load_cifar10, load_image_folder, load_mnist
from data.kdd import load_kdd
from data.layout import SPLIT_FOLDERS, VideoLayout
from data.video_datasets import VideoDataset
from utils.errors import InputError


@dataclass(frozen=True)
class DatasetSpec:
    family: str                  # 'video', 'image' or 'tabular': which models and scripts' path apply
    reader: object               # video: the training Dataset class; otherwise a loader function
    arch: str = None             # image architecture of models.image_ae (None: from the images' shape)
    anomaly_ratio: float = None  # one-class protocols: anomalies in the test set (images) or flagged (KDD)
    summary_name: str = None     # one-class protocols: <summary_name>_summary.json in --OutRoot

    def video_training_set(self, opt):
        """A video data set's training clips under ``opt`` (--DataRoot, --Dataset, --ImgChnNum, --FrameNum), less
        the videos --HoldOutVideos keeps for calibration; and the names of those."""
        layout = VideoLayout(Path(opt.DataRoot) / opt.Dataset)
        held_out = layout.held_out(opt.HoldOutVideos)
        return self.reader(layout.index_dir('train'), layout.frames_dir('train'), channels=opt.ImgChnNum,
                           frame_num=opt.FrameNum, exclude=held_out), held_out


DATASETS = {
    'UCSD_P2_256': DatasetSpec('video', VideoDataset),
    'UCSD_P1_256': DatasetSpec('video', VideoDataset),
    'Avenue_256': DatasetSpec('video', VideoDataset),
    'ShanghaiTech_256': DatasetSpec('video', VideoDataset),
    'MNIST': DatasetSpec('image', load_mnist, arch='mnist', anomaly_ratio=0.3, summary_name='mnist'),
    'CIFAR10': DatasetSpec('image', load_cifar10, arch='cifar10', anomaly_ratio=0.3, summary_name='cifar10'),
    'KDDCUP99': DatasetSpec('tabular', load_kdd, anomaly_ratio=0.2, summary_name='kdd'),
}


def _is_prepared_video_folder(folder):
    return any((folder / f'{name}_idx').is_dir() for names in SPLIT_FOLDERS.values() for name in names)


def _is_image_folder(folder):
    return folder.is_dir() and any(p.is_dir() for p in folder.iterdir())


def family_of(name, data_root):
    """The family ('video', 'image' or 'tabular') of ``--Dataset name``, without raising: a name that is no data
    set counts as video here (the release's only family), and :func:`dataset_spec` reports it later."""
    try:
        return dataset_spec(name, data_root).family
    except (InputError, OSError):
        return 'video'


def dataset_spec(name, data_root):
    """The :class:`DatasetSpec` for ``--Dataset name``; an unknown name that is no usable folder is an error."""
    if name in DATASETS:
        return DATASETS[name]
    folder = Path(data_root) / name
    if _is_prepared_video_folder(folder):
        return DatasetSpec('video', VideoDataset)
    if _is_image_folder(folder):
        return DatasetSpec('image', partial(load_image_folder, name=name), anomaly_ratio=0.3,
                           summary_name=name.lower())
    raise InputError(f"unknown --Dataset {name!r}: valid names are {', '.join(DATASETS)}, or the name of a prepared "
                     f"video folder (or of a folder of class folders of images) under --DataRoot {data_root}")
