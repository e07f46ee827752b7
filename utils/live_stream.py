"""Live scoring: ``script_testing.py <model flags> --Stream SOURCE`` (beyond the paper; docs/DEPLOYMENT.md).

Frames arrive one at a time (data/live_frames.py: a video file read at its frame rate, a URL, a capture device,
or a folder that is being filled), read on a thread of their own (:class:`FrameQueue`), so the source never
waits for the model. As soon as the newest ``--FrameNum`` frames exist, their clip is scored with the model's
score, and the frames that clip settles are decided and written. Frames that arrived while a clip was being
scored are taken together (up to ``--ClipWindow`` of them, else ``--BatchSize``), and their clips are scored in
one window as ``--Video`` scores them (models/clip_overlap.py): a model somewhat slower per clip than the source
catches up that way instead of falling further behind. Frame ``t`` takes the error of the clip centred on it,
clip ``t - FrameNum // 2`` (the rule of ``--Video`` and of the test protocol's labels), so its decision comes out
once frame ``t + FrameNum - 1 - FrameNum // 2`` has arrived: half a clip later (7 frames for 16-frame clips). The
first ``FrameNum // 2`` frames come out with the first clip; when the stream ends (the source ends, Ctrl-C or
SIGTERM, an unreadable frame) the frames after the last clip's centre take the last clip's error. So the
streamed decisions are those ``--Video`` makes on the same frames. They use the calibration (``--Calibrate``; a
stream needs one) and past frames only: the paper's per-video min-max regularity needs the whole video and is not
computed.

Outputs in ``<OutRoot>/stream_<name>/``:

* ``frame_scores.csv``: one row per frame as soon as it is decided, flushed, ``frame,<source_file|time_s>,clip,
  error,tail_probability,anomalous`` (``--Video``'s columns without ``regularity``);
* once the stream has ended: ``events.csv``, ``events.json`` and ``decisions.png`` (as ``--Video`` writes them) and
  ``results.json`` (frames, clips, how it ended, the rates and the lag below); ``opt.txt`` / ``opt.json`` from the
  start.

While it runs it prints a line when an event starts (its run of anomalous frames is ``--EventMinFrames`` long)
and a status line every ``STATUS_CLIPS`` clips: the frames per second it scores against those the source delivers,
and the lag, the seconds from the arrival of the newest frame a decision needed to the decision. Every frame is
scored, none dropped: a model too slow for its source finds more frames waiting than one batch, its lag grows,
and the status line says *falling behind* (:class:`StreamClock`).
"""
import queue
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data.live_frames import is_folder_source, live_frames
from data.readers import DataFormatError
from utils.calibration import anomaly_events, calibration_path, source_kind
from utils.decision_rules import CausalRule, exceeds
from utils.errors import InputError
from utils.files import AppendedLines, cause_of, csv_line, make_folder, only_writer, write_json
from utils.interrupts import Interrupted, signal_number
from utils.plots import plot_decisions
from utils.runtime import autocast, memory_layout
from utils.scoring import finite_scores, frame_window_scorer, resolve_score_type, score_windows, window_batch
from utils.single_video import (checked_calibration, decide, frame_clips, remove_outputs, video_frame_size,
                                window_tensor, write_events)

STATUS_CLIPS = 250  # clips between status lines (10 s of a 25 frames/s source)
QUEUE_POLL_SECONDS = 0.2


@dataclass
class FrameDecision:
    frame: int
    clip: int
    error: float
    tail_probability: float
    anomalous: bool
    statistic: float


class LiveDecisions:
    """Per-frame decisions from clip errors that arrive one at a time, by the frame-to-clip rule of
    :func:`utils.single_video.frame_clips`, under a :class:`utils.single_video.CheckedCalibration` and its causal
    rule (utils/decision_rules.py); and the events (:func:`utils.calibration.anomaly_events`) as they start."""

    def __init__(self, clip_len, checked, min_frames, merge_gap):
        self.centre = clip_len // 2
        self.checked = checked
        self.rule = CausalRule(checked.rule, checked.baseline_clips)
        self.min_frames, self.merge_gap = min_frames, merge_gap
        self.clip_errors, self.clip_statistics, self.clip_flags, self.events = [], [], [], []
        self.anomalous = []  # per decided frame
        # Runs of anomalous frames before ``settled`` can no longer merge with later ones; their events are
        # ``settled_events``. Only the frames from ``settled`` on are looked at again, so a day-long stream costs
        # per clip what its last run of anomalies does, not what all its frames do.
        self.settled, self.settled_events = 0, []

    def add_clip(self, error):
        """The decisions clip ``len(self.clip_errors)`` (its error ``error``) settles: its centre frame, and
        for the first clip the frames before it too."""
        statistic = self.rule.statistic(error)
        flagged = exceeds(statistic, self.checked.threshold)
        self.rule.settle(error, flagged)
        self.clip_errors.append(float(error))
        self.clip_statistics.append(statistic)
        self.clip_flags.append(flagged)
        clip = len(self.clip_errors) - 1
        return self._decide_through(clip + self.centre, clip)

    def finish(self, num_frames):
        """The decisions of the frames after the last clip's centre, when the stream ended after ``num_frames``
        (after one clip at least: a stream of fewer frames has no decision)."""
        return self._decide_through(num_frames - 1, len(self.clip_errors) - 1)

    def _decide_through(self, last_frame, clip):
        error, statistic, anomalous = self.clip_errors[clip], self.clip_statistics[clip], self.clip_flags[clip]
        tail = float(self.checked.calibration.tail_probability([statistic], self.checked.rule)[0])
        decided = [FrameDecision(frame, clip, error, tail, anomalous, statistic)
                   for frame in range(len(self.anomalous), last_frame + 1)]
        self.anomalous += [anomalous] * len(decided)
        return decided

    def started_events(self):
        """The events that have become long enough since the last call, as (first, last frame so far) pairs. Frames
        added at the end only lengthen the last event or start new ones, so an event once started stays."""
        runs = [(self.settled + first, self.settled + last)  # merged, of any length
                for first, last in anomaly_events(self.anomalous[self.settled:], 1, self.merge_gap)]
        events = self.settled_events + [run for run in runs if run[1] - run[0] + 1 >= self.min_frames]
        started = events[len(self.events):]
        self.events = events
        if runs:  # more than merge_gap normal frames lie between the last run and every earlier one
            self.settled_events = events[:len(events) - (runs[-1] in events)]
            self.settled = runs[-1][0]
        return started


@dataclass
class StreamClock:
    """How many frames arrived and when the first and the last did, the seconds spent scoring, the lag of each
    clip's decisions, and the most frames found waiting after a batch. A scorer keeps up when it never finds more
    than one batch (``batch`` frames) waiting: frames that arrive while a batch is scored are taken together next,
    so a scorer somewhat slower per clip than the source keeps a bounded lag; one that is too slow finds the
    backlog growing."""
    batch: int
    frames: int = 0
    first_arrival: float = None
    last_arrival: float = None
    scoring_seconds: float = 0.0
    lags: list = field(default_factory=list)
    largest_backlog: int = 0
    statuses: int = 0  # the multiples of STATUS_CLIPS clips reached when a status line was last due

    def arrived(self, batch):
        """The frames of ``batch`` (:class:`data.live_frames.LiveFrame`) have arrived."""
        self.frames += len(batch)
        self.first_arrival = batch[0].arrival if self.first_arrival is None else self.first_arrival
        self.last_arrival = batch[-1].arrival

    def scored(self, clips, seconds, batch, waiting):
        """``clips`` clips were scored in ``seconds``; their newest frames are the last ``clips`` of ``batch``;
        ``waiting`` frames have arrived meanwhile."""
        self.scoring_seconds += seconds
        now = time.time()
        self.lags += [now - frame.arrival for frame in batch[len(batch) - clips:]]
        self.largest_backlog = max(self.largest_backlog, waiting)

    def status_due(self):
        """Whether another ``STATUS_CLIPS`` clips have been scored since the last status line."""
        reached = len(self.lags) // STATUS_CLIPS
        if reached <= self.statuses:
            return False
        self.statuses = reached
        return True

    def source_rate(self):
        """Frames per second the source delivered (None before two frames)."""
        span = self.last_arrival - self.first_arrival if self.frames > 1 else 0
        return (self.frames - 1) / span if span > 0 else None

    def scoring_rate(self):
        """Clips (= frames) per second of scoring."""
        return len(self.lags) / self.scoring_seconds if self.scoring_seconds > 0 else None

    def keeps_up(self):
        return self.largest_backlog <= self.batch

    def status(self, frames):
        source, scoring = self.source_rate(), self.scoring_rate()
        rates = (f'scoring {scoring:.1f} frames/s' if scoring else 'scoring')
        rates += f', the source delivers {source:.1f}/s' if source else ''
        verdict = '' if self.keeps_up() else f': falling behind ({self.largest_backlog} frames were waiting)'
        return f'{frames} frames: {rates}; decisions {self.lags[-1]:.2f} s after their newest frame{verdict}'

    def as_dict(self):
        return {'source_frames_per_second': self.source_rate(), 'scoring_frames_per_second': self.scoring_rate(),
                'keeps_up': self.keeps_up(), 'largest_backlog_frames': self.largest_backlog,
                'scoring_seconds': self.scoring_seconds,
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


class FrameQueue:
    """The frames of a source, read (and prepared) on a thread of their own, so that the source keeps being read
    while clips are scored: a frame's arrival is when it was read, not when the scorer got to it, and a scorer
    that is behind finds the frames that piled up and scores their clips together."""

    def __init__(self, frames, most, what):
        self.frames, self.most, self.what = frames, most, what
        self.queue, self.error = queue.SimpleQueue(), None
        self.thread = threading.Thread(target=self._read, name='stream reader', daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for frame in self.frames:
                self.queue.put(frame)
        except BaseException as error:  # handed to the main thread, which reports it
            self.error = error
        finally:
            self.queue.put(None)

    def batches(self):
        """Lists of up to ``most`` frames: those that have arrived, waiting for the first; ends with the source
        (raising the reader's error, if it had one)."""
        while True:
            batch = [self._wait_for_next()]
            while len(batch) < self.most and batch[-1] is not None and not self.queue.empty():
                batch.append(self.queue.get_nowait())  # this thread alone takes from the queue: it is there
            if batch[-1] is None:
                if batch[:-1]:
                    yield batch[:-1]
                if isinstance(self.error, OSError):  # the source went away (a folder deleted, a drive gone)
                    raise DataFormatError(f'{self.what} could not be read any more: {cause_of(self.error)}') \
                        from None
                if self.error is not None:
                    raise self.error
                return
            yield batch

    def waiting(self):
        """How many frames have arrived and wait to be scored."""
        return self.queue.qsize()

    def _wait_for_next(self):
        """The next frame, or None after the last, waited for in short polls: a get without a timeout would not
        let Ctrl-C reach the main thread on Windows before Python 3.14 (on POSIX it would)."""
        while True:
            try:
                return self.queue.get(timeout=QUEUE_POLL_SECONDS)
            except queue.Empty:
                continue


STREAM_OUTPUTS = ('frame_scores.csv', 'events.csv', 'events.json', 'decisions.png')


class DecisionRows:
    """frame_scores.csv of a stream, started once the source has delivered frames (a source that does not open
    leaves an earlier stream's outputs as they were; from then on they would describe another run, so they go),
    then each decided frame's row, flushed; a failed write is one sentence naming the file."""

    def __init__(self, folder, column, labels):
        self.folder, self.path, self.column, self.labels = folder, folder / 'frame_scores.csv', column, labels
        self.file = None

    def start(self):
        remove_outputs(self.folder, [*STREAM_OUTPUTS, 'results.json'])
        self.file = AppendedLines(self.path, [csv_line(['frame', self.column, 'clip', 'error', 'tail_probability',
                                                        'anomalous', 'statistic'])])

    def write(self, decided):
        for d in decided:
            self.file.write_line(csv_line([d.frame, self.labels[d.frame], d.clip, repr(d.error),
                                           repr(d.tail_probability), int(d.anomalous), repr(d.statistic)]))
        self.file.flush()

    def close(self):
        self.file.close()


def score_stream(opt, options, model, weights, device, memory_model):
    """Score ``opt.Stream`` as its frames arrive with the (eval-mode) model; write the outputs of the module
    docstring; returns the output folder."""
    size, size_origin = video_frame_size(opt)
    score = resolve_score_type(opt.ScoreType, opt.ModelName)
    checked = stream_checked_calibration(opt, weights, score, size)
    folder = make_folder(Path(opt.OutRoot) / f'stream_{stream_name(opt.Stream)}')
    with only_writer(folder, f'--Stream {opt.Stream}'):
        return stream_into(folder, opt, options, weights, checked, size, size_origin, score, model, device,
                           memory_model)


def say(line):
    """Print a line of a running stream at once: its reader may be a pipe (a log, a watcher), which Python fills
    before passing anything on, and a line about a frame is news only while the frame is recent."""
    print(line, flush=True)


def stream_into(folder, opt, options, weights, checked, size, size_origin, score, model, device, memory_model):
    """:func:`score_stream` once ``folder`` is this process's to write."""
    memory_format = memory_layout(opt.ChannelsLast)
    scorer = frame_window_scorer(model, opt, memory_format)

    def clip_errors(frames):
        """The errors of the clips of consecutive ``frames`` (uint8 H x W x C arrays)."""
        window = [(range(len(frames) - opt.FrameNum + 1), window_tensor(frames, device))]
        return finite_scores(score_windows(scorer, window, opt.FrameNum, score, memory_model, window_batch(opt),
                                           memory_format), f'--Stream {opt.Stream}', first=len(decisions.clip_errors))

    decisions = LiveDecisions(opt.FrameNum, checked, opt.EventMinFrames, opt.EventMergeGap)
    batch_limit = opt.ClipWindow or opt.BatchSize
    clock, labels, held = StreamClock(batch_limit), [], deque(maxlen=opt.FrameNum - 1)
    column = 'source_file' if is_folder_source(opt.Stream) else 'time_s'
    rows = DecisionRows(folder, column, labels)
    measured = 'an error' if checked.rule == 'global' else f'{checked.rule}-baseline ratio'
    say(f'--Stream {opt.Stream}: frames at {size[0]} x {size[1]} (from {size_origin}); anomalous above '
        f'{measured} of {checked.threshold:.6g} (--DecisionRule {checked.rule}, --FalseAlarmRate '
        f'{opt.FalseAlarmRate:g}, {checked.file.name}) -> {rows.path}')
    ended, mismatch = 'the source ended', MismatchCheck(checked, f'--Stream {opt.Stream}', source_kind(opt.Stream),
                                                          opt.BaselineClips)
    stop_reading = threading.Event()
    arrivals = FrameQueue(live_frames(opt.Stream, size, opt.ImgChnNum, opt.StreamFormat, stop_reading),
                          batch_limit, f'--Stream {opt.Stream}')
    try:
        with torch.inference_mode(), autocast(device, opt.AMP):
            for batch in arrivals.batches():
                if rows.file is None:  # the source delivers: this run's outputs start
                    rows.start()
                    options.save(opt, folder)
                labels += [frame.label for frame in batch]
                clock.arrived(batch)
                frames = [*held, *(frame.pixels for frame in batch)]
                held.extend(frame.pixels for frame in batch)
                if len(frames) < opt.FrameNum:
                    continue
                started = time.time()
                for error in clip_errors(frames):
                    decided = decisions.add_clip(error)
                    mismatch.after(decisions.clip_errors)
                    rows.write(decided)
                    if decided[-1].anomalous:
                        for first, _ in decisions.started_events():
                            say(f'event from frame {first} ({labels[first]})')
                clock.scored(len(frames) - opt.FrameNum + 1, time.time() - started, batch, arrivals.waiting())
                if clock.status_due():
                    say(clock.status(len(labels)))
    except BaseException as stop:
        ended = stopped_by(stop)
        raise
    finally:
        stop_reading.set()
        if decisions.clip_errors:  # the frames after the last clip's centre, then the summaries
            rows.write(decisions.finish(len(labels)))
            rows.close()
            mismatch.after(decisions.clip_errors, ended=True)
            final = write_stream_results(opt, folder, weights, checked, decisions, clock, (column, labels), size,
                                         score, ended, mismatch.warning)
        elif rows.file is not None:  # too few frames for a clip: no decision, no file
            rows.close()
            rows.path.unlink(missing_ok=True)
    if not decisions.clip_errors:
        raise DataFormatError(f'--Stream {opt.Stream} ended after {len(labels)} frames, fewer than the '
                              f'{opt.FrameNum} of one clip (--FrameNum)')
    print(f'{len(labels)} frames, {len(decisions.clip_errors)} clips; {len(final.events)} event(s); '
          f'{clock.status(len(labels))} -> {folder}')
    return folder


class MismatchCheck:
    """Whether a stream looks unlike its calibration (:meth:`utils.single_video.CheckedCalibration.mismatch`),
    checked once: when its first ``clips`` clips have been scored, or when it ends before; a warning is said at
    once."""

    def __init__(self, checked, what, kind, clips):
        self.checked, self.what, self.kind, self.clips = checked, what, kind, clips
        self.done, self.warning = False, None

    def after(self, clip_errors, ended=False):
        if not self.done and (len(clip_errors) >= self.clips or ended):
            self.done = True
            self.warning = self.checked.mismatch(self.what, self.kind, clip_errors[:self.clips])
            if self.warning:
                say(f'warning: {self.warning}')


def write_stream_results(opt, folder, weights, checked, decisions, clock, sources, size, score, ended, mismatch):
    """events.csv, events.json, decisions.png and results.json of a stream that has ended; returns its
    :class:`utils.single_video.Decisions`."""
    frames = len(decisions.anomalous)
    final = decide(opt, checked, decisions.clip_errors, frame_clips(frames, len(decisions.clip_errors), opt.FrameNum))
    write_events(folder, sources, final)
    plot_decisions(folder / 'decisions.png', stream_name(opt.Stream), final.statistic, checked.threshold, final.events,
                   opt.FrameNum, checked.rule)
    write_json(folder / 'results.json', {
        'stream': str(opt.Stream), 'ended': ended, 'frames': len(decisions.anomalous),
        'clips': len(decisions.clip_errors), 'frame_size': list(size), 'setting': opt.setting,
        'weights': str(weights), 'score': score,
        'calibration': {'file': str(checked.file), 'false_alarm_rate': checked.false_alarm_rate,
                        'rule': checked.rule, 'baseline_clips': checked.baseline_clips,
                        'threshold': checked.threshold, 'anomalous_frames': int(final.anomalous.sum()),
                        'events': len(final.events), 'out_of_calibration': mismatch},
        **clock.as_dict(), 'outputs': list(STREAM_OUTPUTS),
        'options': vars(opt)}, sort_keys=True, default=str)
    return final
