"""The registry that maps ``--Dataset`` to the dataset class that reads it.

The video data sets of the paper are prepared into the layout of :mod:`data.layout` under these names. A folder
of another name under ``--DataRoot`` that has that layout is accepted as a video data set too, so that users can
prepare their own footage.
"""
from pathlib import Path

from data.layout import SPLIT_FOLDERS
from data.video_datasets import VideoDataset
from utils.errors import InputError

DATASETS = {
    'UCSD_P2_256': VideoDataset,
    'UCSD_P1_256': VideoDataset,
    'Avenue_256': VideoDataset,
    'ShanghaiTech_256': VideoDataset,
}


def _is_prepared_video_folder(folder):
    return any((folder / f'{name}_idx').is_dir() for names in SPLIT_FOLDERS.values() for name in names)


def dataset_class(name, data_root):
    """The dataset class for ``--Dataset name``; an unknown name that is no prepared folder is an error."""
    if name in DATASETS:
        return DATASETS[name]
    if _is_prepared_video_folder(Path(data_root) / name):
        return VideoDataset
    raise InputError(f"unknown --Dataset {name!r}: valid names are {', '.join(DATASETS)}, or the name of a prepared "
                     f"video folder under --DataRoot {data_root}")
