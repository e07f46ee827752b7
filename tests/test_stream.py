"""Live scoring (script_testing.py --Stream, utils/live_stream.py, data/live_frames.py): the streamed decisions are
those of --Video on the same frames, from a movie read at its rate and from a folder that fills while the stream
runs; a stream stopped by Ctrl-C keeps whole rows; a source that ends before one clip, and the refusals."""
import csv
import http.server
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import script_testing
from data.live_frames import folder_arrivals
from data.readers import DataFormatError
from models import AutoEncoderCov3DMem
from spies import recorded
from synthetic import video_frames, write_movie
from utils import live_stream
from utils.calibration import Calibration, anomaly_events
from utils.errors import run_cli
from utils.live_stream import FrameQueue, LiveDecisions, StreamClock, stream_name
from utils.single_video import frame_clips

ROOT = Path(__file__).resolve().parents[1]
MEMAE = ['--MemDim', '20', '--UseCUDA', 'False', '--PrintOptions', 'False']
DECIDE = ['--FalseAlarmRate', '0.25', '--EventMinFrames', '2', '--EventMergeGap', '1']
WAIT_SECONDS = 300  # for an event the stream reports; only a hung stream takes that long


@pytest.fixture(scope='module')
def calibrated(prepared_root, tmp_path_factory):
    """Weights with a calibration beside them, made on the first source video of the prepared data."""
    torch.manual_seed(5)
    weights = tmp_path_factory.mktemp('stream_weights') / 'memae.pt'
    torch.save(AutoEncoderCov3DMem(1, 20).state_dict(), weights)
    normal = prepared_root.parent / 'src' / 'UCSDped2' / 'Test' / 'Test001'
    assert script_testing.main(flags(prepared_root, weights, weights.parent, '--Video', str(normal),
                                     '--Calibrate', 'True')) == 0
    return weights


def flags(prepared_root, weights, out, *extra):
    return ['--DataRoot', str(prepared_root), '--OutRoot', str(out), '--ModelFilePath', str(weights), *MEMAE, *extra]


def rows(path):
    with path.open(newline='') as file:
        lines = list(csv.reader(file))
    return lines[0], lines[1:]


def assert_same_decisions(streamed_folder, offline_folder):
    """Every frame's label, clip, error, tail probability and decision, and the events, as --Video gives them."""
    header, streamed = rows(streamed_folder / 'frame_scores.csv')
    offline_header, offline = rows(offline_folder / 'frame_scores.csv')
    assert header == [name for name in offline_header if name != 'regularity']
    assert len(streamed) == len(offline)
    keep = [offline_header.index(name) for name in header]
    for ours, theirs in zip(streamed, offline):
        theirs = [theirs[k] for k in keep]
        assert ours[:3] == theirs[:3] and ours[5] == theirs[5]  # frame, label, clip; decision
        assert float(ours[3]) == pytest.approx(float(theirs[3]), rel=1e-5)  # one clip at a time vs windows
        assert float(ours[4]) == pytest.approx(float(theirs[4]), abs=1e-6)
        assert float(ours[6]) == pytest.approx(float(theirs[6]), rel=1e-5)  # the rule's statistic, from the error
    assert json.loads((streamed_folder / 'events.json').read_text())['events'] == \
        json.loads((offline_folder / 'events.json').read_text())['events']
    return [int(row[5]) for row in streamed]


def test_each_frame_is_decided_by_the_clip_centred_on_it_as_soon_as_that_clip_is_scored():
    checked = SimpleNamespace(rule='global', baseline_clips=None,
                              threshold=3.0, calibration=Calibration.from_errors(np.arange(5.0), 'n', {}, 'a'))
    decisions = LiveDecisions(16, checked, min_frames=2, merge_gap=0)
    errors = [1.0, 3.0, 3.0, 1.0, 4.0]
    decided = [decisions.add_clip(e) for e in errors]
    assert [[d.frame for d in clip] for clip in decided] == [list(range(9)), [9], [10], [11], [12]]  # t waits for t + 7
    last = decisions.finish(20)
    assert [d.frame for d in last] == list(range(13, 20))
    expected_clips = frame_clips(20, len(errors), 16)
    assert [d.error for d in [*sum(decided, []), *last]] == [errors[c] for c in expected_clips]
    assert decisions.anomalous == [errors[c] == 4.0 for c in expected_clips]  # above the threshold, not at it
    assert decisions.finish(20) == []  # nothing twice


def test_events_are_announced_once_when_their_run_is_long_enough():
    checked = SimpleNamespace(rule='global', baseline_clips=None,
                              threshold=0.5, calibration=Calibration.from_errors([0.0, 1.0], 'n', {}, 'a'))
    decisions = LiveDecisions(4, checked, min_frames=3, merge_gap=1)
    announced = []
    for clip, error in enumerate([0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1]):  # clip c decides frame c + 2
        decisions.add_clip(error)
        announced += [(clip + 2, first) for first, _ in decisions.started_events()]
    # frames 0-3 normal, 4-5 anomalous, 6 normal, 7 anomalous, 8-10 normal, 11-14 anomalous: the runs 4-5 and 7
    # merge (a gap of 1) into an event from frame 4, long enough once frame 7 is decided; 11-14 is long enough
    # at frame 13
    assert decisions.anomalous == [False] * 4 + [True, True, False, True] + [False] * 3 + [True] * 4
    assert announced == [(7, 4), (13, 11)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), max_size=60), st.integers(1, 4), st.integers(0, 3), st.integers(0, 2))
def test_events_found_incrementally_are_those_of_the_whole_stream(flags, min_frames, merge_gap, asks):
    checked = SimpleNamespace(rule='global', baseline_clips=None,
                              threshold=0.5, calibration=Calibration.from_errors([0.0, 1.0], 'n', {}, 'a'))
    decisions = LiveDecisions(4, checked, min_frames=min_frames, merge_gap=merge_gap)
    announced = []
    for clip, flag in enumerate(flags):
        decisions.add_clip(float(flag))
        if flag or clip % (asks + 1) == 0:  # the stream asks after anomalous clips; sometimes after others too
            announced += decisions.started_events()
        assert decisions.events == anomaly_events(decisions.anomalous, min_frames, merge_gap)[:len(decisions.events)]
    announced += decisions.started_events()
    # each event announced once, when it started (its last frame then is the last decided so far)
    assert [first for first, _ in announced] == \
        [first for first, _ in anomaly_events(decisions.anomalous, min_frames, merge_gap)]


def test_events_look_only_at_the_frames_since_the_last_run_began(monkeypatch):
    looked_at = []

    def recording(anomalous, min_frames, merge_gap):
        looked_at.append(len(anomalous))
        return anomaly_events(anomalous, min_frames, merge_gap)

    monkeypatch.setattr(live_stream, 'anomaly_events', recording)
    checked = SimpleNamespace(rule='global', baseline_clips=None,
                              threshold=0.5, calibration=Calibration.from_errors([0.0, 1.0], 'n', {}, 'a'))
    decisions = LiveDecisions(4, checked, min_frames=2, merge_gap=1)
    for flag in [1, 1, 0, 0, 0, 0] * 200:  # 200 events, far apart
        decisions.add_clip(float(flag))
        if flag:
            decisions.started_events()
    assert len(decisions.events) == 200 and decisions.events[-1] == (1196, 1197)
    assert max(looked_at) <= 10  # a run, the gap and the next run at most: not the 1,200 frames decided
    looked_at.clear()
    decisions = LiveDecisions(4, checked, min_frames=2, merge_gap=1)
    for flag in [0, 0, 0, 1, 0, 0] * 200:  # single anomalous frames, too short to be events, settle all the same
        decisions.add_clip(float(flag))
        if flag:
            decisions.started_events()
    assert decisions.events == [] and max(looked_at) <= 10


@pytest.mark.parametrize('error, message', [
    (None, None), (DataFormatError('frame 10 is not a readable image'), 'frame 10'),
    (FileNotFoundError(2, 'No such file or directory'), '--Stream cam could not be read any more: No such file')])
def test_frames_that_piled_up_are_taken_together_and_a_reader_error_comes_after_them(error, message):
    """A reader's error reaches the main thread after the frames read before it; an OS error (the folder deleted
    while streaming) as one sentence naming the source."""
    def source():
        yield from range(10)
        if error:
            raise error
    reader = FrameQueue(source(), most=4, what='--Stream cam')
    reader.thread.join()  # all ten have arrived before the scorer asks
    batches = reader.batches()
    assert [next(batches) for _ in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    if error:
        with pytest.raises(DataFormatError, match=message):
            next(batches)
    else:
        assert list(batches) == []


def test_a_reader_stuck_in_a_silent_source_does_not_keep_the_program_alive():
    """A camera or URL that stops delivering blocks its reader thread for good; the program still ends when its
    main thread does (here, by an error), instead of hanging on that thread."""
    program = ('import threading\n'
               'from utils.live_stream import FrameQueue\n'
               'def silent():\n'
               '    threading.Event().wait()\n'
               '    yield\n'
               'FrameQueue(silent(), most=4, what="--Stream cam")\n'
               'raise SystemExit("the scorer failed")\n')
    process = subprocess.run([sys.executable, '-c', program], cwd=ROOT, capture_output=True, text=True,
                             timeout=WAIT_SECONDS, env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert (process.returncode, process.stderr.strip()) == (1, 'the scorer failed')


def test_a_source_slower_than_the_queue_poll_still_delivers_every_frame():
    """The scorer waits for a frame in polls (so that Ctrl-C reaches it): a poll that ends empty-handed, as every
    poll does while a camera is between frames, waits again; it is not the end of the stream."""
    class SlowQueue(queue.SimpleQueue):
        def __init__(self, empty_polls):
            self.empty_polls = empty_polls

        def get(self, block=True, timeout=None):
            assert timeout is not None  # a poll
            if self.empty_polls:
                self.empty_polls -= 1
                raise queue.Empty
            return super().get(block, timeout)
    reader = FrameQueue(iter(range(6)), most=4, what='--Stream cam')
    reader.thread.join()
    polls, reader.queue = reader.queue, SlowQueue(empty_polls=3)
    while not polls.empty():
        reader.queue.put(polls.get())
    assert list(reader.batches()) == [[0, 1, 2, 3], [4, 5]]
    assert reader.queue.empty_polls == 0


def test_a_scorer_keeps_up_while_it_never_finds_more_than_a_batch_waiting():
    clock = StreamClock(batch=4)
    frames = [SimpleNamespace(arrival=float(t)) for t in range(6)]
    clock.arrived(frames)
    clock.scored(2, 0.5, frames, waiting=4)  # the newest frames of the two clips: 4 and 5
    assert clock.keeps_up() and 'falling behind' not in clock.status(6)
    assert clock.lags[0] - clock.lags[1] == pytest.approx(1.0)  # frame 4 arrived a second before frame 5
    clock.scored(1, 0.5, frames, waiting=5)
    assert not clock.keeps_up() and clock.status(6).endswith('falling behind (5 frames were waiting)')
    assert clock.as_dict()['largest_backlog_frames'] == 5 and clock.scoring_rate() == pytest.approx(3.0)


def test_the_status_line_and_the_clock_summary_say_rates_lag_and_backlog(monkeypatch):
    """Six frames one second apart (1 frame/s), three clips scored in 0.5 s (6 clips/s) at time 10, their newest
    frames 3, 4 and 5 (lags 7, 6 and 5 s); then what is left out while a rate is not known."""
    monkeypatch.setattr(live_stream.time, 'time', lambda: 10.0)
    clock = StreamClock(batch=4)
    frames = [SimpleNamespace(arrival=float(t)) for t in range(6)]
    clock.arrived(frames)
    clock.scored(3, 0.5, frames, waiting=1)
    assert clock.status(6) == '6 frames: scoring 6.0 frames/s, the source delivers 1.0/s; decisions 5.00 s after ' \
                              'their newest frame'
    assert clock.as_dict() == {'source_frames_per_second': 1.0, 'scoring_frames_per_second': 6.0, 'keeps_up': True,
                               'largest_backlog_frames': 1, 'scoring_seconds': 0.5,
                               'lag_seconds': {'last': 5.0, 'mean': 6.0, 'max': 7.0}}
    instant = StreamClock(batch=4)  # one frame (no source rate), scored in no measurable time (no scoring rate)
    instant.arrived(frames[:1])
    instant.scored(1, 0.0, frames[:1], waiting=0)
    assert instant.scoring_rate() is None
    assert instant.status(1) == '1 frames: scoring; decisions 10.00 s after their newest frame'
    assert StreamClock(batch=4).as_dict()['lag_seconds'] is None  # nothing scored yet


def test_a_movie_read_at_its_rate_gives_the_offline_decisions(prepared_root, calibrated, tmp_path):
    frames = video_frames(30, seed=2, anomalous=lambda t: 12 <= t <= 20)[0]
    movie = tmp_path / 'camera.avi'
    write_movie(movie, frames, rate=25)
    assert script_testing.main(flags(prepared_root, calibrated, tmp_path, '--Video', str(movie), *DECIDE)) == 0
    started = time.monotonic()
    assert script_testing.main(flags(prepared_root, calibrated, tmp_path, '--Stream', str(movie), *DECIDE)) == 0
    seconds = time.monotonic() - started
    folder = tmp_path / 'stream_camera'
    decided = assert_same_decisions(folder, tmp_path / 'video_camera')
    assert 0 < sum(decided) < len(decided)  # some frames decided each way: the comparison means something
    results = json.loads((folder / 'results.json').read_text())
    assert (results['frames'], results['clips'], results['ended']) == (30, 15, 'the source ended')
    assert (folder / 'decisions.png').stat().st_size > 0
    assert seconds >= 29 / 25  # paced: frame 29 is not read before 29 / 25 s
    # measured from arrival times, which a loaded machine delays unevenly: its arithmetic is checked on fixed
    # arrivals (test_the_source_rate_counts_the_intervals_between_arrivals)
    assert results['source_frames_per_second'] > 0
    assert results['lag_seconds']['max'] >= results['lag_seconds']['mean'] >= 0


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_a_url_streams_at_its_own_pace_with_the_offline_decisions(prepared_root, calibrated, tmp_path, monkeypatch):
    """A movie served over HTTP on this machine: what FFmpeg opens by URL (a camera's RTSP or HTTP stream); its
    decisions.png plots the statistic of the calibration's rule (the default, warmup: error over its baseline)."""
    drawn = []

    def plot_decisions(path, name, statistic, threshold, events, clip_len, rule='global'):
        drawn.append(rule)
    monkeypatch.setattr(live_stream, 'plot_decisions', plot_decisions)
    movie = tmp_path / 'served' / 'door.avi'
    write_movie(movie, video_frames(24, seed=4, anomalous=lambda t: t >= 14)[0], rate=25)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), partial(QuietFiles, directory=str(movie.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{server.server_address[1]}/door.avi'
    try:
        assert script_testing.main(flags(prepared_root, calibrated, tmp_path, '--Stream', url, *DECIDE)) == 0
    finally:
        server.shutdown()
    assert script_testing.main(flags(prepared_root, calibrated, tmp_path, '--Video', str(movie), *DECIDE)) == 0
    streamed = tmp_path / f'stream_127.0.0.1_{server.server_address[1]}_door.avi'
    assert_same_decisions(streamed, tmp_path / 'video_door')
    assert json.loads((streamed / 'results.json').read_text())['stream'] == url
    assert drawn == ['warmup']


def watch(process, path, frame):
    """Wait until the stream has written the row of ``frame`` to ``path`` (the event it reports), or has ended."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        if path.is_file() and any(line.startswith(f'{frame},') for line in path.read_text().splitlines()):
            return
        time.sleep(0.05)
    raise AssertionError(f'the stream ended or hung before deciding frame {frame}: {process.communicate()}')


@pytest.mark.parametrize('given', [20, 18])
def test_a_folder_filled_while_streaming_then_stopped_gives_the_offline_decisions(prepared_root, calibrated,
                                                                                  tmp_path, given):
    """A thread copies the frames into the folder one at a time (written under a temporary name, then renamed);
    once the stream has decided the centre frame of the last clip, Ctrl-C stops it: the remaining frames take the
    last clip's error, every row is whole, one line is printed, and the decisions equal --Video's on those
    frames."""
    source = sorted((prepared_root.parent / 'src' / 'UCSDped2' / 'Test' / 'Test002').iterdir())[:given]
    live = tmp_path / 'cam'
    live.mkdir()
    # as a user's shell runs it: stdout a pipe, block-buffered (no PYTHONUNBUFFERED), so the opening line comes
    # while the stream waits for frames only because the program flushes it
    environment = {key: value for key, value in os.environ.items() if key != 'PYTHONUNBUFFERED'}
    process = subprocess.Popen([sys.executable, 'script_testing.py', *flags(prepared_root, calibrated, tmp_path,
                                                                            '--Stream', str(live), *DECIDE)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**environment, 'PYTHONPATH': str(ROOT)})
    opened = threading.Event()

    def read_until_the_opening_line():
        for line in process.stdout:
            if line.startswith('--Stream'):
                opened.set()
                return
    threading.Thread(target=read_until_the_opening_line, daemon=True).start()
    if not opened.wait(WAIT_SECONDS):  # the stream watches the folder: now fill it
        process.kill()
        raise AssertionError(f'no opening line while the stream waited for frames: {process.communicate()}')

    def fill():
        for file in source:
            shutil.copy(file, live / f'.{file.name}.part')
            os.replace(live / f'.{file.name}.part', live / file.name)
    filler = threading.Thread(target=fill)
    filler.start()
    filler.join()
    watch(process, tmp_path / 'stream_cam' / 'frame_scores.csv', given - 8)  # the last clip's centre
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=WAIT_SECONDS)
    assert process.returncode == 128 + signal.SIGINT, err
    assert err.strip().splitlines() == ['interrupted (SIGINT); files written before it are kept']
    offline = tmp_path / 'offline'
    offline.mkdir()
    for file in source:
        shutil.copy(file, offline / file.name)
    assert script_testing.main(flags(prepared_root, calibrated, tmp_path, '--Video', str(offline), *DECIDE)) == 0
    assert_same_decisions(tmp_path / 'stream_cam', tmp_path / 'video_offline')
    results = json.loads((tmp_path / 'stream_cam' / 'results.json').read_text())
    assert (results['frames'], results['ended']) == (given, 'SIGINT')


def test_a_source_that_ends_before_one_clip_is_one_sentence_and_leaves_no_rows(prepared_root, calibrated,
                                                                              tmp_path, capsys):
    movie = tmp_path / 'short.avi'
    write_movie(movie, video_frames(10, seed=3)[0], rate=100)
    argv = flags(prepared_root, calibrated, tmp_path, '--Stream', str(movie), *DECIDE)
    assert run_cli(script_testing.main, argv) == 2
    assert f'error: --Stream {movie} ended after 10 frames, fewer than the 16 of one clip (--FrameNum)' in \
        capsys.readouterr().err
    assert not (tmp_path / 'stream_short' / 'frame_scores.csv').exists()


@pytest.mark.parametrize('extra, message', [
    (['--Stream', 'cam', '--Video', 'x.mp4'], '--Stream scores a live source with a calibration; --Video and '),
    (['--Stream', 'cam', '--Calibrate', 'True'], '--Stream scores a live source with a calibration; --Video and '),
    (['--StreamFormat', 'v4l2'], '--StreamFormat is the input format of a --Stream source; give --Stream too'),
    (['--Stream', 'cam', '--Plots', 'True'], '--Plots draws the figures of a test set or a --Video; a --Stream'),
])
def test_stream_flags_are_checked(capsys, extra, message):
    from options import TestOptions as EvalOptions  # a Test* name would be collected by pytest
    with pytest.raises(SystemExit):
        EvalOptions().parse(extra, is_print=False)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize('extra, message', [
    (['--Stream', 'missing.mp4'], '--Stream missing.mp4 does not exist (nor is it a URL)'),
    (['--Stream', 'cam', '--Dataset', 'MNIST'], '--Stream needs a video model, but --Dataset MNIST'),
])
def test_a_stream_of_nothing_or_for_another_model_is_one_sentence(prepared_root, calibrated, tmp_path, capsys,
                                                                  monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'cam').mkdir()
    assert run_cli(script_testing.main, flags(prepared_root, calibrated, tmp_path, *extra, *DECIDE)) == 2
    assert message in capsys.readouterr().err


class ScriptedScorer:
    """Stands in for score_windows in a stream: each clip's error from ``errors`` in clip order; and records what
    the stream handed over: its memory format, the scorer it built (frame_window_scorer), the most frames a batch
    takes (FrameQueue), the reader's input format and stop event (live_frames; with ``frames_before_loss`` the
    source goes away after that many frames) and the autocast it scored in."""

    def __init__(self, errors, monkeypatch, frames_before_loss=None):
        self.errors, self.clips, self.formats, self.scorer_formats, self.batch_limits = errors, 0, [], [], []
        self.readers, self.autocasts = [], []
        self.timed = []  # per batch: (clips scored, clips the clock was told of, seconds it was told)
        self.plots = []  # (name, clip length, rule) of decisions.png
        real_frames = live_stream.live_frames
        monkeypatch.setattr(live_stream, 'score_windows', self)
        for owner, name, record in (
                (live_stream.StreamClock, 'scored', lambda clock, clips, seconds, *_: self.timed.append(
                    (self.last_count, clips, seconds))),
                (live_stream, 'frame_window_scorer', lambda model, opt, memory_format: self.scorer_formats.append(
                    memory_format)),
                (live_stream, 'FrameQueue', lambda frames, most, what: self.batch_limits.append(most)),
                (live_stream, 'autocast', lambda device, amp: self.autocasts.append((device.type, amp))),
                (live_stream, 'plot_decisions', lambda path, name, statistic, threshold, events, clip_len, rule:
                    self.plots.append((name, clip_len, rule)))):
            monkeypatch.setattr(owner, name, recorded(getattr(owner, name), record))

        def frames(source, size, channels, input_format=None, stop=None):
            self.readers.append((input_format, stop))
            for k, frame in enumerate(real_frames(source, size, channels, input_format, stop)):
                if k == frames_before_loss:
                    raise OSError(5, 'Input/output error')
                yield frame
        monkeypatch.setattr(live_stream, 'live_frames', frames)

    def __call__(self, scorer, windows, clip_len, score, memory_model, batch_size, memory_format):
        self.formats.append(memory_format)
        errors = []
        for _, frames in windows:
            self.last_count = len(frames) - clip_len + 1
            errors += self.errors[self.clips:self.clips + self.last_count]
            self.clips += self.last_count
        return np.asarray(errors, dtype=np.float64)


def test_a_stream_passes_its_options_to_the_scorer_the_reader_and_the_live_events(prepared_root, calibrated,
                                                                               tmp_path, monkeypatch, capsys):
    """Scripted clip errors (the global rule: 0 is normal, 1e6 anomalous) flag frames 11-12 and 14-15: with
    --EventMergeGap 1 one event, announced once as it starts and the one of events.json; results.json, the opening
    line, the status lines and the mismatch warning say what the test knows; --ChannelsLast, --ClipWindow (else
    --BatchSize), --AMP, --StreamFormat and the stop event reach the scorer, the reader and the autocast; a
    non-finite error and a source that goes away are one sentence naming the stream."""
    movie = tmp_path / 'cam.avi'
    write_movie(movie, video_frames(30, seed=2)[0], rate=100)
    errors = [1e6 if clip in (3, 4, 6, 7) else 0.0 for clip in range(15)]  # clip c decides frame c + 8
    decide = ['--DecisionRule', 'global', '--FalseAlarmRate', '0.25', '--EventMinFrames', '2', '--EventMergeGap', '1',
              '--ChannelsLast', 'True']
    scripted = ScriptedScorer(errors, monkeypatch)
    monkeypatch.setattr(live_stream, 'STATUS_CLIPS', 5)
    started = time.monotonic()
    assert run_cli(script_testing.main, flags(prepared_root, calibrated, tmp_path, '--Stream', str(movie),
                                              *decide)) == 0
    elapsed = time.monotonic() - started
    said = capsys.readouterr().out.splitlines()
    # the clock is told each batch's clips and a time within the run's; a status line as 5, 10, 15 clips are
    # reached (one for several, if a batch passes more than one), with the frames read by then
    assert [told for _, told, _ in scripted.timed] == [scored for scored, _, _ in scripted.timed]
    assert sum(scored for scored, _, _ in scripted.timed) == 15
    assert all(0 <= seconds <= elapsed for *_, seconds in scripted.timed)
    statuses = [line for line in said if re.fullmatch(  # rates and a backlog as the machine's timing makes them
        r'\d+ frames: scoring( [\d.]+ frames/s)?(, the source delivers [\d.]+/s)?; decisions [\d.]+ s after their '
        r'newest frame(: falling behind \(\d+ frames were waiting\))?', line)]
    assert 1 <= len(statuses) <= 3 and all(20 <= int(line.split()[0]) <= 30 for line in statuses)
    announced = [line for line in said if line.startswith('event from frame')]
    assert announced == ['event from frame 11 (0.110)']
    # the last line: what was read, scored and found, with the clock's status over every frame read
    assert re.fullmatch(r'30 frames, 15 clips; 1 event\(s\); 30 frames: scoring .* -> ' + re.escape(
        str(tmp_path / 'stream_cam')), said[-1])
    results = json.loads((tmp_path / 'stream_cam' / 'results.json').read_text())
    calibration, threshold = results['calibration'], results['calibration']['threshold']
    assert list(results) == sorted(results)  # written with sorted keys: runs compare line by line
    assert {key: results[key] for key in ('stream', 'ended', 'frames', 'clips', 'frame_size', 'weights', 'score',
                                          'outputs')} == {
        'stream': str(movie), 'ended': 'the source ended', 'frames': 30, 'clips': 15, 'frame_size': [32, 32],
        'weights': str(calibrated), 'score': 'l2', 'outputs': list(live_stream.STREAM_OUTPUTS)}
    assert results['setting'] == results['options']['setting'] and results['options']['Stream'] == str(movie)
    assert {key: calibration[key] for key in ('file', 'false_alarm_rate', 'rule', 'baseline_clips',
                                              'anomalous_frames', 'events')} == {
        'file': str(calibrated.with_name('memae_calibration.json')), 'false_alarm_rate': 0.25, 'rule': 'global',
        'baseline_clips': 10, 'anomalous_frames': 4, 'events': 1}  # frames 11, 12, 14 and 15
    assert results['scoring_frames_per_second'] == pytest.approx(15 / results['scoring_seconds'])
    assert results['lag_seconds']['max'] >= results['lag_seconds']['mean'] >= 0
    assert all((tmp_path / 'stream_cam' / name).is_file() for name in results['outputs'])
    assert scripted.plots == [('cam', 16, 'global')]
    # calibrated on a folder of frames, streamed from a movie: one warning, naming the stream and both kinds
    warnings = [line for line in said if line.startswith('warning: ')]
    assert len(warnings) == 1 and calibration['out_of_calibration'] == warnings[0][len('warning: '):]
    assert f'--Stream {movie}' in warnings[0] and '.avi video file' in warnings[0] and 'frame images' in warnings[0]
    assert 'the normal footage of memae_calibration.json: ' in warnings[0]  # the calibration in use, named
    assert 'the requested false-alarm rate will not hold' in warnings[0]  # what it means under the global rule
    assert (f'--Stream {movie}: frames at 32 x 32 (from {prepared_root / "UCSD_P2_256" / "prepare.json"}); '
            f'anomalous above an error of {threshold:.6g} (--DecisionRule global, --FalseAlarmRate 0.25, '
            f'memae_calibration.json) -> {tmp_path / "stream_cam" / "frame_scores.csv"}') in said
    events = json.loads((tmp_path / 'stream_cam' / 'events.json').read_text())['events']
    assert [(e['first_frame'], e['last_frame']) for e in events] == [(11, 15)]
    assert (tmp_path / 'stream_cam' / 'events.csv').read_text().splitlines() == [
        'event,first_frame,last_frame,frames,first_time_s,last_time_s', '0,11,15,5,0.110,0.150']
    assert set(scripted.formats) == set(scripted.scorer_formats) == {torch.channels_last_3d}
    assert scripted.batch_limits == [16]  # --ClipWindow's default
    assert scripted.autocasts == [('cpu', 'none')]
    (input_format, stop), = scripted.readers
    assert input_format is None and stop.is_set()  # the reader is told to stop when the stream ends
    scripted = ScriptedScorer(errors, monkeypatch)
    assert run_cli(script_testing.main, flags(prepared_root, calibrated, tmp_path, '--Stream', str(movie), *decide,
                                              '--ClipWindow', '0', '--BatchSize', '5', '--BaselineClips', '20')) == 0
    assert scripted.batch_limits == [5]
    # 15 clips, fewer than --BaselineClips: the stream is checked against its calibration when it ends
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith('warning: ')]
    results = json.loads((tmp_path / 'stream_cam' / 'results.json').read_text())
    assert len(warnings) == 1 and results['calibration']['out_of_calibration'] == warnings[0][len('warning: '):]
    # frames of another shape (calibrated at it) and a ratio rule: the line says both
    wide = tmp_path / 'wide' / 'memae.pt'
    wide.parent.mkdir()
    shutil.copy(calibrated, wide)
    normal = prepared_root.parent / 'src' / 'UCSDped2' / 'Test' / 'Test001'
    other = ['--VideoSize', '32', '48', '--AMP', 'bf16']
    assert script_testing.main(flags(prepared_root, wide, wide.parent, '--Video', str(normal), '--Calibrate', 'True',
                                     *other)) == 0
    assert (f'--Video {normal} (normal footage, --Calibrate): frames at 32 x 48 (from --VideoSize)'
            in capsys.readouterr().out.splitlines())
    scripted = ScriptedScorer(errors, monkeypatch)
    assert run_cli(script_testing.main, flags(prepared_root, wide, tmp_path, '--Stream', str(movie), *decide[2:],
                                              '--DecisionRule', 'running', '--StreamFormat', 'avi', *other)) == 0
    said = capsys.readouterr().out
    assert ': frames at 32 x 48 (from --VideoSize); anomalous above running-baseline ratio of ' in said
    assert "relative to its own first clips' level, which absorbs a change of level" in said  # the ratio rule's
    assert scripted.autocasts == [('cpu', 'bf16')] and scripted.readers[0][0] == 'avi'
    # the source goes away after 20 frames: one sentence naming the stream; the reader told to stop
    scripted = ScriptedScorer(errors, monkeypatch, frames_before_loss=20)
    assert run_cli(script_testing.main, flags(prepared_root, calibrated, tmp_path, '--Stream', str(movie),
                                              *decide)) == 2
    assert f'error: --Stream {movie} could not be read any more: Input/output error' in capsys.readouterr().err
    assert scripted.readers[0][1].is_set()
    # a clip error that is not finite is one sentence naming the stream
    ScriptedScorer([0.0, float('nan')] + errors[2:], monkeypatch)
    assert run_cli(script_testing.main, flags(prepared_root, calibrated, tmp_path, '--Stream', str(movie),
                                              *decide)) == 2
    assert f'--Stream {movie}: the score of clip 1 (0-based) is nan' in capsys.readouterr().err


def test_a_stream_needs_a_calibration(prepared_root, calibrated, tmp_path, capsys):
    bare = tmp_path / 'bare.pt'
    shutil.copy(calibrated, bare)  # the same weights without a calibration beside them
    (tmp_path / 'cam').mkdir()
    assert run_cli(script_testing.main, flags(prepared_root, bare, tmp_path, '--Stream', str(tmp_path / 'cam'))) == 2
    assert ('--Stream decides with a calibration, and there is none beside the weights (bare_calibration.json)'
            in capsys.readouterr().err)


def test_a_folder_streams_its_frames_in_name_order_as_they_appear(tmp_path):
    image = Image.new('L', (8, 8))
    image.save(tmp_path / '9.png')
    arrivals = folder_arrivals(tmp_path)
    assert next(arrivals)[1] == '9.png'
    image.save(tmp_path / '.10.png.part', format='PNG')  # being written, under another name: not yet a frame
    image.save(tmp_path / '10.png')  # 10 after 9 in natural order
    assert next(arrivals)[1] == '10.png'
    image.save(tmp_path / '8.png')
    with pytest.raises(DataFormatError, match='8.png appeared after 10.png but sorts before it'):
        next(arrivals)


def test_stream_folders_are_named_after_the_source(tmp_path):
    (tmp_path / 'cam').mkdir()
    (tmp_path / 'door.mp4').write_bytes(b'')
    assert stream_name(tmp_path / 'cam') == 'cam' and stream_name(tmp_path / 'door.mp4') == 'door'
    assert stream_name('rtsp://user@cam.local:554/live?x=1') == 'user_cam.local_554_live_x_1'
    assert stream_name('http://Gate-2.local/Video/') == 'Gate-2.local_Video'  # case kept, no trailing _
    assert stream_name('rtsp://Xcam/') == 'Xcam' and stream_name('http://?') == 'stream'  # nothing left: a name
    assert stream_name('http://host/' + 'a' * 100 + 'bc') == 'a' * 78 + 'bc'  # the last 80 characters


def test_the_source_rate_counts_the_intervals_between_arrivals():
    """30 frames at 25 frames/s span 29 intervals of 1/25 s: 25 frames/s, not 30 / (29 / 25) = 25.9."""
    clock = StreamClock(batch=4)
    arrivals = [SimpleNamespace(arrival=100.0 + k / 25) for k in range(30)]
    for start in range(0, 30, 4):
        clock.arrived(arrivals[start:start + 4])
    assert clock.frames == 30 and clock.source_rate() == pytest.approx(25, rel=1e-9)
    one = StreamClock(batch=4)
    one.arrived(arrivals[:1])
    assert one.source_rate() is None  # one frame has no rate
    for frames in (2, 10):  # the fewest frames with a rate; a span under a second
        few = StreamClock(batch=4)
        few.arrived(arrivals[:frames])
        assert few.source_rate() == pytest.approx(25, rel=1e-9)


def test_a_stream_that_fails_to_open_leaves_the_earlier_streams_outputs_whole(prepared_root, calibrated, tmp_path,
                                                                              capsys):
    """A re-run whose source does not open (a 0-byte movie of the same name) changes nothing in the folder."""
    movie = tmp_path / 'camera.avi'
    write_movie(movie, video_frames(20, seed=2)[0], rate=25)
    assert script_testing.main(flags(prepared_root, calibrated, tmp_path, '--Stream', str(movie), *DECIDE)) == 0
    folder = tmp_path / 'stream_camera'
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert {'frame_scores.csv', 'results.json', 'events.csv'} <= set(before)
    empty = tmp_path / 'other' / 'camera.avi'
    empty.parent.mkdir()
    empty.touch()
    assert run_cli(script_testing.main, flags(prepared_root, calibrated, tmp_path, '--Stream', str(empty),
                                              *DECIDE)) == 2
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    # one that opens and delivers frames, too few for a clip: the earlier outputs would describe another run
    write_movie(empty, video_frames(10, seed=3)[0], rate=100)
    assert run_cli(script_testing.main, flags(prepared_root, calibrated, tmp_path, '--Stream', str(empty),
                                              *DECIDE)) == 2
    assert not {*live_stream.STREAM_OUTPUTS, 'results.json'} & {path.name for path in folder.iterdir()}


def test_a_second_stream_into_a_folder_being_written_is_refused(prepared_root, calibrated, tmp_path, capsys):
    from utils.files import only_writer
    movie = tmp_path / 'frames.avi'
    write_movie(movie, video_frames(20, seed=2)[0], rate=25)
    folder = tmp_path / 'stream_frames'
    folder.mkdir()
    with only_writer(folder, 'another camera'):  # what a live stream of another camera holds
        assert run_cli(script_testing.main, flags(prepared_root, calibrated, tmp_path, '--Stream', str(movie),
                                                  *DECIDE)) == 2
    assert (f'another process is writing {folder} (--Stream {movie}); give this one its own --OutRoot'
            in capsys.readouterr().err)
    assert not (folder / 'frame_scores.csv').exists()


def test_stream_rows_keep_a_label_with_commas_one_field(tmp_path):
    labels = ['001,cam 1,2026-12-05 10:00:01.jpg']
    rows_file = live_stream.DecisionRows(tmp_path, 'source_file', labels)
    rows_file.start()
    rows_file.write([SimpleNamespace(frame=0, clip=0, error=0.5, tail_probability=0.25, anomalous=True,
                                   statistic=0.5)])
    rows_file.close()
    header, (row,) = rows(tmp_path / 'frame_scores.csv')
    assert len(row) == len(header) == 7 and row[1] == labels[0]


def test_a_disk_that_fills_while_streaming_is_one_sentence_naming_the_file(tmp_path):
    import errno
    from utils.errors import OutputError
    rows_file = live_stream.DecisionRows(tmp_path, 'time_s', ['0.000'])
    rows_file.start()

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, 'No space left on device')
    rows_file.file.file = FullDisk()
    with pytest.raises(OutputError, match=f'cannot write {tmp_path / "frame_scores.csv"}: No space left on device'):
        rows_file.write([SimpleNamespace(frame=0, clip=0, error=0.5, tail_probability=0.25, anomalous=False,
                                       statistic=0.5)])


def test_a_status_line_is_due_once_per_status_clips_scored_whatever_the_batches():
    """Due when the clips scored reach the next multiple of STATUS_CLIPS, once; a batch that jumps past one (here
    two) is due once and the next is the following multiple (not STATUS_CLIPS after the jump)."""
    every = live_stream.STATUS_CLIPS
    clock = StreamClock(batch=4)
    due = []
    for added in [1] * (2 * every + 10) + [2 * every + 30, every - 41, 1]:
        clock.lags += [0.0] * added
        if clock.status_due():
            due.append(len(clock.lags))
    assert due == [every, 2 * every, 4 * every + 40, 5 * every]


def test_how_a_stream_ended_names_the_signal_or_the_error():
    from utils.interrupts import Interrupted
    assert live_stream.stopped_by(KeyboardInterrupt()) == 'SIGINT'
    assert live_stream.stopped_by(Interrupted(signal.SIGTERM)) == 'SIGTERM'
    assert live_stream.stopped_by(OSError('the camera went away')) == 'OSError: the camera went away'


def test_a_stream_is_checked_against_its_calibration_once_after_its_first_clips_or_at_its_end(capsys):
    """MismatchCheck compares the first ``clips`` clip errors with the calibration once (what and kind named), and
    a stream that ends sooner with what it has; later clips change nothing; each check's warning is said once."""
    class Calibrated:
        def __init__(self):
            self.calls = []

        def mismatch(self, what, kind, errors):
            self.calls.append((what, kind, list(errors)))
            return f'{what} looks unlike its calibration'
    checked = Calibrated()
    check = live_stream.MismatchCheck(checked, 'the stream cam', 'a video file', clips=3)
    check.after([1.0, 2.0])
    assert (check.done, check.warning, checked.calls) == (False, None, [])
    check.after([1.0, 2.0, 3.0])
    assert check.done and check.warning == 'the stream cam looks unlike its calibration'
    check.after([1.0, 2.0, 3.0, 4.0], ended=True)
    assert checked.calls == [('the stream cam', 'a video file', [1.0, 2.0, 3.0])]
    short = live_stream.MismatchCheck(checked := Calibrated(), 'the stream cam', 'a video file', clips=3)
    short.after([5.0])
    short.after([5.0, 6.0], ended=True)
    assert short.done and checked.calls == [('the stream cam', 'a video file', [5.0, 6.0])]
    assert capsys.readouterr().out.splitlines() == ['warning: the stream cam looks unlike its calibration'] * 2
