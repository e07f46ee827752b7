"""The commands a new user types first: `bash test.sh` with no argument on prepared data and the released file
name, `python script_eval_video.py` on the scores it saved, the released names of `import utils`, --help."""
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io as sio
import torch
from sklearn import metrics

import utils
from models import AutoEncoderCov3DMem
from options import TestOptions as EvalOptions  # a name starting with "Test" is collected by pytest
from options import TrainOptions
from shell import REPO, SHELL_TIMEOUT, run_script
from utils.released_names import UnNormalize

RELEASED_SETTING = 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_Seed1_Non'
RELEASED_FILE = 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_Non.pt'


def independent_released_auc(data, res):
    """The released evaluation from the files alone: every test video's gt[8:-7] (16-frame clips at stride 1),
    regularity 1 - (e - min) / (max - min) per video, normal = 2 and anomalous = 1, ROC with positive label 2."""
    labels, regular = [], []
    for gt_file in sorted((data / 'testing_gt').glob('*.mat')):
        gt = sio.loadmat(str(gt_file))['l'][0]
        e = np.load(res / f'{gt_file.stem}.npy')
        labels += list(2 - gt[8:-7])
        regular += list(1 - (e - e.min()) / (e - e.min()).max())
    fpr, tpr, _ = metrics.roc_curve(labels, regular, pos_label=2)
    return metrics.auc(fpr, tpr)


@pytest.fixture(scope='module')
def released_weights(tmp_path_factory):
    """Random MemAE weights of the released architecture under the released file name, saved as PyTorch 0.4 did
    (legacy format, no num_batches_tracked)."""
    root = tmp_path_factory.mktemp('memae_models')
    torch.manual_seed(0)
    state = {k: v for k, v in AutoEncoderCov3DMem(1, 2000, shrink_thres=0.0025).state_dict().items()
             if not k.endswith('num_batches_tracked')}
    torch.save(state, root / RELEASED_FILE, _use_new_zipfile_serialization=False)
    return root


def printed_auc(stdout):
    found = re.findall(r'^AUC: ([0-9.eE+-]+)', stdout, flags=re.MULTILINE)
    assert len(found) == 1, stdout[-2000:]
    return float(found[0])


@pytest.fixture(scope='module')
def plain_test_sh(prepared_root, released_weights, tmp_path_factory):
    """`bash test.sh` with no argument, Ped2 prepared under DATA_ROOT and the released file in MODEL_ROOT."""
    out = tmp_path_factory.mktemp('results')
    tested = run_script('bash', 'test.sh', DATA_ROOT=prepared_root, MODEL_ROOT=released_weights, OUT_ROOT=out)
    return tested, out


def test_plain_test_sh_scores_prepared_ped2_and_eval_video_agrees(prepared_root, released_weights, plain_test_sh):
    tested, out = plain_test_sh
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert 'No prepared UCSD Ped2' not in tested.stderr  # the real data, not the demo
    res = out / f'res_{RELEASED_SETTING}'
    assert f'weights: {released_weights / RELEASED_FILE}' in tested.stdout
    auc = printed_auc(tested.stdout)
    # the AUC the script printed and wrote, recomputed from its own .npy files and the ground truth
    assert auc == pytest.approx(independent_released_auc(prepared_root / 'UCSD_P2_256', res), abs=1e-12)
    assert (res / 'acc.txt').read_text().splitlines()[1] == f'AUC: {auc}'
    assert (res / 'plots' / 'roc.png').is_file()  # test.sh asks for the figures

    (res / 'acc.txt').unlink()
    evaluated = subprocess.run([sys.executable, 'script_eval_video.py', '--ModelName', 'MemAE', '--ModelSetting',
                                'Conv3DSpar', '--Dataset', 'UCSD_P2_256', '--MemDim', '2000', '--EntropyLossWeight',
                                '0.0002', '--ShrinkThres', '0.0025', '--Seed', '1', '--DataRoot', str(prepared_root),
                                '--OutRoot', str(out), '--Suffix', 'Non'],
                               cwd=REPO, capture_output=True, text=True, timeout=SHELL_TIMEOUT)
    assert evaluated.returncode == 0, evaluated.stderr
    assert printed_auc(evaluated.stdout) == auc
    assert (res / 'acc.txt').read_text().splitlines()[1] == f'AUC: {auc}'


def test_eval_video_through_import_utils_as_released(prepared_root, plain_test_sh, tmp_path):
    tested, out = plain_test_sh
    res = tmp_path / 'res'  # a copy of the saved scores alone: no model, no figures of the test run
    res.mkdir()
    for scores in (out / f'res_{RELEASED_SETTING}').glob('*.npy'):
        (res / scores.name).write_bytes(scores.read_bytes())
    auc = utils.eval_video(str(prepared_root / 'UCSD_P2_256'), str(res), is_show=True)
    assert type(auc) is float and auc == printed_auc(tested.stdout)
    assert (res / 'plots' / 'regularity_Test001.png').is_file() and (res / 'plots' / 'roc.png').is_file()
    assert (res / 'acc.txt').read_text().splitlines()[1] == f'AUC: {auc}'


def test_eval_video_names_a_missing_score_file(prepared_root, tmp_path, capsys):
    from utils.errors import run_cli
    import script_eval_video
    (tmp_path / f'res_{RELEASED_SETTING}').mkdir()
    argv = ['--DataRoot', str(prepared_root), '--OutRoot', str(tmp_path), '--MemDim', '2000']
    assert run_cli(script_eval_video.main, argv) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / f'res_{RELEASED_SETTING}' / 'Test001.npy'} does not exist" in err and 'Traceback' not in err


def test_missing_weights_say_where_weights_come_from(prepared_root, tmp_path):
    tested = run_script('bash', 'test.sh', 'ped2', '--UseCUDA', 'False', DATA_ROOT=prepared_root,
                        MODEL_ROOT=tmp_path, OUT_ROOT=tmp_path / 'out')
    assert tested.returncode == 2
    error = [line for line in tested.stderr.splitlines() if line.startswith('error: ')]
    assert len(error) == 1 and 'Traceback' not in tested.stderr
    assert error[0].endswith("to fix: download the authors' weights from "
                             'https://drive.google.com/drive/folders/1N2DvmZwCKx_8bZWeueJNn9nsh3rQXdTg and save them '
                             f'as {tmp_path / RELEASED_FILE} (memae_models/README.md)')
    assert 'MODEL_ROOT' not in error[0]  # the authors' weights are not trained here


def test_the_demo_model_missing_points_at_the_demo_not_at_the_authors(prepared_root, tmp_path):
    from utils.checkpoint import DEMO_DATASET
    from utils.experiments.settings import DEMO_DATASET as SETTINGS_DEMO
    assert DEMO_DATASET == SETTINGS_DEMO  # the same name in both places
    shutil.copytree(prepared_root / 'UCSD_P2_256', tmp_path / 'data' / DEMO_DATASET)  # a prepared video set
    tested = run_script(sys.executable, 'script_testing.py', '--Dataset', DEMO_DATASET, '--UseCUDA', 'False',
                        '--DataRoot', str(tmp_path / 'data'), '--ModelRoot', str(tmp_path / 'models'))
    assert tested.returncode == 2
    assert tested.stderr.strip().endswith('to fix: run bash test.sh demo, which trains the demo model before '
                                          'testing it')
    assert 'drive.google' not in tested.stderr


def test_released_utils_names_keep_working():
    opt = EvalOptions().parse([], is_print=False)
    assert utils.get_model_setting(opt) == RELEASED_SETTING
    utils.seed(3)
    first = torch.rand(2)
    utils.seed(3)
    assert torch.equal(first, torch.rand(2))
    clip = torch.arange(2 * 3 * 4 * 6 * 6, dtype=torch.float32).reshape(2, 3, 4, 6, 6)  # N x C x T x H x W
    assert utils.btv2btf(clip).shape == (2, 4, 3, 6, 6)
    assert np.array_equal(utils.btv2btf(clip)[1, 2, 0], clip[1, 0, 2].numpy())
    frames = utils.vframes2imgs(clip, step=1, batch_idx=1)
    assert frames.shape == (4, 3, 6, 6) and np.array_equal(frames[3, 2], clip[1, 2, 3].numpy())
    assert np.array_equal(utils.vframes2imgs(clip, step=2, batch_idx=0), utils.btv2btf(clip)[0, [1, 3]])
    assert utils.crop_image(np.zeros((2, 4, 3, 6, 6)), 1).shape == (2, 4, 3, 4, 4)
    assert utils.crop_image(np.zeros((4, 6, 6)), 0).shape == (4, 6, 6)
    normalised = (clip - 0.5) / 0.25
    assert torch.allclose(UnNormalize([0.5, 0.5, 0.5], [0.25] * 3)(normalised), clip)
    assert torch.allclose(utils.UnNormalize([0.5] * 3, [0.25] * 3)(normalised[0]), clip[0])  # C x T x H x W
    assert np.array_equal(utils.tensor2numpy(clip.requires_grad_()), clip.detach().numpy())
    with pytest.raises(AttributeError, match='Logger'):
        utils.Logger  # the released TensorFlow logger is replaced by TensorBoard through PyTorch


def test_released_file_helpers(tmp_path):
    utils.mkdir(tmp_path / 'a' / 'b')
    utils.mkdir(tmp_path / 'a' / 'b')  # existing: no error
    (tmp_path / 'a' / 'z.txt').write_text('')
    (tmp_path / 'a' / 'c.txt').write_text('')
    assert utils.get_subdir_list(tmp_path / 'a') == ['b']
    assert utils.get_file_list(tmp_path / 'a') == ['c.txt', 'z.txt']


@pytest.mark.parametrize('options', [TrainOptions, EvalOptions])
def test_every_flag_has_help_and_booleans_show_their_words(options):
    parser = options().parser
    for action in parser._actions:
        assert action.help, f'{action.option_strings} has no help text'
    help_text = parser.format_help()
    assert '--Plots PLOTS' not in help_text and '--IsTbLog ISTBLOG' not in help_text
    assert '--Debug [{true,false}]' in help_text and 'no/false/f/n/0' in help_text
    for setting in ('Conv3DSpar', 'Conv3D', 'Conv2DSpar', 'Conv2D', 'FCSpar', 'FC'):
        assert setting in parser._option_string_actions['--ModelSetting'].help


def test_by_default_one_line_of_changed_options_is_printed(capsys):
    """The full table would push an error message that follows it off the screen; opt.txt keeps it."""
    EvalOptions().parse(['--MemDim', '20'])
    out = capsys.readouterr().out
    assert out.strip() == 'options (not at their default; all in opt.txt): --MemDim 20'


@pytest.mark.parametrize('script, program', [('test.sh', 'script_testing.py'), ('train.sh', 'script_training.py')])
def test_shell_scripts_have_a_usage_text(script, program):
    """--help (and -h): every data set and variant with its one line, the environment, how flags pass through;
    no run starts and no 'unknown experiment'."""
    from utils.experiments.settings import DATA_NAMES, VARIANTS
    for flag in ('--help', '-h'):
        done = run_script('bash', script, flag)
        assert done.returncode == 0 and done.stderr == '' and 'unknown' not in done.stdout
    text = done.stdout
    assert text.startswith(f'usage: bash {script} [EXPERIMENT] [{program} flags ...]')
    lines = text.splitlines()
    for name in DATA_NAMES:  # one line each, under its family
        assert sum(line.startswith(f'  {name} ') for line in lines) == 1
    for suffix in VARIANTS:
        assert sum(line.startswith(f'  {suffix} ') for line in lines) == 1
    for family in ('video', 'images', 'KDDCUP99', 'variants'):
        assert any(line.startswith(family) for line in lines)
    for variable in ('DATA_ROOT', 'MODEL_ROOT', 'OUT_ROOT'):
        assert any(line.startswith(f'  {variable} ') for line in lines)
    assert (any(line.startswith('  demo ') for line in lines)) == (script == 'test.sh')  # train.sh has no demo
    assert ('ablation_DATA' in text) == (script == 'train.sh')
    assert max(len(line) for line in lines) <= 120


def test_a_usage_text_cut_short_by_its_reader_is_no_error():
    """`bash test.sh --help | head -3`: the reader may close the pipe before the text is written. Here the read end
    is closed before the program starts, so every write fails: still no traceback, exit status 0."""
    import os
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, '-m', 'utils.experiments.settings', '--usage', 'test.sh'], cwd=REPO,
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=SHELL_TIMEOUT)
    finally:
        os.close(write_end)
    assert done.returncode == 0 and done.stderr == ''


def test_the_usage_examples_name_experiments_a_fresh_clone_can_run():
    """test.sh's examples test weights this repository ships; train.sh's trains, then tests what it wrote."""
    import re
    from pathlib import Path
    from utils.experiments.settings import EXPERIMENTS, USAGE_EXAMPLES
    shipped = {path.name.split('_')[2] for path in (Path(__file__).parent.parent / 'memae_models').glob('MemAE_*.pt')}
    assert shipped == {'MNIST', 'KDDCUP99'}
    for script, lines in USAGE_EXAMPLES.items():
        commands = [(m.group(1), m.group(2), line) for line in lines
                    for m in re.finditer(r'bash (\w+\.sh) (\w+)', line)]
        assert [c[0] for c in commands][:1] == [script]
        for used, name, line in commands:
            assert name in EXPERIMENTS, line
            if used == 'test.sh' and 'MODEL_ROOT=./results/' not in line:  # the weights must ship
                assert {'kdd': 'KDDCUP99', 'mnist': 'MNIST'}.get(name) in shipped, line
