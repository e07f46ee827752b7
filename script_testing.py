"""Score every clip of a prepared test set with a trained MemAE or AE, and compute the frame-level AUC; for the
image and KDDCUP99 experiments, evaluate the trained model of every protocol unit (utils/experiments/images.py,
.../kdd.py).

    python script_testing.py --ModelName MemAE --ModelSetting Conv3DSpar --Dataset UCSD_P2_256 \
        --MemDim 2000 --EntropyLossWeight 0.0002 --ShrinkThres 0.0025 --Seed 1 \
        --ModelRoot ./memae_models/ --DataRoot ./dataset/ --OutRoot ./results/ --Suffix Non

Writes, as the released script did, ``<OutRoot>/res_<setting>/<Video>.npy`` (the clip scores in clip order)
and ``acc.txt`` (the data path, then ``AUC: <value>``) with the released label files
``<last video>_gt_label.mat`` / ``_est_label.mat`` (see utils/eval.py); and ``results.json`` (every metric of
:mod:`utils.eval`, the weights used and the options) with ``opt.txt`` / ``opt.json``; with ``--Plots True``, the
figures of :mod:`utils.plots` under ``plots/``. When the prepared data has pixel masks (``testing_masks/``),
``results.json`` also holds the localization measures of :mod:`utils.localization` under ``localization``.

    python script_testing.py <the same model flags> --Video PATH

scores one video file or folder of frames instead, without preparation or ground truth (utils/single_video.py);
``--Calibrate True`` scores normal footage that way and keeps its error distribution beside the weights, after
which ``--Video`` also decides per frame and lists events, and a test set's ``calibrated.json`` says whether the
threshold holds on it (utils/calibration.py, docs/DEPLOYMENT.md). ``--Stream SOURCE`` decides frames as they
arrive, from a camera, a URL, a video file or a folder being filled (utils/live_stream.py).
"""
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from data.layout import VideoLayout
from data.readers import read_ground_truth
from data.registry import dataset_spec, family_of
from data.video_datasets import VideoDatasetOneDir
from models import is_memory_model
from options import TestOptions
from utils.calibration import FRAME_IMAGES, calibration_mismatch, decision_report
from utils.checkpoint import load_model
from utils.errors import InputError, run_cli
from utils.files import save_npy, write_json
from utils.experiments import one_class_experiment
from utils.paths import input_folder, output_folder
from utils.eval import VideoResult, align_labels, centre_frames_from_clips, evaluate, write_acc_txt, \
    write_label_mats, write_results_json
from utils.live_stream import score_stream
from utils.localization import LocalizationAccumulator
from utils.memory_usage import SlotUsage
from utils.plots import write_test_plots
from utils.runtime import autocast, select_device, set_precision
from utils.scoring import held_out_clip_errors, prepared_video_scorer, resolve_score_type
from utils.single_video import (calibrate_on_video, checked_calibration, save_calibration, score_single_video,
                                video_frame_size)


def calibrate_on_held_out_videos(opt, model, weights, device, memory_model):
    """--Calibrate True with --HoldOutVideos N: the clip errors of the training videos held out of training, as
    a calibration file beside the weights (or at --Calibration); returns its path."""
    score = resolve_score_type(opt.ScoreType, opt.ModelName)
    errors = held_out_clip_errors(opt, model, device, memory_model, score)
    layout = VideoLayout(Path(opt.DataRoot) / opt.Dataset)
    return save_calibration(opt, weights, list(errors.values()),
                            f"the held-out training videos {', '.join(errors)} of {layout.root}", score,
                            video_frame_size(opt)[0], FRAME_IMAGES)


def main(argv=None):
    options = TestOptions()
    opt = options.parse(argv)
    input_folder(opt.DataRoot, '--DataRoot')
    output_folder(opt.OutRoot, '--OutRoot')
    device = select_device(opt.UseCUDA)
    set_precision(opt.AMP)
    if opt.Video or opt.Stream:  # video of the user's own: no prepared data set, no ground truth
        flag = '--Video' if opt.Video else '--Stream'
        if family_of(opt.Dataset, opt.DataRoot) != 'video':
            raise InputError(f'{flag} needs a video model, but --Dataset {opt.Dataset} names an image or KDDCUP99 '
                             f'data set')
        model, weights = load_model(opt, device)
        print(f'weights: {weights}')
        if opt.Stream:
            score_stream(opt, options, model, weights, device, is_memory_model(opt.ModelName))
        elif opt.Calibrate:
            calibrate_on_video(opt, model, weights, device, is_memory_model(opt.ModelName))
        else:
            score_single_video(opt, options, model, weights, device, is_memory_model(opt.ModelName))
        return 0
    spec = dataset_spec(opt.Dataset, opt.DataRoot)
    if spec.family != 'video':  # images and KDDCUP99: evaluate the trained model of every protocol unit
        one_class_experiment(spec.family).run(opt, options, spec, device, train=False)
        return 0
    layout = VideoLayout(Path(opt.DataRoot) / opt.Dataset)
    model, weights = load_model(opt, device)
    print(f'weights: {weights}')
    if opt.Calibrate:  # the held-out training videos (--HoldOutVideos); --Video was handled above
        calibrate_on_held_out_videos(opt, model, weights, device, is_memory_model(opt.ModelName))
        return 0
    res_path = Path(opt.OutRoot) / f'res_{opt.setting}'
    score = resolve_score_type(opt.ScoreType, opt.ModelName)
    memory_model = is_memory_model(opt.ModelName)
    checked = checked_calibration(opt, weights, score, video_frame_size(opt)[0])  # a refusal comes before scoring

    # Every index and ground-truth file is read (and checked) before the first clip is scored: bad data fails early.
    datasets, frame_labels, centres = {}, {}, {}
    for name in layout.videos('test'):
        datasets[name] = VideoDatasetOneDir.in_layout(layout, 'test', name, channels=opt.ImgChnNum,
                                                      frame_num=opt.FrameNum)
        frame_labels[name] = read_ground_truth(layout.gt_file(name))
        centres[name] = centre_frames_from_clips(datasets[name].frame_indices())
    clip_labels = {name: align_labels(frame_labels[name], centres[name], f'{name} ({layout.gt_file(name)})')
                   for name in datasets}
    mask_dirs = {name: folder for name in datasets if (folder := layout.mask_dir(name)) is not None}
    localizer = LocalizationAccumulator() if mask_dirs else None

    options.save(opt, res_path)
    # The figures' memory usage is recorded while scoring, not by another pass over the test set.
    usage = SlotUsage(model.mem_rep) if opt.Plots and memory_model else nullcontext()
    started = time.perf_counter()
    videos = []
    video_scores = prepared_video_scorer(model, opt, score, device, memory_model)
    with torch.inference_mode(), autocast(device, opt.AMP), usage:
        for name, dataset in tqdm(datasets.items(), desc='test videos', unit='video'):
            on_maps = localizer.video(name, centres[name], mask_dirs[name]) if name in mask_dirs else None
            scores = video_scores(dataset, f'test video {name} ({layout.frames_dir("test") / name})', on_maps)
            save_npy(res_path / f'{name}.npy', scores)
            videos.append(VideoResult(name, scores, clip_labels[name]))
    seconds = time.perf_counter() - started

    evaluation = evaluate(videos)
    data_path = f'{layout.root}/'
    write_acc_txt(res_path, data_path, evaluation.auc)
    write_label_mats(res_path, videos)
    localization = localizer.as_dict() if localizer else None
    report = None
    if checked:  # beyond the paper: does the calibrated threshold hold on the labelled test set?
        report = decision_report(videos, checked.threshold, opt.FalseAlarmRate, opt.EventMinFrames,
                                 opt.EventMergeGap, checked.rule, checked.baseline_clips)
        outside = {video.name: reasons for video in videos if (reasons := calibration_mismatch(
            checked.calibration, video.scores[:opt.BaselineClips], FRAME_IMAGES))}
        report['out_of_calibration'] = outside
        if outside:
            print(f'warning: {len(outside)} of {len(videos)} test videos look unlike the normal footage of '
                  f'{checked.file.name} in their first {opt.BaselineClips} clips ({", ".join(outside)}): one that '
                  f'starts inside an anomaly does; otherwise another camera, encoding or lighting (calibrated.json)')
        write_json(res_path / 'calibrated.json', {'calibration': str(checked.file), **report})
    write_results_json(res_path, evaluation, {
        'setting': opt.setting, 'weights': str(weights), 'data_path': data_path, 'score': score,
        'test_seconds': seconds, 'clips_per_second': evaluation.num_clips / seconds, 'device': str(device),
        'localization': localization,
        'auc_of_rule_statistic': None if report is None else {'rule': checked.rule,
                                                              'auc': report['auc_of_rule_statistic']},
        'options': vars(opt)})
    if localization:
        print(f"localization ({localization['frames']} frames with masks): pixel-level criterion AUC "
              f"{localization['pixel_level_auc']:.4f}, EER {localization['pixel_level_eer']:.4f}; pixel-wise AUROC "
              f"{localization['pixel_auroc']:.4f}")
    if report:
        realised = report['false_alarm_rate']['realised']
        print(f"calibrated threshold ({checked.file.name}, --DecisionRule {checked.rule}, --FalseAlarmRate "
              f"{opt.FalseAlarmRate:g}): false-alarm rate on the normal test clips "
              f"{'-' if realised is None else f'{realised:.4f}'}; clip F1 {report['clips']['f1']:.4f}; "
              f"{report['events']['detected']} of {report['events']['anomalous_runs']} anomalous events detected, "
              f"{report['events']['false_alarms']} false-alarm events -> calibrated.json")
    if evaluation.constant_score_videos:
        print(f'note: constant scores (regularity set to 1) in {", ".join(evaluation.constant_score_videos)}')
    if opt.Plots:
        folder = write_test_plots(res_path, videos, frame_labels, centres, datasets, evaluation, model,
                                  memory_model, usage if memory_model else None, localizer)
        print(f'figures: {folder}')
    causal = '' if report is None else f", {checked.rule} rule's causal score {report['auc_of_rule_statistic']:.4f}"
    print(f'beside the paper\'s AUC: raw errors pooled {evaluation.auc_unnormalised:.4f}, mean per-video AUC '
          f'{evaluation.mean_video_auc:.4f}{causal}')
    print(f'AUC: {evaluation.auc} ({evaluation.num_clips} clips, {seconds:.1f} s) -> {res_path}')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
