"""Every option is accounted for wherever a saved artefact is checked against the run that uses it: a video
training state (--Resume), a one-class unit's training state (--Resume auto) and a calibration (--Calibration).
Each option either changes the run name (so the artefact belongs to another run), is in that artefact's signature
(so a change is refused), or is listed here with the reason a change is allowed. A new option, or one dropped
from a signature, fails until someone decides which it is."""
import copy

import pytest
import torch

from options import TestOptions as EvalOptions  # a Test* name would be collected by pytest
from options import TrainOptions
from options.base_options import model_setting, resolve_family_defaults
from utils.checkpoint import (CheckpointError, VIDEO_RESUME_SIGNATURE, load_training_state, save_training_state,
                              video_resume_signature)
from utils.one_class import RESUME_SIGNATURE
from utils.single_video import calibration_signature

# Options that change nothing a saved artefact depends on, whatever the path: where files go and what is printed.
OUTPUTS = {'DataRoot': 'where the data set lies (its name is in the run name)', 'ModelRoot': 'where weights lie',
           'OutRoot': 'where results go', 'Debug': 'tracebacks', 'PrintOptions': 'what is printed',
           'Mode': 'kept from the release; the script decides', 'Download': 'fetching a data set, not its content'}
# Speed options that change rounding only (the --help section says so), and determinism.
ROUNDING = {'UseCUDA': 'the device: rounding', 'NumWorker': 'loading processes', 'Compile': 'fused kernels: rounding',
            'ChannelsLast': 'memory layout: rounding', 'PreloadFrames': 'where frames are decoded to',
            'IsDeter': "cuDNN's determinism"}
TRAINING_OUTPUTS = {'IsTbLog': 'TensorBoard', 'TextLogInterval': 'the log', 'SnapInterval': 'snapshots',
                    'TBImgLogInterval': 'TensorBoard', 'SaveCheckInterval': 'checkpoints',
                    'KeepIntermediate': 'which files stay', 'Resume': 'the flag that resumes'}
ONE_CLASS_ONLY = {name: 'read by the image and KDD experiments only' for name in
                  ('NormalClass', 'Runs', 'Protocol', 'AnomalyRatio', 'EarlyStopping', 'Lockstep', 'LRGrid',
                   'ShrinkThresGrid')}
ALLOWED = {
    'video training state': {**OUTPUTS, **ROUNDING, **TRAINING_OUTPUTS, **ONE_CLASS_ONLY,
                             'AMP': 'precision: a resumed GPU run may run in another one (rounding of the steps)',
                             'EpochNum': 'a finished number of epochs may grow: training goes on',
                             'ScoreType': 'scoring only', 'L1Weight': 'named in the run name of the AE-l1, the one '
                             'model it trains', 'Seed': 'the random states come from the training state'},
    'one-class training state': {**OUTPUTS, **ROUNDING, **TRAINING_OUTPUTS,
                                 'AMP': 'video only', 'FrameNum': 'video only', 'HoldOutVideos': 'video only',
                                 'NormalClass': 'which units run: each unit has its own state',
                                 'Runs': 'how many units run: each unit has its own state',
                                 'Lockstep': 'one unit after another or together: rounding (docs/SPEED.md)',
                                 'L1Weight': 'named in the run name of the AE-l1, the one model it trains',
                                 'ImgChnNum': 'fixed by the data set, which the run name names'},
    'calibration': {**OUTPUTS, **ROUNDING, **ONE_CLASS_ONLY,
                    'ClipWindow': 'clip windows: scores equal up to rounding (docs/FIDELITY.md)',
                    'BatchSize': 'scoring batches: rounding', 'Plots': 'figures', 'ModelFilePath': 'the weights '
                    'are checked by their sha256', 'Video': 'the footage scored', 'Stream': 'the footage scored',
                    'StreamFormat': 'how a device is opened', 'Calibrate': 'whether to calibrate',
                    'Calibration': 'which calibration', 'FalseAlarmRate': 'the decision rule, read from the '
                    'calibration at use', 'EventMinFrames': 'events from the decisions',
                    'EventMergeGap': 'events from the decisions',
                    'DecisionRule': 'the calibration keeps every rule\'s quantiles; one it lacks is refused',
                    'BaselineClips': 'checked against the calibration\'s baseline_clips when a rule uses it '
                    '(test_decision_rules.py)', 'L1Weight': 'named in the run name of the '
                    'AE-l1, the one model it trains'},
}
CALIBRATION_FIELDS = {'score': 'ScoreType', 'frame_size': 'VideoSize'}  # signature field -> option, where they differ


def calibration_options():
    """The options in a calibration's signature (its run name aside)."""
    opt = EvalOptions().parser.parse_args([])
    opt.setting = model_setting(opt)
    return {CALIBRATION_FIELDS.get(field, field) for field in calibration_signature(opt, 'l2', (32, 32))} - {'setting'}


SIGNATURES = {'video training state': set(VIDEO_RESUME_SIGNATURE),
              'one-class training state': set(RESUME_SIGNATURE) - {'setting'},
              'calibration': calibration_options()}
PATHS = {'video training state': (TrainOptions, 'video', 'UCSD_P2_256'),
         'one-class training state': (TrainOptions, 'tabular', 'KDDCUP99'),
         'calibration': (EvalOptions, 'video', 'UCSD_P2_256')}


def other_value(action, value):
    """A valid value of ``action``'s option that differs from ``value``."""
    if action.choices:
        return next(choice for choice in action.choices if choice != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value * 2 + 1
    if action.nargs == 2:
        return [16, 16]
    return 'other'


def names_the_run(opt, name, action):
    changed = copy.copy(opt)
    setattr(changed, name, other_value(action, getattr(opt, name)))
    return model_setting(changed) != model_setting(opt)


@pytest.mark.parametrize('path', sorted(PATHS))
def test_every_option_is_in_the_run_name_the_signature_or_allowed_with_a_reason(path):
    options_class, family, dataset = PATHS[path]
    options = options_class()
    opt = options.parser.parse_args(['--Dataset', dataset])
    resolve_family_defaults(opt, family)
    actions = {action.dest: action for action in options.parser._actions if action.dest != 'help'}
    in_name = {name for name, action in actions.items() if names_the_run(opt, name, action)}
    assert {'ModelName', 'Dataset', 'MemDim', 'ShrinkThres', 'Suffix'} <= in_name  # the check itself works
    signature, allowed = SIGNATURES[path], ALLOWED[path]
    unaccounted = set(actions) - in_name - signature - set(allowed)
    assert not unaccounted, f'{path}: decide for {sorted(unaccounted)}'
    assert not (signature & set(allowed)), f'{path}: both checked and allowed: {sorted(signature & set(allowed))}'


def test_the_calibration_signature_holds_the_options_it_is_said_to():
    opt = EvalOptions().parser.parse_args([])
    opt.setting = model_setting(opt)
    signature = calibration_signature(opt, 'l2', (32, 32))
    assert {'setting', 'score', 'FrameNum', 'ImgChnNum', 'frame_size', 'AMP'} == set(signature)
    for name, field in (('AMP', 'AMP'), ('FrameNum', 'FrameNum'), ('ImgChnNum', 'ImgChnNum')):
        changed = copy.copy(opt)
        setattr(changed, name, other_value(next(a for a in EvalOptions().parser._actions if a.dest == name),
                                           getattr(opt, name)))
        assert calibration_signature(changed, 'l2', (32, 32))[field] != signature[field], name


@pytest.mark.parametrize('name', VIDEO_RESUME_SIGNATURE)
def test_a_video_training_state_refuses_a_run_with_another_value_of_each_signature_option(name, tmp_path):
    opt = TrainOptions().parser.parse_args([])
    resolve_family_defaults(opt, 'video')
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    path = tmp_path / 'state.pt'
    save_training_state(path, model, optimizer, 1, 3, {}, 'run', video_resume_signature(opt))
    assert load_training_state(path, 'run', video_resume_signature(opt))['epochs_done'] == 1
    changed = copy.copy(opt)
    action = next(a for a in TrainOptions().parser._actions if a.dest == name)
    setattr(changed, name, other_value(action, getattr(opt, name)))
    with pytest.raises(CheckpointError, match=f'was trained with {name} '):
        load_training_state(path, 'run', video_resume_signature(changed))


def test_a_video_run_resumed_with_another_learning_rate_is_refused_and_one_going_on_longer_is_not(
        prepared_root, tmp_path, capsys):
    from test_robustness import train
    assert train(prepared_root, tmp_path, '--EpochNum', '1', '--KeepIntermediate', 'True') == 0
    assert train(prepared_root, tmp_path, '--EpochNum', '2', '--LR', '1e-3', '--Resume', 'auto') == 2
    assert 'was trained with LR 0.0001, now 0.001' in capsys.readouterr().err
    assert train(prepared_root, tmp_path, '--EpochNum', '2', '--Resume', 'auto', '--AMP', 'bf16') == 0
