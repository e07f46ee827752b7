"""Live scoring: ``script_testing.py <model flags> --Stream SOURCE`` (beyond the paper; docs/DEPLOYMENT.md).

Frames arrive one at a time (data/live_frames.py: a video file read at its frame rate, a URL, a capture device,
or a folder that is being filled). As soon as the newest ``--FrameNum`` frames exist, their clip is scored with
the model's score, as ``--Video`` scores it, and the frames that clip settles are decided and written. Frame ``t``
takes the error of the clip centred on it, clip ``t - FrameNum // 2`` (the rule of ``--Video`` and of the test
protocol's labels), so its decision comes out once frame ``t + FrameNum - 1 - FrameNum // 2`` has arrived: half a
clip later (7 frames for 16-frame clips). The first ``FrameNum // 2`` frames come out with the first clip; when
the stream ends (the source ends, Ctrl-C or SIGTERM, an unreadable frame) the frames after the last clip's centre
take the last clip's error. So the streamed decisions are those ``--Video`` makes on the same frames. They use the
calibration (``--Calibrate``; a stream needs one) and past frames only: the paper's per-video min-max regularity
needs the whole video and is not computed.

Outputs in ``<OutRoot>/stream_<name>/``:

* ``frame_scores.csv``: one row per frame as soon as it is decided, flushed, ``frame,<source_file|time_s>,clip,
  error,tail_probability,anomalous`` (``--Video``'s columns without ``regularity``);
* once the stream has ended: ``events.csv``, ``events.json`` and ``decisions.png`` (as ``--Video`` writes them) and
  ``results.json`` (frames, clips, how it ended, the rates and the lag below); ``opt.txt`` / ``opt.json`` from the
  start.

While it runs it prints a line when an event starts (its run of anomalous frames is ``--EventMinFrames`` long)
and a status line every ``STATUS_CLIPS`` clips: the frames per second it scores against those the source delivers,
and the lag, the seconds from the arrival of the newest frame a decision needed to the decision. A model slower
than its source falls behind: the lag grows, and the status line says so.
"""
import re
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data.live_frames import is_folder_source, live_frames
from data.readers import DataFormatError
from models.clip_overlap import PerClipModel
from utils.calibration import anomaly_events, calibration_path
from utils.errors import InputError
from utils.files import write_json
from utils.interrupts import Interrupted, signal_number
from utils.plots import plot_decisions
from utils.runtime import autocast, compile_model, memory_layout
from utils.scoring import finite_scores, resolve_score_type, score_windows, window_batch
from utils.single_video import checked_calibration, decide, video_frame_size, window_tensor, write_events

STATUS_CLIPS = 250  # clips between status lines (10 s of a 25 frames/s source)


@dataclass
class FrameDecision:
    frame: int
    clip: int
    error: float
    tail_probability: float
    anomalous: bool


class LiveDecisions:
    """Per-frame decisions from clip errors that arrive one at a time, by the frame-to-clip rule of
    :func:`utils.single_video.frame_clips`, under a :class:`utils.single_video.CheckedCalibration`; and the events
    (:func:`utils.calibration.anomaly_events`) as they start."""

    def __init__(self, clip_len, checked, min_frames, merge_gap):
        self.centre = clip_len // 2
        self.checked = checked
        self.min_frames, self.merge_gap = min_frames, merge_gap
        self.clip_errors, self.events = [], []
        self.errors, self.anomalous = [], []  # per decided frame

    def add_clip(self, error):
        """The decisions clip ``len(self.clip_errors)`` (its error ``error``) settles: its centre frame, and
        for the first clip the frames before it too."""
        self.clip_errors.append(float(error))
        clip = len(self.clip_errors) - 1
        return self._decide_through(clip + self.centre, clip)

    def finish(self, num_frames):
        """The decisions of the frames after the last clip's centre, when the stream ended after ``num_frames``."""
        return self._decide_through(num_frames - 1, len(self.clip_errors) - 1) if self.clip_errors else []

    def _decide_through(self, last_frame, clip):
        error = self.clip_errors[clip]
        tail = float(self.checked.calibration.tail_probability([error])[0])
        anomalous = bool(error > self.checked.threshold)
        decided = [FrameDecision(frame, clip, error, tail, anomalous)
                   for frame in range(len(self.anomalous), last_frame + 1)]
        self.errors += [error] * len(decided)
        self.anomalous += [anomalous] * len(decided)
        return decided

    def started_events(self):
        """The events that have become long enough since the last call, as (first, last frame so far) pairs. Frames
        added at the end only lengthen the last event or start new ones, so an event once started stays."""
        events = anomaly_events(self.anomalous, self.min_frames, self.merge_gap)
        started = events[len(self.events):]
        self.events = events
        return started


@dataclass
class StreamClock:
    """Arrival times of the frames, the seconds spent scoring, and the lag of each clip's decisions."""
    arrivals: list = field(default_factory=list)
    scoring_seconds: float = 0.0
    lags: list = field(default_factory=list)

    def source_rate(self):
        """Frames per second the source delivered (None before two frames)."""
        span = self.arrivals[-1] - self.arrivals[0] if len(self.arrivals) > 1 else 0
        return (len(self.arrivals) - 1) / span if span > 0 else None

    def scoring_rate(self):
        """Clips (= frames) per second of scoring."""
        return len(self.lags) / self.scoring_seconds if self.scoring_seconds > 0 else None

    def keeps_up(self):
        source, scoring = self.source_rate(), self.scoring_rate()
        return source is None or scoring is None or scoring >= source

    def status(self, frames):
        source, scoring = self.source_rate(), self.scoring_rate()
        rates = (f'scoring {scoring:.1f} frames/s' if scoring else 'scoring')
        rates += f', the source delivers {source:.1f}/s' if source else ''
        verdict = '' if self.keeps_up() else ': falling behind'
        return f'{frames} frames: {rates}; decisions {self.lags[-1]:.2f} s after their newest frame{verdict}'

    def as_dict(self):
        return {'source_frames_per_second': self.source_rate(), 'scoring_frames_per_second': self.scoring_rate(),
                'keeps_up': self.keeps_up(), 'scoring_seconds': self.scoring_seconds,
                'lag_seconds': {'last': self.lags[-1], 'mean': float(np.mean(self.lags)), 'max': max(self.lags)}
                if self.lags else None}


def stream_name(source):
    """The name of a stream's output folder: a folder's or file's name, else the source with only safe characters
    (``rtsp://cam.local/live`` -> ``cam.local_live``)."""
    path = Path(source)
    if path.is_dir():
        return path.name
    if path.is_file():
        return path.stem
    return re.sub(r'[^A-Za-z0-9._-]+', '_', str(source).split('://')[-1]).strip('_')[-80:] or 'stream'


def stopped_by(stop):
    """How a stream ended, in words, for results.json."""
    if isinstance(stop, (KeyboardInterrupt, Interrupted)):
        return signal_number(stop).name
    return f'{type(stop).__name__}: {stop}'


def stream_checked_calibration(opt, weights, score, size):
    checked = checked_calibration(opt, weights, score, size)
    if checked is None:
        raise InputError(f'--Stream decides with a calibration, and there is none beside the weights '
                         f'({calibration_path(weights).name}): write one with --Calibrate True on normal footage, or '
                         f'name one with --Calibration')
    return checked


class DecisionRows:
    """frame_scores.csv of a stream: the header at once, then each decided frame's row, flushed."""

    def __init__(self, path, column, labels):
        self.path, self.labels = path, labels
        self.file = path.open('w')
        self.file.write(f'frame,{column},clip,error,tail_probability,anomalous\n')
        self.file.flush()

    def write(self, decided):
        for d in decided:
            self.file.write(f'{d.frame},{self.labels[d.frame]},{d.clip},{d.error!r},{d.tail_probability!r},'
                            f'{int(d.anomalous)}\n')
        self.file.flush()


def score_stream(opt, options, model, weights, device, memory_model):
    """Score ``opt.Stream`` as its frames arrive with the (eval-mode) model; write the outputs of the module
    docstring; returns the output folder."""
    size, size_origin = video_frame_size(opt)
    score = resolve_score_type(opt.ScoreType, opt.ModelName)
    checked = stream_checked_calibration(opt, weights, score, size)
    folder = Path(opt.OutRoot) / f'stream_{stream_name(opt.Stream)}'
    options.save(opt, folder)
    memory_format = memory_layout(opt.ChannelsLast)
    scorer = compile_model(PerClipModel(model).to(memory_format=memory_format), opt.Compile)

    def clip_error(frames):
        window = [(range(0, 1), window_tensor(frames, device))]
        return finite_scores(score_windows(scorer, window, opt.FrameNum, score, memory_model, window_batch(opt),
                                           memory_format), f'--Stream {opt.Stream}')[0]

    decisions = LiveDecisions(opt.FrameNum, checked, opt.EventMinFrames, opt.EventMergeGap)
    clock, labels, held = StreamClock(), [], deque(maxlen=opt.FrameNum)
    column = 'source_file' if is_folder_source(opt.Stream) else 'time_s'
    rows = DecisionRows(folder / 'frame_scores.csv', column, labels)
    print(f'--Stream {opt.Stream}: frames at {size[0]} x {size[1]} (from {size_origin}); anomalous above an error '
          f'of {checked.threshold:.6g} (--FalseAlarmRate {opt.FalseAlarmRate:g}, {checked.file.name}) -> {rows.path}',
          flush=True)
    ended = 'the source ended'
    try:
        with rows.file, torch.inference_mode(), autocast(device, opt.AMP):
            for frame in live_frames(opt.Stream, size, opt.ImgChnNum, opt.StreamFormat):
                held.append(frame.pixels)
                labels.append(frame.label)
                clock.arrivals.append(frame.arrival)
                if len(held) < opt.FrameNum:
                    continue
                started = time.time()
                decided = decisions.add_clip(clip_error(list(held)))
                rows.write(decided)
                clock.scoring_seconds += time.time() - started
                clock.lags.append(time.time() - frame.arrival)
                if decided[-1].anomalous:
                    for first, _ in decisions.started_events():
                        print(f'event from frame {first} ({labels[first]})', flush=True)
                if len(clock.lags) % STATUS_CLIPS == 0:
                    print(clock.status(len(labels)), flush=True)
    except BaseException as stop:
        ended = stopped_by(stop)
        raise
    finally:
        if decisions.clip_errors:  # the frames after the last clip's centre, then the summaries
            with rows.path.open('a') as rows.file:
                rows.write(decisions.finish(len(labels)))
            final = write_stream_results(opt, folder, weights, checked, decisions, clock, (column, labels), size,
                                         score, ended)
        else:
            rows.path.unlink(missing_ok=True)
    if not decisions.clip_errors:
        raise DataFormatError(f'--Stream {opt.Stream} ended after {len(labels)} frames, fewer than the '
                              f'{opt.FrameNum} of one clip (--FrameNum)')
    print(f'{len(labels)} frames, {len(decisions.clip_errors)} clips; {len(final.events)} event(s); '
          f'{clock.status(len(labels))} -> {folder}')
    return folder


def write_stream_results(opt, folder, weights, checked, decisions, clock, sources, size, score, ended):
    """events.csv, events.json, decisions.png and results.json of a stream that has ended; returns its
    :class:`utils.single_video.Decisions`."""
    error = np.asarray(decisions.errors)
    final = decide(opt, checked, error)
    write_events(folder, sources, final)
    plot_decisions(folder / 'decisions.png', stream_name(opt.Stream), error, checked.threshold, final.events,
                   opt.FrameNum)
    write_json(folder / 'results.json', {
        'stream': str(opt.Stream), 'ended': ended, 'frames': len(decisions.anomalous),
        'clips': len(decisions.clip_errors), 'frame_size': list(size), 'setting': opt.setting,
        'weights': str(weights), 'score': score,
        'calibration': {'file': str(checked.file), 'false_alarm_rate': checked.false_alarm_rate,
                        'threshold': checked.threshold, 'anomalous_frames': int(final.anomalous.sum()),
                        'events': len(final.events)},
        **clock.as_dict(), 'outputs': ['frame_scores.csv', 'events.csv', 'events.json', 'decisions.png'],
        'options': vars(opt)}, sort_keys=True, default=str)
    return final
