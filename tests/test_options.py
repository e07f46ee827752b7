import argparse
import json

import pytest

from options import TestOptions as EvalOptions  # a name starting with "Test" is collected by pytest
from options import TrainOptions, str2bool
from utils.checkpoint import candidate_paths

# The flag lists of the released shell scripts, verbatim.
RELEASED_TEST_MEMAE = ('--ModelName MemAE --ModelSetting Conv3DSpar --Dataset UCSD_P2_256 --MemDim 2000 '
                       '--EntropyLossWeight 0.0002 --ShrinkThres 0.0025 --Seed 1 --ModelRoot ./memae_models/ '
                       '--ModelFilePath None --DataRoot ./dataset/ --OutRoot ./results/ --Suffix Non').split()
RELEASED_TEST_AE = ('--ModelName AE --ModelSetting Conv3D --Dataset UCSD_P2_256 --ModelRoot ./memae_models/ '
                    '--DataRoot ./dataset/ --OutRoot ./results/ --Suffix Non').split()
RELEASED_TRAIN_MEMAE = ('--ModelName MemAE --ModelSetting Conv3DSpar --Dataset UCSD_P2_256 --MemDim 2000 '
                        '--EntropyLossWeight 0.0002 --ShrinkThres 0.0025 --BatchSize 10 --Seed 1 '
                        '--SaveCheckInterval 1 --IsTbLog True --IsDeter True --DataRoot ./datasets/processed/ '
                        '--ModelRoot ./results/ --Suffix Non').split()

RELEASED_TEST_DEFAULTS = {
    'UseCUDA': True, 'Mode': 'eval', 'ModelName': 'MemAE', 'ModelSetting': 'Conv3DSpar', 'Seed': 1,
    'Dataset': 'UCSD_P2_256', 'ImgChnNum': 1, 'FrameNum': 16, 'BatchSize': 1, 'MemDim': 2000,
    'EntropyLossWeight': 0.0002, 'ShrinkThres': 0.0025, 'ModelRoot': './memae_models/', 'ModelFilePath': None,
    'DataRoot': './dataset/', 'OutRoot': './results/', 'Suffix': 'Non'}
RELEASED_TRAIN_DEFAULTS = {
    'UseCUDA': True, 'NumWorker': 1, 'Mode': 'train', 'ModelName': 'MemAE', 'ModelSetting': 'Conv3DSpar', 'Seed': 1,
    'IsDeter': True, 'IsTbLog': True, 'Dataset': 'UCSD_P2_256', 'ImgChnNum': 1, 'FrameNum': 16, 'BatchSize': 14,
    'LR': 1e-4, 'EpochNum': 100, 'MemDim': 2000, 'EntropyLossWeight': 0.0002, 'ShrinkThres': 0.0025,
    'TextLogInterval': 1, 'SnapInterval': 100, 'TBImgLogInterval': 200, 'SaveCheckInterval': 1,
    'DataRoot': './dataset/', 'ModelRoot': './memae_models/', 'Suffix': 'Non'}


@pytest.mark.parametrize('options, defaults', [(EvalOptions, RELEASED_TEST_DEFAULTS),
                                               (TrainOptions, RELEASED_TRAIN_DEFAULTS)])
def test_released_flags_keep_names_and_defaults(options, defaults):
    opt = vars(options().parse([], is_print=False))
    assert {k: opt[k] for k in defaults} == defaults
    for value, default in ((opt[k], defaults[k]) for k in defaults):
        assert type(value) is type(default)


def test_released_test_script_flags_build_the_released_setting():
    opt = EvalOptions().parse(RELEASED_TEST_MEMAE, is_print=False)
    assert opt.setting == 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_Seed1_Non'
    assert opt.ModelFilePath is None  # the released script passed the string 'None'


def test_released_ae_flags_build_the_released_file_name():
    opt = EvalOptions().parse(RELEASED_TEST_AE, is_print=False)
    assert opt.setting == 'AE_Conv3D_UCSD_P2_256_Non'
    assert str(candidate_paths(opt)[0]) == 'memae_models/AE_Conv3D_UCSD_P2_256_Non.pt'


def test_released_train_script_flags_parse():
    opt = TrainOptions().parse(RELEASED_TRAIN_MEMAE, is_print=False)
    assert (opt.BatchSize, opt.IsTbLog, opt.IsDeter, opt.ModelRoot) == (10, True, True, './results/')
    assert opt.setting == 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_Seed1_Non'


def test_setting_uses_python_str_of_the_numbers():
    opt = EvalOptions().parse('--MemDim 500 --EntropyLossWeight 0 --ShrinkThres 1e-3 --Seed 7 --Suffix X'.split(),
                              is_print=False)
    assert opt.setting == 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim500_EntW0.0_ShrThres0.001_Seed7_X'


def test_cosine_addressing_gets_its_own_run_name():
    opt = EvalOptions().parse(['--MemAddressing', 'cosine'], is_print=False)
    assert opt.setting == 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_AddrCosine_Seed1_Non'


def test_a_temperature_other_than_one_gets_its_own_run_name(capsys):
    opt = EvalOptions().parse(['--MemTemperature', '0.1', '--MemAddressing', 'cosine'], is_print=False)
    assert opt.setting == ('MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_AddrCosine_Temp0.1'
                           '_Seed1_Non')
    assert '_Temp' not in EvalOptions().parse(['--MemTemperature', '1'], is_print=False).setting
    with pytest.raises(SystemExit):
        EvalOptions().parse(['--MemTemperature', '0'], is_print=False)
    assert '--MemTemperature must be positive' in capsys.readouterr().err


def test_image_layer_options_name_themselves_in_every_model_run_name(capsys):
    image = ['--Dataset', 'MNIST', '--ModelSetting', 'Conv2DSpar', '--MemDim', '100', '--ShrinkThres', '0.01']
    layers = ['--ImageFirstKernel', '3', '--ImageCodeChannels', '16', '--ImageRange', 'symmetric_tanh']
    memae = EvalOptions().parse(image + layers, is_print=False)
    assert memae.setting == ('MemAE_Conv2DSpar_MNIST_MemDim100_EntW0.0002_ShrThres0.01_AddrCosine_Seed1_Kernel3'
                             '_Code16_RangeSymmetric_tanh_Non')
    ae = EvalOptions().parse(['--ModelName', 'AE', '--ModelSetting', 'Conv2D', '--Dataset', 'MNIST',
                              '--ImageRange', 'unit_sigmoid'], is_print=False)
    assert ae.setting == 'AE_Conv2D_MNIST_RangeUnit_sigmoid_Non'
    # the defaults (0: the architecture's; unit) leave the released-style names alone
    assert EvalOptions().parse(image, is_print=False).setting == \
        'MemAE_Conv2DSpar_MNIST_MemDim100_EntW0.0002_ShrThres0.01_AddrCosine_Seed1_Non'
    for flags, message in [(['--ImageFirstKernel', '2'], '--ImageFirstKernel must be odd'),
                           (['--ImageCodeChannels', '-4'], '--ImageCodeChannels must not be negative'),
                           (['--ImageCodeChannels', '8', '--Dataset', 'KDDCUP99'],
                            '--ImageCodeChannels change(s) the image networks; --Dataset KDDCUP99 is not an image')]:
        with pytest.raises(SystemExit):
            EvalOptions().parse(['--Dataset', 'MNIST', *flags], is_print=False)
        assert message in capsys.readouterr().err


def test_auto_choices_follow_the_data_family_of_any_dataset_name(tmp_path):
    (tmp_path / 'Digits' / 'zero').mkdir(parents=True)  # a folder of class folders: an image data set
    images = TrainOptions().parse(['--Dataset', 'Digits', '--DataRoot', str(tmp_path)], is_print=False)
    assert (images.MemAddressing, images.LossScaling) == ('cosine', 'paper')
    unknown = TrainOptions().parse(['--Dataset', 'Nowhere', '--DataRoot', str(tmp_path)], is_print=False)
    assert (unknown.MemAddressing, unknown.LossScaling) == ('dot', 'released')  # reported later, as before
    chosen = TrainOptions().parse(['--Dataset', 'Digits', '--DataRoot', str(tmp_path), '--MemAddressing', 'dot',
                                   '--LossScaling', 'released'], is_print=False)
    assert (chosen.MemAddressing, chosen.LossScaling) == ('dot', 'released')  # an explicit choice stays


def test_released_weights_name_without_seed_is_a_candidate():
    opt = EvalOptions().parse(RELEASED_TEST_MEMAE, is_print=False)
    names = [p.name for p in candidate_paths(opt)]
    assert names[:2] == ['MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_Seed1_Non.pt',
                         'MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_Non.pt']


@pytest.mark.parametrize('word', ['yes', 'True', 't', 'Y', '1'])
def test_str2bool_true(word):
    assert str2bool(word) is True


@pytest.mark.parametrize('word', ['no', 'FALSE', 'f', 'n', '0'])
def test_str2bool_false(word):
    assert str2bool(word) is False


def test_str2bool_rejects_other_words():
    with pytest.raises(argparse.ArgumentTypeError):
        str2bool('maybe')


def test_bad_values_are_rejected_naming_the_flag(capsys):
    with pytest.raises(SystemExit):
        TrainOptions().parse(['--Mode', 'eval'], is_print=False)
    assert '--Mode eval' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        EvalOptions().parse(['--BatchSize', '0'], is_print=False)
    assert '--BatchSize' in capsys.readouterr().err


def test_options_are_printed_with_non_defaults_marked_and_saved(tmp_path, capsys):
    options = EvalOptions()
    opt = options.parse(['--MemDim', '100', '--PrintOptions', 'True'], is_print=True)
    printed = capsys.readouterr().out
    memdim_line = next(line for line in printed.splitlines() if line.strip().startswith('MemDim'))
    seed_line = next(line for line in printed.splitlines() if line.strip().startswith('Seed'))
    assert '[default: 2000]' in memdim_line and 'default' not in seed_line
    options.save(opt, tmp_path / 'run')
    assert (tmp_path / 'run' / 'opt.txt').read_text().strip() == options.format_options(opt)
    assert json.loads((tmp_path / 'run' / 'opt.json').read_text())['MemDim'] == 100


def test_auto_resolved_choices_count_as_defaults_when_printed(tmp_path):
    options = TrainOptions()
    opt = options.parse(['--Dataset', 'MNIST'], is_print=False)
    assert 'MemAddressing' not in dict(options.changed_options(opt))  # cosine is what auto gives MNIST
    opt = options.parse(['--Dataset', 'MNIST', '--MemAddressing', 'dot'], is_print=False)
    assert dict(options.changed_options(opt))['MemAddressing'] == 'dot'
    assert '[default: cosine]' in options.format_options(opt)


def test_help_is_grouped_so_a_flag_is_found_by_what_it_is_about():
    """--help lists the flags in sections (model, data, the script's own, speed, outputs, image/KDD only); every
    flag is in one, none is left in argparse's catch-all section but --help itself."""
    from options.base_options import ARGUMENT_GROUPS
    for options, own in ((TrainOptions(), 'training'), (EvalOptions(), 'testing')):
        groups = {group.title: [a.option_strings[0] for a in group._group_actions]
                  for group in options.parser._action_groups}
        assert [title for title in groups if title not in ('positional arguments', 'options')] == [
            title.format(script=options.run_title) for title in ARGUMENT_GROUPS.values()]
        assert groups['options'] == ['-h']
        assert options.run_title.startswith(own)
        model = next(t for t in groups if t.startswith('model'))
        assert {'--ModelName', '--MemDim', '--ShrinkThres', '--MemAddressing'} <= set(groups[model])
        assert '--UseCUDA' in groups[next(t for t in groups if t.startswith('device'))]
        assert '--Runs' in groups['image and KDDCUP99 experiments only']
        assert ('--LR' in groups[options.run_title]) == (own == 'training')
        assert ('--Video' in groups[options.run_title]) == (own == 'testing')
        help_text = options.parser.format_help()
        assert all(f'\n{title}:' in help_text for title in groups if title != 'positional arguments')


def test_a_mistyped_flag_gets_the_flag_it_is_closest_to(capsys):
    with pytest.raises(SystemExit) as stop:
        EvalOptions().parse(['--UseCuda', 'False', '--Modelname', 'AE', '--Zzz', '1'])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'unrecognized arguments: --UseCuda False --Modelname AE --Zzz 1' in err
    assert 'did you mean --UseCUDA for --UseCuda, --ModelName for --Modelname?' in err  # nothing near --Zzz
    with pytest.raises(SystemExit):
        TrainOptions().parse(['--BatchSize', 'x'])
    assert 'did you mean' not in capsys.readouterr().err  # a bad value is no typo of a flag


@pytest.mark.parametrize('flags, message', [
    (['--EntropyLossWeight', 'nan'], '--EntropyLossWeight must be a finite number, got nan'),
    (['--MemTemperature', 'inf'], '--MemTemperature must be a finite number, got inf'),
    (['--ShrinkThres=-inf'], '--ShrinkThres must be a finite number, got -inf'),
    (['--Suffix', '../../../x'], "--Suffix is part of the run name"),
    (['--Suffix', 'exp/2'], "got 'exp/2'"),
    (['--ModelSetting', 'a\\b'], '--ModelSetting is part of the run name'),
    (['--Dataset', '..'], '--Dataset is part of the run name'),
])
def test_numbers_that_pass_range_checks_and_names_that_are_paths_are_refused(flags, message, capsys):
    """NaN fails every comparison, so `< 0` checks let it through; a run name with a path writes elsewhere."""
    for options in (TrainOptions(), EvalOptions()):
        with pytest.raises(SystemExit) as stop:
            options.parse(flags)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and message in err and err.count('\n') == 1


def test_the_validation_program_refuses_a_negative_window(capsys):
    from utils.experiments import validation
    with pytest.raises(SystemExit):
        validation.main(['kdd', '--Window', '-1'])
    assert '--Window must be 0 or more epochs' in capsys.readouterr().err


def test_compile_without_a_compiler_is_one_sentence(monkeypatch, capsys, tmp_path):
    """torch.compile fails only at the first step, with a 90-line traceback from its code generation."""
    import options.base_options as base
    real = base.cxx_compiler
    monkeypatch.setenv('PATH', str(tmp_path))  # no compiler on it
    monkeypatch.delenv('CXX', raising=False)
    assert real() is None
    for options in (TrainOptions(), EvalOptions()):
        with pytest.raises(SystemExit):
            options.parse(['--Compile', 'True'])
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and 'needs a C++ compiler; none was found' in err
    assert TrainOptions().parse(['--Compile', 'False'], is_print=False).Compile is False
    compiler = tmp_path / 'my-c++'
    compiler.write_text('#!/bin/sh\n')
    compiler.chmod(0o755)
    monkeypatch.setenv('CXX', str(compiler))
    assert real() == str(compiler)
