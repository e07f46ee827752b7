"""The ablation variants (utils/experiments/settings.py, AE-l1) and the sweep that tabulates them
(utils/experiments/ablation.py)."""
import json

import pytest
import torch

from models import build_model, weights_init
from options import TrainOptions
from shell import run_script
from synthetic import make_kdd
from utils.experiments.ablation import VARIANTS, memory_variants, parse_args, without_training_flags
from utils.experiments.settings import experiment
from utils.training import LossSettings, compute_losses, training_step

# (data, model family, image architecture or input width, a batch the family takes)
FAMILIES = [('ped2', 'video', None, (2, 1, 16, 32, 32)), ('mnist', 'image', 'mnist', (4, 1, 28, 28)),
            ('cifar10', 'image', 'cifar10', (4, 3, 32, 32)), ('kdd', 'tabular', 7, (8, 7))]


def variant_options(name, *extra):
    chosen = experiment(name)
    return TrainOptions().parse([*chosen.flags, *chosen.train_flags, '--UseCUDA', 'False', *extra], is_print=False)


@pytest.mark.parametrize('data,family,arch,shape', FAMILIES)
@pytest.mark.parametrize('variant', VARIANTS, ids=lambda v: v.key)
def test_every_variant_builds_and_trains_one_step(data, family, arch, shape, variant):
    opt = variant_options(f'{data}{variant.suffix}', '--MemDim', '6')
    torch.manual_seed(0)
    model = build_model(opt, family, arch=arch if family == 'image' else None,
                        input_dim=arch if family == 'tabular' else None)
    model.apply(weights_init)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _, values = training_step(model, torch.rand(shape), optimizer, LossSettings.from_options(opt))
    assert all(torch.isfinite(torch.tensor(v)) for v in values.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # the variant's model and objective: entropy only with a memory, the l1 term only for AE-l1, each weighted
    memory, penalised = opt.ModelName == 'MemAE', opt.ModelName == 'AEL1'
    assert (values['entropy_loss'] > 0, values['l1_loss'] > 0) == (memory, penalised)
    expected = values['recon_loss'] + (opt.EntropyLossWeight * values['entropy_loss'] if memory else 0) \
        + (opt.L1Weight * values['l1_loss'] if penalised else 0)
    assert values['loss'] == pytest.approx(expected, rel=1e-5)
    if memory:
        unit = model.mem_rep if family == 'tabular' else model.mem_rep.memory
        assert (unit.shrink_thres, unit.addressing) == (opt.ShrinkThres, opt.MemAddressing)


def test_variant_flags_are_single_factor_changes_of_memae():
    memae = experiment('mnist')
    assert experiment('mnist_noshrink').flag('--ShrinkThres') == '0'
    assert experiment('mnist_noshrink').flag('--EntropyLossWeight') == '0.0002'
    assert experiment('mnist_noentropy').flag('--EntropyLossWeight') == '0'
    assert experiment('mnist_noentropy').flag('--ShrinkThres') == memae.flag('--ShrinkThres')
    assert experiment('mnist_ael1').flag('--ModelName') == 'AEL1'
    for data, family in (('ped2', 'video'), ('mnist', 'image'), ('kdd', 'tabular')):
        applicable = [v for v in VARIANTS if family in v.families]
        settings = {variant_options(f'{data}{v.suffix}').setting for v in applicable}
        assert len(settings) == len(applicable)  # no variant overwrites another's weights or results


@pytest.mark.parametrize('name, addressing, scaling', [
    # video follows the released code, images and KDDCUP99 the paper's text; each has the other behind a variant
    ('ped2', 'dot', 'released'), ('ped2_cosine', 'cosine', 'released'),
    ('mnist', 'cosine', 'paper'), ('mnist_released', 'dot', 'released'),
    ('kdd', 'cosine', 'paper'), ('kdd_released', 'dot', 'released'), ('cifar10_noshrink', 'cosine', 'paper')])
def test_addressing_and_loss_scaling_follow_the_family(name, addressing, scaling):
    opt = variant_options(name)
    assert (opt.MemAddressing, opt.LossScaling) == (addressing, scaling)
    assert ('_AddrCosine_' in opt.setting) == (addressing == 'cosine')  # weights of the two never mix
    assert variant_options('cifar10_ael1').setting == 'AEL1_Conv2D_CIFAR10_L1W0.0002_Non'


def test_the_mnist_experiments_share_the_reading_chosen_on_validation_but_released_keeps_the_printed_table():
    for name in ('mnist', 'mnist_ae', 'mnist_nonspar', 'mnist_noshrink', 'mnist_ael1'):
        opt = variant_options(name)
        assert (opt.ImageCodeChannels, opt.ImageFirstKernel, opt.EarlyStopping, opt.EpochNum) == (4, 0, True, 80)
        assert opt.setting.endswith('_Code4_Non'), opt.setting
    released = variant_options('mnist_released')
    assert (released.ImageCodeChannels, released.EarlyStopping, released.EpochNum, released.LR) == (0, False, 10, 1e-3)
    assert variant_options('cifar10').ImageCodeChannels == 0  # chosen for MNIST only


def test_cifar10_and_kdd_units_choose_their_settings_on_their_own_validation_sets_but_released_keeps_its_own():
    """Each CIFAR-10 and KDDCUP99 unit chooses its learning rate, its epoch (at most 80) and, for a KDD MemAE,
    its lambda on its own validation set, so no unit's choice reads another unit's test records (issue 46);
    _released keeps its fixed settings."""
    for name in ('cifar10', 'cifar10_ae', 'cifar10_nonspar', 'cifar10_noshrink', 'kdd', 'kdd_ae', 'kdd_nonspar'):
        opt = variant_options(name)
        assert (opt.EarlyStopping, opt.EpochNum, opt.LRGrid) == (True, 80, [1e-4, 1e-3]), name
        assert '--LR' not in experiment(name).train_flags, name  # the grid replaces it: the command says so
    for name, grid in (('kdd', [0.02, 0.04]), ('kdd_noentropy', [0.02, 0.04]), ('kdd_nonspar', None),
                       ('kdd_noshrink', None), ('cifar10', None), ('mnist', None)):
        assert variant_options(name).ShrinkThresGrid == grid, name
    assert variant_options('mnist').LRGrid is None  # MNIST's validation images are no test set's
    for name, epochs in (('cifar10_released', 30), ('kdd_released', 20)):
        released = variant_options(name)
        assert (released.EarlyStopping, released.EpochNum, released.LRGrid, released.ShrinkThresGrid) == (
            False, epochs, None, None), name


@pytest.mark.parametrize('scaling', ['released', 'paper'])
def test_ael1_adds_the_weighted_penalty_to_the_ae_loss(scaling):
    opt = variant_options('kdd_ael1', '--L1Weight', '0.5', '--LossScaling', scaling)
    model = build_model(opt, 'tabular', input_dim=7)
    batch = torch.rand(8, 7)
    loss, _, values = compute_losses(model, batch, LossSettings.from_options(opt))
    latent = model.encoder(batch)
    # released: means over every element; paper: per-sample sums averaged over the batch (Eq. 10's form)
    per_sample = 1 if scaling == 'released' else 7
    recon = torch.mean((model.decoder(latent) - batch) ** 2) * per_sample
    l1 = latent.abs().mean() * (1 if scaling == 'released' else latent.shape[1])
    assert loss.item() == pytest.approx((recon + 0.5 * l1).item(), rel=1e-6)
    assert values['l1_loss'] == pytest.approx(l1.item(), rel=1e-6)
    ae_opt = variant_options('kdd_ae')
    assert compute_losses(model, batch, LossSettings.from_options(ae_opt))[2]['l1_loss'] == 0


def test_memory_sizes_scale_the_shrink_threshold_unless_fixed():
    scaled = memory_variants((25, 100, 400), 100, 0.01, fixed_shrink=False)
    assert [v.flags for v in scaled] == [('--MemDim', '25', '--ShrinkThres', '0.04'),
                                         ('--MemDim', '400', '--ShrinkThres', '0.0025')]  # N = 100 is the MemAE row
    fixed = memory_variants((25,), 100, 0.01, fixed_shrink=True)
    assert fixed[0].flags == ('--MemDim', '25', '--ShrinkThres', '0.01') and fixed[0].mem_dim == 25
    # the units' grid of lambda (KDDCUP99: 1/N and 2/N) scales alike
    gridded = memory_variants((25,), 50, 0.02, fixed_shrink=False, shrink_grid=('0.02', '0.04'))
    assert gridded[0].flags == ('--MemDim', '25', '--ShrinkThres', '0.04', '--ShrinkThresGrid', '0.04', '0.08')


def test_video_variants_keep_test_flags_and_drop_training_ones():
    assert without_training_flags(['--EpochNum', '3', '--UseCUDA', 'False', '--LR', '1e-3', '--MemDim', '500']) == \
        ['--UseCUDA', 'False', '--MemDim', '500']


def test_sweep_writes_table_and_plot_then_resumes_without_rerunning(tmp_path):
    make_kdd(tmp_path / 'data', num_rows=200)
    out = tmp_path / 'ablation'
    command = ['bash', 'train.sh', 'ablation_kdd', '--variants', 'memae', '--mem-dims', '4', '--runs', '2',
               '--out', str(out), '--EpochNum', '1', '--UseCUDA', 'False']
    done = run_script(*command, DATA_ROOT=tmp_path / 'data')
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / 'ablation_kdd.json').read_text())
    rows = {row['variant']: row for row in summary['rows']}
    assert list(rows) == ['memae', 'memdim4'] and summary['metric'] == 'F1'
    # lambda follows N: the experiment's 0.02 x 50 slots = 1 = 0.25 x 4 slots, its grid of 1/N and 2/N alike; the
    # command holds its environment
    assert rows['memdim4']['commands'] == [
        f"DATA_ROOT={tmp_path / 'data'} OUT_ROOT={out / 'memdim4'} MODEL_ROOT={out / 'memdim4' / 'models'} "
        'bash train.sh kdd --MemDim 4 --ShrinkThres 0.25 --ShrinkThresGrid 0.25 0.5 --Runs 2 --EpochNum 1 '
        '--UseCUDA False']
    # the console says where each variant stands and how long the rest will take
    assert '[1/2] MemAE: running' in done.stdout and '[1/2] MemAE: F1 ' in done.stdout
    assert '1 left, about ' in done.stdout and 'sweep complete' in done.stdout
    assert (rows['memae']['mem_dim'], rows['memdim4']['mem_dim']) == (50, 4)
    for key, row in rows.items():
        f1 = json.loads((out / key / 'kdd_summary.json').read_text())['f1']
        assert (row['mean'], row['std'], row['runs']) == (f1['mean'], f1['std'], 2)
    table = (out / 'ablation_kdd.md').read_text().splitlines()
    assert len(table) == 2 + 2 and table[2].startswith('| MemAE | ') and '| 0.9410 |' in table[2]
    assert (out / 'ablation_kdd_memdim.png').stat().st_size > 0

    log = (out / 'memae' / 'log.txt').read_text()
    again = run_script(*command, DATA_ROOT=tmp_path / 'data')
    assert again.returncode == 0 and (out / 'memae' / 'log.txt').read_text() == log  # nothing ran again
    assert again.stdout.count('skipped (done)') == 2
    # the command column reruns the row alone: same data, same folder, same F1
    (out / 'memdim4' / 'kdd_summary.json').unlink()
    rerun = run_script('bash', '-c', rows['memdim4']['commands'][0])
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads((out / 'memdim4' / 'kdd_summary.json').read_text())['f1']['mean'] == rows['memdim4']['mean']


def test_mem_dims_none_means_no_memory_size_study():
    for argv in (['kdd', '--mem-dims', 'none'], ['kdd', '--mem-dims'], ['kdd', '--mem-dims', 'NONE']):
        args, extra = parse_args(argv)
        assert args.mem_dims == [] and extra == []
    assert parse_args(['kdd', '--mem-dims', '25', '200'])[0].mem_dims == [25, 200]
    assert parse_args(['kdd'])[0].mem_dims is None  # the data set's own sizes
    assert memory_variants([], 50, 0.02, fixed_shrink=False) == ()
    with pytest.raises(SystemExit):
        parse_args(['kdd', '--mem-dims', 'many'])


def test_sweep_names_the_failing_command(tmp_path):
    done = run_script('bash', 'train.sh', 'ablation_kdd', '--variants', 'ae', '--mem-dims', '--out',
                      str(tmp_path / 'out'), '--UseCUDA', 'False', DATA_ROOT=tmp_path / 'missing')
    assert done.returncode == 2
    assert '`bash train.sh kdd_ae --UseCUDA False` failed' in done.stderr and 'log.txt' in done.stderr


def test_video_variants_read_the_frame_auc_of_test_sh(tmp_path):
    from data.registry import DATASETS
    from utils.experiments.ablation import read_result
    from utils.eval import VideoResult, evaluate, write_results_json
    res = tmp_path / 'res_MemAE_Conv3DSpar_UCSD_P2_256_MemDim2000_EntW0.0002_ShrThres0.0025_Seed1_Non'
    res.mkdir()
    evaluation = evaluate([VideoResult('Test001', [1.0, 3.0, 2.0, 5.0], [0, 1, 0, 1])])
    write_results_json(res, evaluation, {})
    assert read_result(tmp_path, DATASETS['UCSD_P2_256']) == (evaluation.auc, 0.0, 1)


def test_settings_follow_the_paper_and_the_release():
    from utils.experiments.settings import DATA_NAMES, VIDEO_DATA
    for data in DATA_NAMES:
        memae = experiment(data)
        n, shrink = int(memae.flag('--MemDim')), float(memae.flag('--ShrinkThres'))
        assert memae.flag('--EntropyLossWeight') == '0.0002' and memae.flag('--ModelName') == 'MemAE'
        if data in VIDEO_DATA:  # the released Ped2 memory and threshold, for every video data set
            assert (n, shrink) == (2000, 0.0025) and memae.flag('--ModelSetting') == 'Conv3DSpar'
        else:  # lambda = 1/N, the lower end of the paper's [1/N, 3/N]
            assert shrink * n == pytest.approx(1.0)
    assert experiment('kdd').flag('--Runs') == '20'  # the paper's 20 runs
    with pytest.raises(ValueError, match=r"unknown experiment 'mnsit'; did you mean mnist or mnist_ae\? \(bash test"):
        experiment('mnsit')
    with pytest.raises(ValueError, match='valid: ped2 ped2_ae'):  # nothing close: the whole list
        experiment('nope')


def test_shell_reads_the_same_settings_as_python():
    from shell import run_script
    names = ['kdd_cosine', 'demo', 'ped1_nonspar']
    script = '; '.join(f'eval "$(python -m utils.experiments.settings {n})" && printf "%s\\n" "${{FLAGS[@]}}" '
                       f'"${{TRAIN_FLAGS[@]}}" "${{TEST_FLAGS[@]}}" "$DATASET" && echo ---' for n in names)
    printed = run_script('bash', '-c', script).stdout.split('---\n')
    for name, block in zip(names, printed):
        chosen = experiment(name)
        assert block.split('\n')[:-1] == [*chosen.flags, *chosen.train_flags, *chosen.test_flags, chosen.dataset]
    unknown = run_script('python', '-m', 'utils.experiments.settings', 'nope')
    assert unknown.returncode == 2 and 'valid: ped2' in unknown.stderr


def test_a_variant_own_training_settings_replace_the_data_set_ones():
    from utils.experiments.settings import with_flags
    assert with_flags(('--LR', '1e-4', '--EpochNum', '14'), ('--EpochNum', '11', '--LossScaling', 'released')) == \
        ('--LR', '1e-4', '--EpochNum', '11', '--LossScaling', 'released')
    for name in ('kdd_ae', 'kdd_released', 'mnist_released'):
        flags = [item for item in experiment(name).train_flags if item.startswith('--')]
        assert len(flags) == len(set(flags))  # each flag once: the printed command says what runs
