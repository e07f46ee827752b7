"""Score one video you bring, without preparing a data set: ``script_testing.py --Video PATH``.

    python script_testing.py --ModelName MemAE --ModelSetting Conv3DSpar --Dataset UCSD_P2_256 \
        --MemDim 2000 --EntropyLossWeight 0.0002 --ShrinkThres 0.0025 --Seed 1 --Video street.mp4 [--Plots True]

PATH is a video file that PyAV decodes or a folder of frame images (natural name order). Its frames are prepared
on the fly exactly as ``data.prepare_video`` prepares a data set (:mod:`data.frame_stream`) at the model's frame
size: ``--VideoSize H W``, else the size in ``<DataRoot>/<Dataset>/prepare.json`` (the data the model was
trained on), else 256 x 256 (the released preparation). Clips of ``--FrameNum`` frames at stride 1 are scored
with the model's released score (``--ScoreType``), as ``script_testing.py`` scores a test set, by windows of
``--ClipWindow`` clips (``0``: every clip through the whole model, ``--BatchSize`` at a time). The video streams:
only one window of frames is held at a time.

Outputs in ``<OutRoot>/video_<name>/``:

* ``frame_scores.csv`` (``frame,source_file,clip,error,regularity`` for a folder of frames,
  ``frame,time_s,clip,error,regularity`` for a video file), ``error.npy`` and ``regularity.npy``: one value per
  frame. Frames and clips are numbered from 0, as the files of a frame folder sort (``frame`` 0 is the first file;
  ``source_file`` names it; ``time_s`` is the frame's time in a movie, frame / frame rate). A frame takes the score
  of the clip centred on it (centre = position ``FrameNum // 2``, as the frame labels of the test protocol); the
  first ``FrameNum // 2`` and last ``FrameNum - 1 - FrameNum // 2`` frames have no such clip and take the nearest
  clip's value (the ``clip`` column says which). Regularity is the released
  per-video min-max of the clip errors, ``1 - (e - min e) / (max e - min e)`` (1 everywhere if they are constant);
* ``clip_scores.npy`` (one raw error per clip, like the ``res_<setting>/<Video>.npy`` of a test set);
* ``score_curve.png``; ``results.json`` (what was scored, how, how fast, the most anomalous frames);
  ``opt.txt`` / ``opt.json``;
* with a calibration (``<weights>_calibration.json`` from ``--Calibrate True`` on normal footage, or
  ``--Calibration``; utils/calibration.py): ``frame_scores.csv`` gains ``tail_probability`` (the share of
  normal clip errors at or above the frame's) and ``anomalous`` (1 when the frame's error exceeds the threshold
  of ``--FalseAlarmRate``); ``events.csv`` / ``events.json`` list the runs of anomalous frames (``--EventMinFrames``,
  ``--EventMergeGap``) by first and last frame and their file names or times; ``decisions.png`` draws the errors,
  the threshold and the events;
* with ``--Plots True``: ``most_anomalous.png`` (the most anomalous frames, at least ``FrameNum`` frames apart,
  with their error heat map laid over them) and ``overlay.mp4``, the whole video with the heat map (PyAV;
  without an MP4 encoder ``overlay.gif``, the ``GIF_FRAMES`` frames around the most anomalous one). Heat maps
  are the per-pixel L2 error of each clip's centre frame; their colour scale is shared by the whole video (the
  largest per-frame 99.5th percentile), so a bright region is bright relative to the rest of the video. The maps
  wait on disk (float16, 2 bytes per pixel per frame) until the video has been scored, then are deleted.
"""
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.frame_stream import frame_image_files, prepared_frames
from data.movies import DEFAULT_RATE, movie_rate, write_movie
from data.readers import DataFormatError
from data.video_datasets import normalised_frames
from utils.calibration import (Calibration, anomaly_events, calibration_mismatch, calibration_path,
                               chosen_calibration, mismatch_warning, source_kind, weights_sha256)
from utils.decision_rules import rule_statistics
from utils.errors import InputError
from utils.eval import regularity
from utils.files import read_json, save_image, save_npy, write_csv, write_json, writing
from utils.plots import heat_overlay, plot_anomalous_frames, plot_decisions, plot_video_scores
from utils.runtime import autocast, memory_layout
from utils.scoring import finite_scores, frame_window_scorer, resolve_score_type, score_windows, window_batch

DEFAULT_FRAME_SIZE = (256, 256)  # what the released preparation (and data.prepare_video) resizes to
PICKS = 4                        # frames in most_anomalous.png
HEAT_PERCENTILE = 99.5           # per frame; the largest over the video sets the heat maps' colour scale
GIF_FRAMES = 200                 # overlay.gif (no MP4 encoder): the frames around the most anomalous one
# every file a --Video run may write besides results.json: the only names an earlier run's list can remove
VIDEO_OUTPUTS = ('frame_scores.csv', 'error.npy', 'regularity.npy', 'clip_scores.npy', 'score_curve.png', 'events.csv',
                 'events.json', 'decisions.png', 'overlay.mp4', 'overlay.gif', 'most_anomalous.png')


@dataclass
class Pick:
    """A frame shown in most_anomalous.png (numbered from 0, as frame_scores.csv)."""
    frame: int
    regularity: float
    error: float
    image: np.ndarray = None
    overlay: np.ndarray = None


MAX_FRAME_SIDE = 16384  # a prepared size beyond this is a damaged prepare.json, not a camera


def video_frame_size(opt):
    """(H, W) to prepare the video's frames at, and where that size came from."""
    if opt.VideoSize:
        return tuple(opt.VideoSize), '--VideoSize'
    summary = Path(opt.DataRoot) / opt.Dataset / 'prepare.json'
    if summary.is_file():
        size = read_json(summary, 'the summary of a preparation').get('size')
        if not (isinstance(size, list) and len(size) == 2
                and all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_FRAME_SIDE for n in size)):
            raise DataFormatError(f'{summary} holds no frame size ("size": [H, W], whole numbers from 1 to '
                                  f'{MAX_FRAME_SIDE}); pass --VideoSize H W')
        return tuple(size), str(summary)
    return DEFAULT_FRAME_SIZE, f'the released preparation (no {summary}; --VideoSize H W sets another)'


def video_name(path):
    path = Path(path)
    return path.name if path.is_dir() else path.stem


def frame_windows(frames, clip_len, clips_per_window, device):
    """``(positions, frames)`` windows over a stream of uint8 H x W x C frames, as
    :meth:`data.video_datasets.PreloadedVideo.windows` yields them: clip ``i`` of a window is its frames ``i .. i +
    clip_len - 1``; consecutive windows share ``clip_len - 1`` frames; at most one window of frames is held."""
    held, first, seen = [], 0, 0
    span = clips_per_window + clip_len - 1
    for frame in frames:
        held.append(frame)
        seen += 1
        if len(held) == span:
            yield range(first, first + clips_per_window), window_tensor(held, device)
            first += clips_per_window
            held = held[clips_per_window:]
    if len(held) >= clip_len:
        yield range(first, first + len(held) - clip_len + 1), window_tensor(held, device)
    elif first == 0:
        raise DataFormatError(f'the video has {seen} frames, fewer than the {clip_len} of one clip (--FrameNum)')


def window_tensor(frames, device):
    """uint8 H x W x C frames -> F x C x H x W floats in [-1, 1] on ``device``."""
    return normalised_frames(torch.from_numpy(np.stack(frames)).to(device)).permute(0, 3, 1, 2)


class ErrorMapStore:
    """The clips' centre error maps, appended to a float16 file as they come (``--Plots``), and each map's
    ``HEAT_PERCENTILE``-th percentile."""

    def __init__(self, path):
        self.path = Path(path)
        with writing(self.path):
            self.file = self.path.open('wb')
        self.shape, self.levels = None, []

    def add(self, error_maps):
        self.shape = error_maps.shape[1:]
        self.levels += np.percentile(error_maps.reshape(len(error_maps), -1), HEAT_PERCENTILE, axis=1).tolist()
        with writing(self.path):
            self.file.write(np.ascontiguousarray(error_maps, dtype=np.float16).tobytes())

    def maps(self):
        self.file.close()
        return np.memmap(self.path, dtype=np.float16, mode='r', shape=(len(self.levels), *self.shape))

    def scale(self):
        return max(max(self.levels), 1e-6)


def frame_clips(num_frames, num_clips, clip_len):
    """The 0-based clip whose score each frame takes: the clip centred on it, else the nearest one."""
    return np.clip(np.arange(num_frames) - clip_len // 2, 0, num_clips - 1)


def most_anomalous(per_frame_regularity, per_frame_error, clips_of_frames, clip_len, count=PICKS):
    """Up to ``count`` frames with the lowest regularity, among frames that are their own clip's centre, at
    least ``clip_len`` frames apart."""
    own = np.flatnonzero(np.arange(len(clips_of_frames)) - clip_len // 2 == clips_of_frames)
    picks = []
    for frame in own[np.argsort(per_frame_regularity[own], kind='stable')]:
        if all(abs(frame - pick.frame) >= clip_len for pick in picks):
            picks.append(Pick(int(frame), float(per_frame_regularity[frame]), float(per_frame_error[frame])))
            if len(picks) == count:
                break
    return picks


def frame_sources(path, num_frames):
    """(column name, one value per frame): the file name of each frame of a folder, or each frame's time in
    seconds in a video file."""
    path = Path(path)
    if path.is_dir():
        return 'source_file', [file.name for file in frame_image_files(path)][:num_frames]
    rate = movie_rate(path, DEFAULT_RATE)
    return 'time_s', [f'{frame / rate:.3f}' for frame in range(num_frames)]


def write_frame_scores(folder, sources, clips_of_frames, error, regular, decisions=None):
    """frame_scores.csv, error.npy, regularity.npy; ``sources`` as :func:`frame_sources` gives them; with
    ``decisions`` (a :class:`Decisions`) three more columns."""
    save_npy(folder / 'error.npy', error)
    save_npy(folder / 'regularity.npy', regular)
    column, sources = sources
    header = ['frame', column, 'clip', 'error', 'regularity',
              *(['tail_probability', 'anomalous', 'statistic'] if decisions else [])]
    rows = [[f, source, c, repr(float(e)), repr(float(p)),
             *([repr(float(decisions.tail[f])), int(decisions.anomalous[f]), repr(float(decisions.statistic[f]))]
               if decisions else [])]
            for f, (source, c, e, p) in enumerate(zip(sources, clips_of_frames, error, regular))]
    write_csv(folder / 'frame_scores.csv', header, rows)


def calibration_signature(opt, score, size):
    """The options a clip error depends on (beyond the weights): a calibration holds only for the same ones."""
    return {'setting': opt.setting, 'score': score, 'FrameNum': opt.FrameNum, 'ImgChnNum': opt.ImgChnNum,
            'frame_size': list(size), 'AMP': opt.AMP}


@dataclass
class CheckedCalibration:
    """A calibration that holds for this run (its weights and options), the decision rule (--DecisionRule,
    --BaselineClips) and its threshold at ``false_alarm_rate`` (--FalseAlarmRate)."""
    file: Path
    calibration: Calibration
    false_alarm_rate: float
    threshold: float
    rule: str = 'global'
    baseline_clips: int = None

    def mismatch(self, what, kind, first_errors):
        """The warning (for the caller to print and to keep in results.json) when footage ``what`` of kind ``kind``
        whose first clips have the raw ``first_errors`` looks unlike the calibration's; else None."""
        reasons = calibration_mismatch(self.calibration, first_errors, kind)
        return mismatch_warning(what, self.file.name, reasons, self.rule) if reasons else None


@dataclass
class Decisions:
    """Per frame: the rule's statistic, its tail probability and the decision under a :class:`CheckedCalibration`;
    the events."""
    checked: CheckedCalibration
    statistic: np.ndarray
    tail: np.ndarray
    anomalous: np.ndarray
    events: list


def checked_calibration(opt, weights, score, size):
    """The :class:`CheckedCalibration` to decide with (see :func:`utils.calibration.chosen_calibration`), or None;
    loaded and checked before anything is scored, so that a refusal comes first."""
    path = chosen_calibration(opt.Calibration, weights)
    if path is None:
        return None
    calibration = Calibration.load(path, calibration_signature(opt, score, size), weights_sha256(weights),
                                   opt.DecisionRule, opt.BaselineClips)
    return CheckedCalibration(path, calibration, opt.FalseAlarmRate,
                              calibration.threshold(opt.FalseAlarmRate, opt.DecisionRule), opt.DecisionRule,
                              opt.BaselineClips)


def decide(opt, checked, clip_errors, clips_of_frames):
    """The :class:`Decisions` for a video's clip errors (read in order by the rule) under a
    :class:`CheckedCalibration`; frame f takes clip ``clips_of_frames[f]``'s."""
    statistic, flagged = rule_statistics(checked.rule, checked.baseline_clips, clip_errors, checked.threshold)
    statistic, anomalous = statistic[clips_of_frames], flagged[clips_of_frames]
    return Decisions(checked, statistic, checked.calibration.tail_probability(statistic, checked.rule), anomalous,
                     anomaly_events(anomalous, opt.EventMinFrames, opt.EventMergeGap))


def write_events(folder, sources, decisions):
    """events.csv (one row per event: its first and last frame, their file names or times, ``sources`` as
    :func:`frame_sources` gives them) and events.json."""
    column, sources = sources
    write_csv(folder / 'events.csv', ['event', 'first_frame', 'last_frame', 'frames', f'first_{column}',
                                      f'last_{column}'],
              [[k, first, last, last - first + 1, sources[first], sources[last]]
               for k, (first, last) in enumerate(decisions.events)])
    write_json(folder / 'events.json', {
        'calibration': str(decisions.checked.file), 'false_alarm_rate': decisions.checked.false_alarm_rate,
        'rule': decisions.checked.rule, 'baseline_clips': decisions.checked.baseline_clips,
        'threshold': decisions.checked.threshold, 'anomalous_frames': int(decisions.anomalous.sum()),
        'events': [{'first_frame': first, 'last_frame': last, f'first_{column}': sources[first],
                    f'last_{column}': sources[last]} for first, last in decisions.events]})


def write_overlays(folder, opt, size, store, clips_of_frames, picks):
    """overlay.mp4 (or overlay.gif) and the picks' images, from a second pass over the video's frames; returns
    the movie's file name."""
    maps, scale = store.maps(), store.scale()
    picked = {pick.frame: pick for pick in picks}
    peak = picks[0].frame
    gif = []

    def overlays():
        for f, frame in enumerate(prepared_frames(opt.Video, size, opt.ImgChnNum)):
            image = heat_overlay(frame, maps[clips_of_frames[f]], scale)
            if f in picked:
                picked[f].image, picked[f].overlay = frame, image
            if abs(f - peak) < GIF_FRAMES // 2:
                gif.append(image)
            yield image

    fps = movie_rate(opt.Video, DEFAULT_RATE)
    if write_movie(folder / 'overlay.mp4', overlays(), fps):
        return 'overlay.mp4'
    gif.clear()
    for _ in overlays():  # no encoder: the frames around the peak as a GIF
        pass
    save_image(Image.fromarray(gif[0]), folder / 'overlay.gif', save_all=True,
               append_images=[Image.fromarray(g) for g in gif[1:]], duration=round(1000 / fps), loop=0)
    return 'overlay.gif'


def video_clip_scores(opt, model, device, memory_model, size, score, store=None):
    """The raw error of every clip of ``opt.Video`` (prepared at ``size``) and the seconds it took; ``store``
    (an :class:`ErrorMapStore`) receives the clips' centre error maps."""
    memory_format = memory_layout(opt.ChannelsLast)
    scorer = frame_window_scorer(model, opt, memory_format)
    started = time.perf_counter()
    with torch.inference_mode(), autocast(device, opt.AMP):
        windows = frame_windows(prepared_frames(opt.Video, size, opt.ImgChnNum), opt.FrameNum,
                                opt.ClipWindow or opt.BatchSize, device)
        scores = finite_scores(score_windows(scorer, windows, opt.FrameNum, score, memory_model, window_batch(opt),
                                             memory_format, store.add if store else None), f'--Video {opt.Video}')
    return scores, time.perf_counter() - started


def save_calibration(opt, weights, errors, source, score, size, kind):
    """The normal clip ``errors`` (from ``source``, footage of kind ``kind``; a list of one array per video) as a
    calibration file beside the weights (or at --Calibration), with the rules' statistics for --BaselineClips and a
    line that gives its threshold at --FalseAlarmRate; returns the file's path."""
    calibration = Calibration.from_errors(errors, source, calibration_signature(opt, score, size),
                                          weights_sha256(weights), opt.BaselineClips, kind)
    path = Path(opt.Calibration) if opt.Calibration else calibration_path(weights)
    calibration.save(path)
    at_rate = (f'at --FalseAlarmRate {opt.FalseAlarmRate:g} the threshold of --DecisionRule {opt.DecisionRule} is '
               f'{calibration.threshold(opt.FalseAlarmRate, opt.DecisionRule):.6g}'
               if opt.FalseAlarmRate >= calibration.resolution
               else f'too few clips for --FalseAlarmRate {opt.FalseAlarmRate:g}: it resolves rates from '
                    f'{calibration.resolution:g}; calibrate on more normal footage for smaller ones')
    print(f'calibration from {calibration.clips} normal clips of {source} -> {path}; {at_rate}')
    return path


def calibrate_on_video(opt, model, weights, device, memory_model):
    """--Calibrate True: the errors of ``opt.Video`` (normal footage) as a calibration file; returns its path."""
    size, size_origin = video_frame_size(opt)
    score = resolve_score_type(opt.ScoreType, opt.ModelName)
    print(f'--Video {opt.Video} (normal footage, --Calibrate): frames at {size[0]} x {size[1]} (from {size_origin})')
    scores, _ = video_clip_scores(opt, model, device, memory_model, size, score)
    return save_calibration(opt, weights, [scores], opt.Video, score, size, source_kind(opt.Video))


def earlier_outputs(folder):
    """The outputs an earlier run listed in ``folder``'s results.json (none if it has none, or a damaged one),
    of :data:`VIDEO_OUTPUTS` only: an edited list cannot make a run remove other files (``../x``, ``..\\x``)."""
    path = Path(folder) / 'results.json'
    try:
        outputs = read_json(path, 'the results of an earlier run').get('outputs')
    except InputError:  # none (cannot be read) or damaged
        return []
    return [name for name in outputs if name in VIDEO_OUTPUTS] if isinstance(outputs, list) else []


def remove_outputs(folder, names):
    """Remove the outputs ``names`` of an earlier run from ``folder``: a new run's folder holds its own alone."""
    for name in names:
        (Path(folder) / name).unlink(missing_ok=True)


FLAT_ERRORS = 0.05  # clip errors spanning less than this share of their level: the min-max curve shows noise


def flat_error_warning(scores, opt, size):
    """Prints the raw clip errors' range, which the 0-1 regularity curve hides, and warns when they hardly vary:
    min-max normalisation then magnifies noise into a curve, as with weights trained on other footage or another
    frame size, which score every frame alike. Returns the warnings (for results.json)."""
    low, high = float(np.min(scores)), float(np.max(scores))
    level = abs(float(np.mean(scores))) or 1.0
    print(f'raw clip errors from {low:.6g} to {high:.6g} (the regularity curve maps this range to 1 .. 0)')
    if high - low >= FLAT_ERRORS * level:
        return []
    warning = (f'the clip errors span only {(high - low) / level:.1%} of their level: the '
               f'regularity curve shows noise, not events; the weights ({opt.setting}) were trained on --Dataset '
               f'{opt.Dataset} at {size[0]} x {size[1]}: if that is other footage, train or calibrate on this '
               f'camera\'s normal footage')
    print(f'warning: {warning}')
    return [warning]


def score_single_video(opt, options, model, weights, device, memory_model):
    """Score ``opt.Video`` with the (eval-mode) model; write the outputs of the module docstring; returns the
    output folder. Outputs an earlier run left in the folder that this one does not write are removed at the end
    (a movie overlay beside another run's scores would describe that run)."""
    size, size_origin = video_frame_size(opt)
    folder = Path(opt.OutRoot) / f'video_{video_name(opt.Video)}'
    earlier = earlier_outputs(folder)
    options.save(opt, folder)
    score = resolve_score_type(opt.ScoreType, opt.ModelName)
    checked = checked_calibration(opt, weights, score, size)
    store = ErrorMapStore(folder / 'error_maps.f16') if opt.Plots else None
    print(f'--Video {opt.Video}: frames at {size[0]} x {size[1]} (from {size_origin}), {opt.ImgChnNum} channel(s)')
    decisions = None
    try:
        scores, seconds = video_clip_scores(opt, model, device, memory_model, size, score, store)
        warnings = flat_error_warning(scores, opt, size)
        num_frames = len(scores) + opt.FrameNum - 1
        clips_of_frames = frame_clips(num_frames, len(scores), opt.FrameNum)
        error, regular = scores[clips_of_frames], regularity(scores)[clips_of_frames]
        save_npy(folder / 'clip_scores.npy', scores)
        outputs = ['frame_scores.csv', 'error.npy', 'regularity.npy', 'clip_scores.npy', 'score_curve.png']
        sources = frame_sources(opt.Video, num_frames)
        if checked:
            mismatch = checked.mismatch(f'--Video {opt.Video}', source_kind(opt.Video),
                                        scores[:opt.BaselineClips])
            if mismatch:
                print(f'warning: {mismatch}')
                warnings.append(mismatch)
            decisions = decide(opt, checked, scores, clips_of_frames)
            write_events(folder, sources, decisions)
            plot_decisions(folder / 'decisions.png', video_name(opt.Video), decisions.statistic, checked.threshold,
                           decisions.events, opt.FrameNum, checked.rule)
            outputs += ['events.csv', 'events.json', 'decisions.png']
        write_frame_scores(folder, sources, clips_of_frames, error, regular, decisions)
        picks = most_anomalous(regular, error, clips_of_frames, opt.FrameNum)
        plot_video_scores(folder / 'score_curve.png', video_name(opt.Video), regular, picks, opt.FrameNum)
        if store:
            outputs += [write_overlays(folder, opt, size, store, clips_of_frames, picks), 'most_anomalous.png']
            plot_anomalous_frames(folder / 'most_anomalous.png', picks)
    finally:
        if store:
            store.file.close()
            store.path.unlink(missing_ok=True)
    write_json(folder / 'results.json', {
        'video': str(opt.Video), 'frames': int(num_frames), 'clips': int(len(scores)), 'frame_size': list(size),
        'frame_size_from': size_origin, 'channels': opt.ImgChnNum, 'setting': opt.setting, 'weights': str(weights),
        'score': score, 'seconds': seconds, 'clips_per_second': len(scores) / seconds, 'device': str(device),
        'most_anomalous_frames': [{k: v for k, v in asdict(p).items() if k in ('frame', 'regularity', 'error')}
                                  for p in picks],
        'calibration': None if decisions is None else {
            'file': str(checked.file), 'false_alarm_rate': checked.false_alarm_rate, 'rule': checked.rule,
            'baseline_clips': checked.baseline_clips, 'threshold': checked.threshold,
            'anomalous_frames': int(decisions.anomalous.sum()), 'events': len(decisions.events),
            'out_of_calibration': mismatch},
        'error_range': [float(scores.min()), float(scores.max())], 'warnings': warnings,
        'outputs': outputs, 'options': vars(opt)}, sort_keys=True, default=str)
    remove_outputs(folder, set(earlier) - set(outputs))
    decided = '' if decisions is None else (f'; {int(decisions.anomalous.sum())} frames above the threshold at '
                                            f'--FalseAlarmRate {opt.FalseAlarmRate:g}, {len(decisions.events)} '
                                            f'event(s)')
    print(f'{num_frames} frames, {len(scores)} clips in {seconds:.1f} s; most anomalous frame '
          f'{picks[0].frame} (regularity {picks[0].regularity:.3f}){decided} -> {folder}')
    return folder
