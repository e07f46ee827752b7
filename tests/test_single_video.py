"""Scoring a video of your own (script_testing.py --Video, utils/single_video.py, data/frame_stream.py)."""
import csv
import json
import re
import shutil
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import script_testing
import utils.plots
import utils.single_video
from data.frame_stream import prepared_frames
from data.layout import VideoLayout
from data.readers import DataFormatError, load_frame
from models import AutoEncoderCov3DMem
from options import TestOptions as EvalOptions  # a Test* name would be collected by pytest
from spies import recorded
from synthetic import video_frames, write_movie
from utils.errors import InputError, run_cli
from utils.eval import regularity
from utils.single_video import (GIF_FRAMES, VIDEO_OUTPUTS, frame_clips, frame_sources, frame_windows, most_anomalous,
                                video_frame_size)

MEMAE = ['--MemDim', '20', '--UseCUDA', 'False', '--PrintOptions', 'False']


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp('weights') / 'memae.pt'
    torch.save(AutoEncoderCov3DMem(1, 20).state_dict(), path)
    return path


def source_video(prepared_root, name='Test001'):
    """The source frames (24 x 36 .tif) that the prepared data set's test video was made from."""
    return prepared_root.parent / 'src' / 'UCSDped2' / 'Test' / name


def score(prepared_root, weights, out, *extra):
    argv = ['--DataRoot', str(prepared_root), '--OutRoot', str(out), '--ModelFilePath', str(weights), *MEMAE, *extra]
    assert script_testing.main(argv) == 0


def test_a_video_file_without_a_readable_rate_is_timed_at_25_frames_a_second(tmp_path):
    movie = tmp_path / 'cam.mp4'
    movie.write_bytes(b'no container FFmpeg knows')
    assert frame_sources(movie, 3) == ('time_s', ['0.000', '0.040', '0.080'])


def test_the_most_anomalous_frames_are_clip_centres_apart_lowest_first_and_the_earliest_of_equals():
    """Picks: frames that are their own clip's centre (frame 0, which takes clip 0 centred on frame 2, is not),
    lowest regularity first, the earlier of equal ones (a stable order: 10 before 12), at least a clip apart
    (12 is 2 frames from 10), each with its own regularity and error. An odd clip length of 5: centre offset 2."""
    regularity = np.ones(40)
    regularity[[10, 12, 25]] = 0.1
    regularity[0] = 0.0
    error = np.arange(40) / 10
    picks = most_anomalous(regularity, error, frame_clips(40, 36, 5), 5, count=3)
    assert [(p.frame, p.regularity, p.error) for p in picks] == [(10, 0.1, 1.0), (25, 0.1, 2.5), (2, 1.0, 0.2)]


def test_frames_are_prepared_as_the_data_set_preparation_prepares_them(prepared_root):
    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    ours = list(prepared_frames(source_video(prepared_root), (32, 32), 1))
    stored = [load_frame(layout.frames_dir('test') / 'Test001' / f'{t:03d}.jpg') for t in range(1, 21)]
    assert len(ours) == 20 and all(np.array_equal(a, b) for a, b in zip(ours, stored))


@pytest.mark.parametrize('clip_window', ['16', '0'])
def test_video_scores_are_the_test_set_scores_and_the_ends_take_the_nearest_clip(prepared_root, weights, tmp_path,
                                                                                  clip_window):
    score(prepared_root, weights, tmp_path, '--ClipWindow', clip_window)
    score(prepared_root, weights, tmp_path, '--ClipWindow', clip_window, '--Video', str(source_video(prepared_root)))
    res = next(tmp_path.glob('res_*'))
    folder = tmp_path / 'video_Test001'
    clip_scores = np.load(folder / 'clip_scores.npy')
    assert np.array_equal(clip_scores, np.load(res / 'Test001.npy'))
    rows = [line.split(',') for line in (folder / 'frame_scores.csv').read_text().splitlines()]
    assert rows[0] == ['frame', 'source_file', 'clip', 'error', 'regularity'] and len(rows) == 21
    # numbered from 0 as the files sort, each row naming its file
    assert [int(r[0]) for r in rows[1:]] == list(range(20))
    assert [r[1] for r in rows[1:]] == sorted(p.name for p in source_video(prepared_root).iterdir())
    # 20 frames, 5 clips of 16: clip k (from 0) is centred on frame k + 8; frames 0-8 take clip 0, 12-19 clip 4
    assert [int(r[2]) for r in rows[1:]] == [0] * 9 + [1, 2, 3] + [4] * 8
    clips = np.array([int(r[2]) for r in rows[1:]])
    assert np.array_equal([float(r[3]) for r in rows[1:]], clip_scores[clips])
    assert np.array_equal([float(r[4]) for r in rows[1:]], regularity(clip_scores)[clips])
    assert np.array_equal(np.load(folder / 'regularity.npy'), regularity(clip_scores)[clips])
    assert np.array_equal(np.load(folder / 'error.npy'), clip_scores[clips])


def test_a_video_file_streams_window_by_window_and_writes_the_overlay_movie(prepared_root, weights, tmp_path,
                                                                             monkeypatch):
    frames, _ = video_frames(40, seed=9, anomalous=lambda t: 20 <= t <= 30)
    movie = tmp_path / 'street.avi'
    write_movie(movie, frames, rate=20)
    on_disk, curves = [], []
    monkeypatch.setattr(utils.single_video, 'write_overlays', recorded(
        utils.single_video.write_overlays, lambda folder, *_: on_disk.append((folder / 'error_maps.f16').is_file())))
    monkeypatch.setattr(utils.single_video, 'plot_video_scores', recorded(
        utils.single_video.plot_video_scores, lambda *args: curves.append(args[:2])))
    started = time.perf_counter()
    score(prepared_root, weights, tmp_path / 'small', '--Video', str(movie), '--ClipWindow', '4', '--Plots', 'True')
    took = time.perf_counter() - started
    assert on_disk == [True]  # the clips' centre error maps wait in the output folder, not in memory
    assert curves == [(tmp_path / 'small' / 'video_street' / 'score_curve.png', 'street')]  # titled by the video
    score(prepared_root, weights, tmp_path / 'whole', '--Video', str(movie), '--ClipWindow', '0')
    folder = tmp_path / 'small' / 'video_street'
    small = np.load(folder / 'clip_scores.npy')
    assert len(small) == 25  # 40 frames: clips 1..25, windows of 4 clips (the last of 1)
    assert np.allclose(small, np.load(tmp_path / 'whole' / 'video_street' / 'clip_scores.npy'), rtol=1e-6, atol=0)
    import av
    with av.open(str(folder / 'overlay.mp4')) as container:
        decoded = [f.to_ndarray(format='rgb24') for f in container.decode(video=0)]
    assert len(decoded) == 40 and decoded[0].shape == (32, 32, 3)
    with Image.open(folder / 'most_anomalous.png') as image:
        assert image.size[1] > 300
    assert not (folder / 'error_maps.f16').exists()  # the maps waited on disk only while the video was scored
    results = json.loads((folder / 'results.json').read_text())
    assert (results['frames'], results['clips'], results['frame_size']) == (40, 25, [32, 32])
    options = json.loads((folder / 'opt.json').read_text())
    assert {key: results[key] for key in ('video', 'frame_size_from', 'channels', 'setting', 'weights', 'score',
                                          'device', 'calibration', 'options')} == {
        'video': str(movie), 'frame_size_from': str(prepared_root / 'UCSD_P2_256' / 'prepare.json'), 'channels': 1,
        'setting': options['setting'], 'weights': str(weights), 'score': 'l2', 'device': 'cpu', 'calibration': None,
        'options': options}
    assert 0 < results['seconds'] < took and results['clips_per_second'] == pytest.approx(25 / results['seconds'])
    assert results['error_range'] == [small.min(), small.max()]
    assert all(set(pick) == {'frame', 'regularity', 'error'} for pick in results['most_anomalous_frames'])
    assert {*results['outputs'], 'results.json', 'opt.txt', 'opt.json'} == {path.name for path in folder.iterdir()}
    assert set(results['outputs']) <= set(VIDEO_OUTPUTS)  # what a later run into the folder may remove
    picked = [p['frame'] for p in results['most_anomalous_frames']]
    assert 1 <= len(picked) <= 4 and all(abs(a - b) >= 16 for a in picked for b in picked if a != b)
    rows = [line.split(',') for line in (tmp_path / 'whole' / 'video_street' / 'frame_scores.csv').read_text()
            .splitlines()]
    # a movie's rows give each frame's time (written at 20 frames/s, not the default 25 of a movie without a
    # rate); frame numbers are the CSV's, from 0
    assert rows[0][:2] == ['frame', 'time_s'] and [r[1] for r in rows[1:4]] == ['0.000', '0.050', '0.100']
    by_frame = {int(r[0]): float(r[4]) for r in rows[1:]}
    assert all(by_frame[p['frame']] == p['regularity'] for p in results['most_anomalous_frames']
               if p['frame'] in by_frame) and min(picked) >= 0


def test_without_an_mp4_encoder_the_overlay_is_a_gif(prepared_root, weights, tmp_path, monkeypatch):
    monkeypatch.setattr(utils.single_video, 'write_movie', lambda path, frames, fps: False)
    score(prepared_root, weights, tmp_path, '--Video', str(source_video(prepared_root)), '--Plots', 'True')
    with Image.open(tmp_path / 'video_Test001' / 'overlay.gif') as gif:
        assert gif.n_frames == min(20, GIF_FRAMES) and gif.size == (32, 32)


def test_footage_of_another_kind_than_the_calibration_is_scored_with_a_warning(prepared_root, weights, tmp_path,
                                                                              capsys, monkeypatch):
    """Calibrated on frame images, the same frames encoded as a movie: decided, with one warning that names the
    cause and the remedy, recorded in results.json; the frames themselves are not warned about."""
    own = tmp_path / 'w' / 'memae.pt'
    own.parent.mkdir()
    shutil.copy(weights, own)
    frames, _ = video_frames(40, seed=9)
    folder = tmp_path / 'cam'
    folder.mkdir()
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f'{k:03d}.png')
    movie = tmp_path / 'cam.avi'
    write_movie(movie, frames)
    score(prepared_root, own, tmp_path / 'cal', '--Video', str(folder), '--Calibrate', 'True',
          '--FalseAlarmRate', '0.1')
    capsys.readouterr()
    plotted = []
    monkeypatch.setattr(utils.single_video, 'plot_decisions', recorded(utils.single_video.plot_decisions,
                                                                       lambda *args: plotted.append(args)))
    score(prepared_root, own, tmp_path / 'out', '--Video', str(movie), '--FalseAlarmRate', '0.1')
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith('warning: ') and
                'unlike the normal footage' in line]  # (random weights also draw the flat-errors warning)
    assert len(warnings) == 1 and 'it is .avi video file, the calibration was made on frame images' in warnings[0]
    assert warnings[0].startswith(f'warning: --Video {movie} looks unlike the normal footage of ')
    assert 'calibrate on normal footage from this source (--Video PATH --Calibrate True)' in warnings[0]
    results = json.loads((tmp_path / 'out' / 'video_cam' / 'results.json').read_text())
    assert results['calibration']['out_of_calibration'] == warnings[0][len('warning: '):]
    (path, name, statistic, threshold, events, clip_len, rule), = plotted  # the default rule's statistic, per frame
    assert (path, name, len(statistic), clip_len, rule) == (tmp_path / 'out' / 'video_cam' / 'decisions.png', 'cam',
                                                            40, 16, 'warmup')
    assert threshold == results['calibration']['threshold'] and len(events) == results['calibration']['events']
    assert warnings[0][len('warning: '):] in results['warnings']
    score(prepared_root, own, tmp_path / 'same', '--Video', str(folder), '--FalseAlarmRate', '0.1')
    assert json.loads((tmp_path / 'same' / 'video_cam' / 'results.json').read_text())['calibration'][
        'out_of_calibration'] is None


def test_frame_windows_read_no_further_than_the_window_they_yield():
    pulled = []

    def frames():
        for t in range(30):
            pulled.append(t)
            yield np.full((4, 4, 1), t, dtype=np.uint8)

    windows = []
    for positions, window in frame_windows(frames(), 8, 5, torch.device('cpu')):
        windows.append((list(positions), len(pulled), window.shape))
        first = (window[:, 0, 0, 0] * 0.5 + 0.5) * 255  # back to the frame numbers
        assert torch.allclose(first, torch.arange(positions[0], positions[0] + window.shape[0]).float())
    # 30 frames, clips of 8: 23 clips in windows of 5 (12 frames each), the last of 3 (10 frames)
    assert windows == [(list(range(0, 5)), 12, (12, 1, 4, 4)), (list(range(5, 10)), 17, (12, 1, 4, 4)),
                       (list(range(10, 15)), 22, (12, 1, 4, 4)), (list(range(15, 20)), 27, (12, 1, 4, 4)),
                       (list(range(20, 23)), 30, (10, 1, 4, 4))]
    with pytest.raises(DataFormatError, match='the video has 7 frames, fewer than the 8 of one clip'):
        list(frame_windows(iter([np.zeros((4, 4, 1), np.uint8)] * 7), 8, 5, torch.device('cpu')))


def test_the_frame_size_comes_from_the_flag_then_the_prepared_data_then_the_release(prepared_root, tmp_path):
    opt = SimpleNamespace(VideoSize=[48, 64], DataRoot=str(prepared_root), Dataset='UCSD_P2_256')
    assert video_frame_size(opt)[0] == (48, 64)
    opt.VideoSize = None
    assert video_frame_size(opt) == ((32, 32), str(prepared_root / 'UCSD_P2_256' / 'prepare.json'))
    opt.DataRoot = str(tmp_path)
    assert video_frame_size(opt)[0] == (256, 256)
    with pytest.raises(SystemExit):
        EvalOptions().parse(['--Video', 'x.mp4', '--VideoSize', '0', '64'], is_print=False)
    (tmp_path / 'UCSD_P2_256').mkdir()
    summary = tmp_path / 'UCSD_P2_256' / 'prepare.json'
    for size in ([1, 16384], [16384, 1]):  # the bounds are frame sizes
        summary.write_text(json.dumps({'size': size}))
        assert video_frame_size(opt) == (tuple(size), str(summary))
    for size in ([-5, 0], [0, 32], [32, 16385], [1e9, 64], [32], '32x32', [True, 32]):  # parses, but no frame size
        summary.write_text(json.dumps({'size': size}))
        with pytest.raises(DataFormatError, match=r'prepare.json holds no frame size \("size": \[H, W\], whole'):
            video_frame_size(opt)
    summary.write_text('{"size": [32,')
    with pytest.raises(InputError, match=re.escape(f'{summary} (the summary of a preparation) is damaged')):
        video_frame_size(opt)


def test_a_video_whose_clip_errors_are_not_finite_is_one_sentence_naming_it(prepared_root, weights, tmp_path,
                                                                           capsys, monkeypatch):
    monkeypatch.setattr(utils.single_video, 'score_windows', lambda *args: np.array([0.1, np.nan, 0.2]))
    video = source_video(prepared_root)
    argv = ['--DataRoot', str(prepared_root), '--OutRoot', str(tmp_path), '--ModelFilePath', str(weights), *MEMAE,
            '--Video', str(video)]
    assert run_cli(script_testing.main, argv) == 2
    assert f'--Video {video}: the score of clip 1 (0-based) is nan, 1 of 3 are not finite' in capsys.readouterr().err


@pytest.mark.parametrize('video, extra, message', [
    ('missing', [], '--Video .*missing does not exist'),
    ('notes.txt', [], 'is neither a folder of frames nor a video file'),
    ('empty', [], 'is a folder without frame images'),
    ('short', [], 'the video has 3 frames, fewer than the 16 of one clip'),
    ('short', ['--Dataset', 'MNIST'], '--Video needs a video model, but --Dataset MNIST'),
    ('mixed', [], r'frame .*mixed/10.png is 12 x 8 pixels, but 0.png is 8 x 8: the frames of one video folder '),
])
def test_bad_videos_are_one_sentence(prepared_root, weights, tmp_path, capsys, video, extra, message):
    (tmp_path / 'notes.txt').write_text('not a video')
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'short').mkdir()
    for t in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / 'short' / f'{t}.png')
    shutil.copytree(tmp_path / 'short', tmp_path / 'mixed')  # 0, 1, 2, then 10 of another size (2 before 10)
    Image.fromarray(np.zeros((8, 12), np.uint8)).save(tmp_path / 'mixed' / '10.png')
    argv = ['--DataRoot', str(prepared_root), '--OutRoot', str(tmp_path / 'out'), '--ModelFilePath', str(weights),
            *MEMAE, '--Video', str(tmp_path / video), *extra]
    assert run_cli(script_testing.main, argv) == 2
    assert re.search(message, capsys.readouterr().err)


def test_calibration_on_normal_footage_then_decisions_and_events(prepared_root, weights, tmp_path, capsys):
    """--Calibrate True keeps the normal video's clip errors beside the weights; --Video then decides every frame
    against the quantile threshold (checked against NumPy's quantile of the same errors), lists the runs of
    anomalous frames as events, and refuses the calibration for other weights."""
    own = tmp_path / 'w' / 'memae.pt'
    own.parent.mkdir()
    shutil.copy(weights, own)
    normal = source_video(prepared_root)
    score(prepared_root, own, tmp_path / 'plain', '--Video', str(normal))  # before: no calibration, no decisions
    plain = tmp_path / 'plain' / 'video_Test001'
    assert 'anomalous' not in (plain / 'frame_scores.csv').read_text().splitlines()[0]
    assert json.loads((plain / 'results.json').read_text())['calibration'] is None
    normal_errors = np.load(plain / 'clip_scores.npy')

    score(prepared_root, own, tmp_path / 'cal', '--Video', str(normal), '--Calibrate', 'True')
    stored = json.loads((tmp_path / 'w' / 'memae_calibration.json').read_text())
    assert stored['clips'] == len(normal_errors) and stored['source'] == str(normal)
    assert (stored['quantiles'][0], stored['quantiles'][-1]) == (normal_errors.min(), normal_errors.max())
    assert not (tmp_path / 'cal').exists()  # calibrating writes the calibration only
    # 5 clips resolve false-alarm rates from 1/5: the default 0.01 is named as too small
    assert (f'calibration from 5 normal clips of {normal} -> {tmp_path / "w" / "memae_calibration.json"}; too few '
            'clips for --FalseAlarmRate 0.01: it resolves rates from 0.2; calibrate on more normal footage for '
            'smaller ones') in capsys.readouterr().out.splitlines()
    # --Calibration names the file; at a rate of exactly 1/5 the line gives the rule's threshold, here the running
    # rule's: its statistic's quantile at 1 - 0.2 (not the raw error's)
    named = tmp_path / 'named_calibration.json'
    score(prepared_root, own, tmp_path / 'cal', '--Video', str(normal), '--Calibrate', 'True', '--Calibration',
          str(named), '--FalseAlarmRate', '0.2', '--DecisionRule', 'running')
    line, = [line for line in capsys.readouterr().out.splitlines() if line.startswith('calibration from')]
    head, threshold = line.rsplit(' ', 1)
    assert head == (f'calibration from 5 normal clips of {normal} -> {named}; at --FalseAlarmRate 0.2 the threshold '
                    'of --DecisionRule running is')
    quantiles = json.loads(named.read_text())
    running, raw = (np.interp(0.8, np.linspace(0, 1, len(values)), values)
                    for values in (quantiles['rules']['running'], quantiles['quantiles']))
    assert float(threshold) == pytest.approx(running, rel=1e-5) and float(threshold) != pytest.approx(raw, rel=1e-5)
    score(prepared_root, own, tmp_path / 'named', '--Video', str(normal), '--Calibration', str(named),
          '--FalseAlarmRate', '0.2', '--DecisionRule', 'running')  # decided with the named file, not the one beside
    decided = json.loads((tmp_path / 'named' / 'video_Test001' / 'results.json').read_text())['calibration']
    assert (decided['file'], decided['rule']) == (str(named), 'running')
    assert decided['threshold'] == pytest.approx(running, rel=1e-12)

    # the calibration footage itself, at a rate whose threshold is one of its five clip errors (the 4th of 5):
    # only the frames of the clip with the largest error lie above it
    capsys.readouterr()
    score(prepared_root, own, tmp_path / 'out', '--Video', str(normal), '--FalseAlarmRate', '0.25',
          '--EventMinFrames', '1', '--EventMergeGap', '0', '--DecisionRule', 'global')
    folder = tmp_path / 'out' / 'video_Test001'
    closing = capsys.readouterr().out.splitlines()[-1]
    rows = (folder / 'frame_scores.csv').read_text().splitlines()
    assert rows[0] == 'frame,source_file,clip,error,regularity,tail_probability,anomalous,statistic'
    error = np.array([float(row.split(',')[3]) for row in rows[1:]])
    anomalous = np.array([int(row.split(',')[6]) for row in rows[1:]])
    assert np.array_equal(np.array([float(row.split(',')[7]) for row in rows[1:]]), error)  # global: the error
    threshold = np.quantile(normal_errors, 0.75)
    assert threshold == np.sort(normal_errors)[3]
    assert np.array_equal(anomalous, (error > threshold).astype(int))
    assert np.array_equal(anomalous, (error == normal_errors.max()).astype(int))
    events = json.loads((folder / 'events.json').read_text())
    assert events['threshold'] == pytest.approx(threshold) and events['anomalous_frames'] == anomalous.sum()
    flagged = [f for e in events['events'] for f in range(e['first_frame'], e['last_frame'] + 1)]
    assert flagged == np.flatnonzero(anomalous).tolist()  # min 1 frame, no merging: the events are the runs
    event_rows = (folder / 'events.csv').read_text().splitlines()
    assert event_rows[0] == 'event,first_frame,last_frame,frames,first_source_file,last_source_file'
    assert len(event_rows) == len(events['events']) + 1
    for k, (row, event) in enumerate(zip(event_rows[1:], events['events'])):  # frames: the event's length
        first, last = event['first_frame'], event['last_frame']
        assert row.split(',') == [str(k), str(first), str(last), str(len(range(first, last + 1))),
                                  event['first_source_file'], event['last_source_file']]
        assert (event['first_source_file'], event['last_source_file']) == (f'{first + 1:03d}.tif',
                                                                             f'{last + 1:03d}.tif')  # UCSD's names
    assert {key: events[key] for key in ('calibration', 'false_alarm_rate', 'rule', 'baseline_clips')} == {
        'calibration': str(tmp_path / 'w' / 'memae_calibration.json'), 'false_alarm_rate': 0.25, 'rule': 'global',
        'baseline_clips': 10}  # --BaselineClips's default, recorded whatever the rule
    assert (folder / 'decisions.png').stat().st_size > 0
    results = json.loads((folder / 'results.json').read_text())
    assert results['calibration'] == {
        'file': str(tmp_path / 'w' / 'memae_calibration.json'), 'false_alarm_rate': 0.25, 'rule': 'global',
        'baseline_clips': 10, 'threshold': events['threshold'], 'anomalous_frames': int(anomalous.sum()),
        'events': len(events['events']), 'out_of_calibration': None}  # its own footage: not out of calibration
    top = results['most_anomalous_frames'][0]
    assert closing == (f"20 frames, 5 clips in {results['seconds']:.1f} s; most anomalous frame {top['frame']} "
                       f"(regularity {top['regularity']:.3f}); {anomalous.sum()} frames above the threshold at "
                       f"--FalseAlarmRate 0.25, {len(events['events'])} event(s) -> {folder}")
    assert {'events.csv', 'events.json', 'decisions.png'} <= set(results['outputs']) <= set(VIDEO_OUTPUTS)
    assert {*results['outputs'], 'results.json', 'opt.txt', 'opt.json'} == {path.name for path in folder.iterdir()}

    # the test set with the same calibration: calibrated.json beside results.json, whose AUC is unchanged
    score(prepared_root, own, tmp_path / 'set', '--FalseAlarmRate', '0.25', '--DecisionRule', 'global')
    res = next((tmp_path / 'set').glob('res_*'))
    report = json.loads((res / 'calibrated.json').read_text())
    assert report['threshold'] == threshold and report['false_alarm_rate']['requested'] == 0.25
    clips = sum(len(np.load(path)) for path in res.glob('Test*.npy'))
    assert report['clips']['normal'] + report['clips']['anomalous'] == clips
    # beside the paper's AUC, the AUC of the rule's causal statistic (global: the raw errors pooled)
    metrics = json.loads((res / 'results.json').read_text())
    assert metrics['auc_of_rule_statistic'] == {'rule': 'global', 'auc': report['auc_of_rule_statistic']}
    assert report['auc_of_rule_statistic'] == pytest.approx(metrics['metrics']['auc_unnormalised'])
    assert isinstance(report['out_of_calibration'], dict)
    plain_set = tmp_path / 'plain_set'
    shutil.copy(own, tmp_path / 'copy.pt')  # the same weights without a calibration beside them
    score(prepared_root, tmp_path / 'copy.pt', plain_set)
    plain_res = next(plain_set.glob('res_*'))
    assert not (plain_res / 'calibrated.json').exists()
    assert json.loads((plain_res / 'results.json').read_text())['auc_of_rule_statistic'] is None
    assert json.loads((res / 'results.json').read_text())['metrics'] == \
        json.loads((plain_res / 'results.json').read_text())['metrics']

    torch.manual_seed(6)  # other weights under the same name: the calibration no longer holds
    torch.save(AutoEncoderCov3DMem(1, 20).state_dict(), own)
    argv = ['--DataRoot', str(prepared_root), '--OutRoot', str(tmp_path / 'refused'), '--ModelFilePath', str(own),
            *MEMAE, '--Video', str(normal)]
    capsys.readouterr()
    assert run_cli(script_testing.main, argv) == 2
    assert 'memae_calibration.json calibrates other weights' in capsys.readouterr().err
    assert not (tmp_path / 'refused' / 'video_Test001' / 'clip_scores.npy').exists()  # refused before scoring
    assert run_cli(script_testing.main, argv + ['--Calibration', str(tmp_path / 'none.json')]) == 2
    assert 'none.json does not exist; write one with --Calibrate True' in capsys.readouterr().err


def test_held_out_training_videos_are_left_out_of_training_and_calibrate(prepared_root, weights, tmp_path):
    """--HoldOutVideos 1: the last training video (Train002) is not among training's clips, the run name says so,
    and --Calibrate True calibrates on that video's clips: the same errors --Video gives its source frames."""
    from data.video_datasets import VideoDataset
    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    assert layout.held_out(1) == ['Train002'] and layout.held_out(0) == []
    everything = VideoDataset(layout.index_dir('train'), layout.frames_dir('train'))
    kept = VideoDataset(layout.index_dir('train'), layout.frames_dir('train'), exclude=layout.held_out(1))
    assert len(kept) == len(everything) - len(list((layout.index_dir('train') / 'Train002').iterdir()))
    assert all('Train002' not in str(folder) for _, folder, _ in kept.clips)
    with pytest.raises(Exception, match='--HoldOutVideos 2 would hold out every training video'):
        layout.held_out(2)
    assert EvalOptions().parse(['--HoldOutVideos', '1'], is_print=False).setting.endswith('_Seed1_HoldOut1_Non')

    own = tmp_path / 'memae.pt'
    shutil.copy(weights, own)
    score(prepared_root, own, tmp_path / 'cal', '--HoldOutVideos', '1', '--Calibrate', 'True')
    stored = json.loads((tmp_path / 'memae_calibration.json').read_text())
    # the same model flags as the calibration's (--HoldOutVideos is part of the run name, which it checks)
    score(prepared_root, own, tmp_path / 'video', '--HoldOutVideos', '1', '--FalseAlarmRate', '0.2', '--Video',
          str(prepared_root.parent / 'src' / 'UCSDped2' / 'Train' / 'Train002'))
    errors = np.load(tmp_path / 'video' / 'video_Train002' / 'clip_scores.npy')
    assert stored['clips'] == len(errors) and 'Train002' in stored['source']
    assert stored['quantiles'][0] == pytest.approx(errors.min(), rel=1e-5)
    assert stored['quantiles'][-1] == pytest.approx(errors.max(), rel=1e-5)


def test_the_heat_maps_share_the_largest_per_frame_percentile_as_their_scale(tmp_path):
    """Every overlay is scaled by the largest frame's HEAT_PERCENTILE-th percentile (a bright region is bright
    relative to the whole video), not by a mean over frames, which would saturate the most anomalous frames."""
    rng = np.random.default_rng(0)
    maps = [rng.random((3, 8, 8)).astype(np.float32) * level for level in (1.0, 5.0, 2.0)]
    store = utils.single_video.ErrorMapStore(tmp_path / 'maps.f16')
    for batch in maps:
        store.add(batch)
    every_frame = np.concatenate(maps).reshape(9, -1)
    expected = max(np.percentile(frame, utils.single_video.HEAT_PERCENTILE) for frame in every_frame)
    assert store.scale() == pytest.approx(expected, rel=1e-12)
    assert store.maps().shape == (9, 8, 8)


def test_a_rerun_into_a_video_folder_keeps_only_its_own_outputs_and_quotes_odd_names(prepared_root, weights,
                                                                                   tmp_path, capsys, monkeypatch):
    """Frame files whose names hold commas stay one CSV field; a second run without --Plots (at another size, in
    bfloat16, channels-last) removes the first run's overlay and figure of the most anomalous frames (they would
    describe the earlier run)."""
    autocasts, scorer_formats = [], []
    monkeypatch.setattr(utils.single_video, 'autocast', recorded(
        utils.single_video.autocast, lambda device, amp: autocasts.append((device.type, amp))))
    monkeypatch.setattr(utils.single_video, 'frame_window_scorer', recorded(
        utils.single_video.frame_window_scorer, lambda model, opt, memory_format: scorer_formats.append(memory_format)))
    frames, _ = video_frames(20, seed=3)
    camera = tmp_path / 'camera'
    camera.mkdir()
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(camera / f'{k:03d},cam 1,2026-12-05 10:00:{k:02d}.png')
    score(prepared_root, weights, tmp_path / 'out', '--Video', str(camera), '--Plots', 'True')
    folder = tmp_path / 'out' / 'video_camera'
    assert (folder / 'most_anomalous.png').is_file()
    with (folder / 'frame_scores.csv').open(newline='') as file:
        header, *body = list(csv.reader(file))
    assert len(body) == 20 and all(len(row) == len(header) for row in body)
    assert body[3][1] == '003,cam 1,2026-12-05 10:00:03.png'
    capsys.readouterr()
    score(prepared_root, weights, tmp_path / 'out', '--Video', str(camera), '--VideoSize', '32', '48', '--AMP', 'bf16',
          '--ChannelsLast', 'True')
    out = capsys.readouterr().out
    assert f'--Video {camera}: frames at 32 x 48 (from --VideoSize), 1 channel(s)' in out
    assert re.fullmatch(rf'20 frames, 5 clips in [0-9.]+ s; most anomalous frame [0-9]+ \(regularity [0-9.]+\) -> '
                        rf'{re.escape(str(folder))}', out.splitlines()[-1])  # no calibration: no decisions
    assert autocasts == [('cpu', 'none'), ('cpu', 'bf16')]
    assert scorer_formats == [torch.contiguous_format, torch.channels_last_3d]
    left = {path.name for path in folder.iterdir()}
    assert 'most_anomalous.png' not in left and not any(name.startswith('overlay.') for name in left)
    assert set(json.loads((folder / 'results.json').read_text())['outputs']) <= left & set(VIDEO_OUTPUTS)


def test_errors_that_hardly_vary_are_shown_raw_with_a_warning(capsys):
    """The demo's 32 x 32 weights on a real Ped2 video: raw errors 0.3983-0.4047, a full 0-1 regularity curve."""
    opt = SimpleNamespace(setting='MemAE_demo', Dataset='SyntheticDemo')
    warnings = utils.single_video.flat_error_warning(np.array([0.3983, 0.40, 0.4047]), opt, (32, 32))
    out = capsys.readouterr().out
    assert 'raw clip errors from 0.3983 to 0.4047' in out and out.count('warning: ') == 1
    assert len(warnings) == 1 and 'span only 1.6% of their level' in warnings[0] and 'SyntheticDemo at 32 x 32' in \
        warnings[0]
    assert utils.single_video.flat_error_warning(np.array([0.1, 0.3, 0.5]), opt, (32, 32)) == []
    assert utils.single_video.flat_error_warning(np.zeros(3), opt, (32, 32))  # all alike: no division by zero
    # The share is of the errors' level, not of 1: errors near 200 spanning 2 (1 %) are flat; a span of exactly 5 %
    # (1 at a level of 20; 0.05 * 20 is 1.0 in float64) is not; the frame size is named as height x width.
    warned = utils.single_video.flat_error_warning(np.array([199.0, 200.0, 201.0]), opt, (32, 48))
    assert len(warned) == 1 and 'span only 1.0% of their level' in warned[0] and 'at 32 x 48:' in warned[0]
    assert utils.single_video.flat_error_warning(np.array([19.5, 20.0, 20.5]), opt, (32, 48)) == []


def test_only_plain_file_names_an_earlier_run_listed_are_taken_as_its_outputs(tmp_path):
    """A damaged or edited results.json must not make a run remove files outside its folder, or its own results."""
    assert utils.single_video.earlier_outputs(tmp_path) == []  # no earlier run
    outputs = ['overlay.gif', '../elsewhere.txt', '..\\error.npy', 'sub/scores.csv', 5, None, [], 'results.json',
               'notes.txt', 'error.npy']
    (tmp_path / 'results.json').write_text(json.dumps({'outputs': outputs}))
    assert utils.single_video.earlier_outputs(tmp_path) == ['overlay.gif', 'error.npy']
    for damaged in ('{"outputs": ', '{"outputs": 5}', '{"outputs": "error.npy"}'):
        (tmp_path / 'results.json').write_text(damaged)
        assert utils.single_video.earlier_outputs(tmp_path) == []  # nothing is removed


def test_a_video_is_named_by_its_folder_or_its_file_stem(tmp_path):
    (tmp_path / 'cam.01').mkdir()
    (tmp_path / 'walk.avi').touch()
    assert utils.single_video.video_name(tmp_path / 'cam.01') == 'cam.01'  # a folder's dot is part of its name
    assert utils.single_video.video_name(tmp_path / 'walk.avi') == 'walk'


def test_the_error_map_store_gives_back_its_maps_and_floors_only_a_scale_of_zeros(tmp_path, monkeypatch):
    """The maps come back as written, to float16's rounding (half a unit in the 11th bit, or the subnormal step),
    batch after batch; errors far below 1 keep their own scale (the 1e-6 floor only keeps an all-zero video from
    dividing by 0); a write that fails names the file."""
    rng = np.random.default_rng(1)
    maps = (rng.random((5, 6, 6)) * 0.01).astype(np.float32)
    store = utils.single_video.ErrorMapStore(tmp_path / 'maps.f16')
    store.add(maps[:2])
    store.add(maps[2:])
    back = np.asarray(store.maps())
    assert back.dtype == np.float16 and back.shape == maps.shape
    np.testing.assert_allclose(back.astype(np.float32), maps, rtol=2.0 ** -11, atol=2.0 ** -25)
    assert store.scale() == pytest.approx(max(np.percentile(m, utils.single_video.HEAT_PERCENTILE) for m in maps))
    zeros = utils.single_video.ErrorMapStore(tmp_path / 'zeros.f16')
    zeros.add(np.zeros((2, 4, 4), np.float32))
    assert zeros.scale() == 1e-6
    from utils.errors import OutputError
    with pytest.raises(OutputError, match=f'cannot write {re.escape(str(tmp_path))}'):
        utils.single_video.ErrorMapStore(tmp_path)  # a folder, not a file
    full = utils.single_video.ErrorMapStore(tmp_path / 'full.f16')

    class FullDisk:
        def write(self, data):
            raise OSError(28, 'No space left on device')
    full.file = FullDisk()
    with pytest.raises(OutputError, match='cannot write .*full.f16: No space left on device'):
        full.add(maps[:1])


def test_the_gif_overlay_holds_the_frames_around_the_peak_at_the_source_rate_and_loops(tmp_path, monkeypatch):
    """Without an MP4 encoder: the frames within GIF_FRAMES / 2 of the most anomalous one (here 8: the 7 frames
    9-15 around frame 12), each shown for one frame period of the source (a 10 frames/s movie: 100 ms), looping;
    each frame is the prepared frame (one channel, as --ImgChnNum 1) with its clip's heat map over it."""
    monkeypatch.setattr(utils.single_video, 'write_movie', lambda path, frames, fps: False)
    monkeypatch.setattr(utils.single_video, 'GIF_FRAMES', 8)
    frames, _ = video_frames(30, seed=4)
    movie = tmp_path / 'cam.avi'
    write_movie(movie, frames, rate=10)
    height, width = frames[0].shape
    maps = np.random.default_rng(2).random((30, height, width)).astype(np.float32)
    store = utils.single_video.ErrorMapStore(tmp_path / 'maps.f16')
    store.add(maps)
    picks = [utils.single_video.Pick(12, 0.1, 1.0)]
    opt = SimpleNamespace(Video=str(movie), ImgChnNum=1)
    out = tmp_path / 'out'
    out.mkdir()
    name = utils.single_video.write_overlays(out, opt, (height, width), store, np.arange(30), picks)
    assert name == 'overlay.gif' and (out / name).is_file()
    with Image.open(out / name) as gif:
        assert gif.n_frames == 7 and gif.info['duration'] == 100 and gif.info['loop'] == 0
    pick = picks[0]
    assert pick.image.shape == (height, width, 1)
    expected = utils.plots.heat_overlay(pick.image, np.asarray(store.maps())[12], store.scale())
    assert np.array_equal(pick.overlay, expected)
