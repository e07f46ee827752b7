"""Evaluating saved clip scores without the model: the released ``utils.eval_video``.

``script_testing.py`` saves the clip scores of every test video as ``<OutRoot>/res_<setting>/<Video>.npy``. This
module reads them back with the prepared data set's ground truth and applies the released protocol
(:mod:`utils.eval`), so an evaluation can be repeated, or done on scores computed elsewhere, without a forward pass.

Which frame labels the clips take is read from the data set's index files when it has them (exactly what
``script_testing.py`` does, so both give the same AUC); without index files the clips are taken to be regular:
``clip_len`` frames starting every ``stride`` frames.
"""
from pathlib import Path

import numpy as np

from data.layout import SPLIT_FOLDERS, VideoLayout
from data.readers import DataFormatError, read_ground_truth
from data.video_datasets import VideoDatasetOneDir
from utils.eval import (VideoResult, align_labels, centre_frame_positions, centre_frames_from_clips, evaluate,
                        write_acc_txt, write_label_mats)
from utils.plots import write_score_plots
from utils.scoring import finite_scores


def has_index_files(layout):
    return any((layout.root / f'{name}_idx').is_dir() for name in SPLIT_FOLDERS['test'])


def centre_frames_of(layout, name, num_clips, clip_len, stride):
    """0-based centre frames of a test video's clips: from its index files, read as script_testing.py reads them
    (a clip of another length than ``clip_len`` is an error naming its file), or the regular positions."""
    if not has_index_files(layout):
        return centre_frame_positions(num_clips, clip_len, stride)
    clips = VideoDatasetOneDir.in_layout(layout, 'test', name, frame_num=clip_len)
    return centre_frames_from_clips(clips.frame_indices())


def load_scores(path):
    if not path.is_file():
        raise DataFormatError(f'score file {path} does not exist: run script_testing.py with the same flags first')
    try:
        scores = np.load(path, allow_pickle=False)
    except Exception as error:  # truncated or foreign bytes
        raise DataFormatError(f'{path} is not a readable .npy file ({type(error).__name__})') from None
    if scores.ndim != 1 or not np.issubdtype(scores.dtype, np.number) or np.iscomplexobj(scores):
        raise DataFormatError(f'{path} must hold a 1-D array of real clip scores, found {scores.dtype} of shape '
                              f'{scores.shape}')
    return finite_scores(scores, str(path), cause='the file is damaged, or its model\'s output was not finite')


def saved_video_results(data_path, res_path, clip_len=16, stride=1):
    """(:class:`VideoResult` list, frame labels by video, centre frames by video) of the saved scores."""
    layout = VideoLayout(data_path)
    videos, frame_labels, centres = [], {}, {}
    for name in layout.ground_truth_videos():
        scores = load_scores(Path(res_path) / f'{name}.npy')
        frame_labels[name] = read_ground_truth(layout.gt_file(name))
        centres[name] = centre_frames_of(layout, name, len(scores), clip_len, stride)
        if len(centres[name]) != len(scores):
            raise DataFormatError(f'{Path(res_path) / f"{name}.npy"} holds {len(scores)} clip scores, but {name} '
                                  f'has {len(centres[name])} clips')
        labels = align_labels(frame_labels[name], centres[name], f'{name} ({layout.gt_file(name)})')
        videos.append(VideoResult(name, scores, labels))
    return videos, frame_labels, centres


def eval_video(data_path, res_path, is_show=False, clip_len=16, stride=1):
    """The released entry point: evaluate the ``<Video>.npy`` scores in ``res_path`` against the ground truth of
    the prepared data set at ``data_path`` (``<DataRoot>/<Dataset>``); write ``acc.txt`` and the released label
    ``.mat`` files into ``res_path``, print and return the AUC (a float). ``is_show`` draws the regularity curves
    and the ROC under ``<res_path>/plots/``."""
    videos, frame_labels, centres = saved_video_results(data_path, res_path, clip_len, stride)
    evaluation = evaluate(videos)
    write_acc_txt(res_path, data_path, evaluation.auc)
    write_label_mats(res_path, videos)
    if is_show:
        write_score_plots(res_path, videos, frame_labels, centres, evaluation)
    print(f'AUC: {evaluation.auc}')
    return evaluation.auc
