"""utils/lockstep.py: KDDCUP99 units trained together keep each unit's semantics (its initial weights, batches,
loss and Adam steps) up to rounding; resumption is exact; --Lockstep end to end."""
import json

import pytest
import torch

import script_training
from models import MLPAutoEncoder, MLPMemAE, weights_init
from one_sentence import expect_one_sentence
from synthetic import make_kdd
from utils.errors import run_cli
from utils.lockstep import StackedAdam, StackedMLP, train_stacked, unit_losses
from utils.one_class import Schedule, train_unit
from utils.progress import EpochClock
from utils.training import LossSettings, NonFiniteLossError, compute_losses

MEMAE = LossSettings('MemAE', 'paper', entropy_weight=0.0002)
D = 12


def units(kind, count, **memory):
    models = []
    for seed in range(1, count + 1):
        torch.manual_seed(seed)
        model = MLPMemAE(D, 10, **memory) if kind == 'MemAE' else MLPAutoEncoder(D)
        models.append(model.apply(weights_init))
    return models


@pytest.mark.parametrize('kind, losses, memory', [
    ('MemAE', MEMAE, {'shrink_thres': 0.1, 'addressing': 'cosine'}),
    ('MemAE', LossSettings('MemAE', 'released', entropy_weight=0.0002), {'shrink_thres': 0.1, 'addressing': 'dot'}),
    ('MemAE', MEMAE, {'shrink_thres': 0.0, 'addressing': 'cosine', 'temperature': 0.5}),
    ('AE', LossSettings('AE', 'paper', l1_weight=0.01), {}),  # an AE has no l1 term, whatever --L1Weight says
    ('AEL1', LossSettings('AEL1', 'paper', l1_weight=0.01), {}),
], ids=['cosine-shrink-paper', 'dot-shrink-released', 'nonspar-temperature', 'ae', 'ae-l1'])
def test_one_batch_gives_each_unit_its_own_loss_and_gradient(kind, losses, memory):
    models = units('MemAE' if kind == 'MemAE' else 'AE', 3, **memory)
    stacked = StackedMLP(models)
    x = torch.rand(3, 20, D)
    mask = torch.ones(3, 20)
    mask[2, 13:] = 0  # unit 2's batch is a last, shorter one: 13 records
    loss, terms = unit_losses(stacked(x), x, mask, losses)
    loss.sum().backward()
    for r, model in enumerate(models):
        own, _, values = compute_losses(model, x[r, :13] if r == 2 else x[r], losses)
        own.backward()
        assert terms[r].tolist() == pytest.approx([values[t] for t in ('loss', 'recon_loss', 'entropy_loss',
                                                                       'l1_loss')], rel=1e-5, abs=1e-9)
        for i, (_, parameter) in enumerate(model.named_parameters()):
            assert torch.allclose(stacked.stacked[i].grad[r], parameter.grad, rtol=1e-4, atol=1e-7)


def test_stacked_adam_is_torch_adam_per_unit_and_skips_inactive_units():
    torch.manual_seed(0)
    weights = torch.randn(3, 4, 5)
    stacked = torch.nn.Parameter(weights.clone())
    adam = StackedAdam([stacked], 1e-2, 3)
    own = [torch.nn.Parameter(weights[r].clone()) for r in range(3)]
    optimizers = [torch.optim.Adam([p], lr=1e-2, foreach=True) for p in own]
    for step in range(4):
        grads = torch.randn(3, 4, 5)
        active = torch.tensor([True, step % 2 == 0, step != 1])
        stacked.grad = grads
        adam.step(active)
        for r in range(3):
            if active[r]:
                own[r].grad = grads[r]
                optimizers[r].step()
    for r in range(3):
        assert torch.allclose(stacked.detach()[r], own[r].detach(), rtol=0, atol=1e-6)
        state = adam.unit_state(r, optimizers[r].state_dict())['state'][0]
        reference = optimizers[r].state_dict()['state'][0]
        assert float(state['step']) == float(reference['step']) == [4, 2, 3][r]
        assert torch.allclose(state['exp_avg_sq'], reference['exp_avg_sq'], rtol=1e-5, atol=1e-9)


def train_both(kind, losses, sizes, epochs=3, batch=16, lr=1e-3):
    """The same units trained one after another (train_unit) and in lockstep; unequal numbers of records."""
    torch.manual_seed(0)
    source = torch.rand(sum(sizes) + 10, D)
    rows = [torch.randperm(len(source), generator=torch.Generator().manual_seed(r))[:n] for r, n in enumerate(sizes)]
    schedule = Schedule(lr, epochs, batch)
    memory = {'shrink_thres': 0.1, 'addressing': 'cosine'} if kind == 'MemAE' else {}
    alone = units(kind, len(sizes), **memory)
    alone_losses = [train_unit(model, source[r], schedule, losses, seed=10 + i)
                    for i, (model, r) in enumerate(zip(alone, rows))]
    together = StackedMLP(units(kind, len(sizes), **memory))
    adam = StackedAdam(together.stacked, lr, len(sizes))
    generators = [torch.Generator().manual_seed(10 + i) for i in range(len(sizes))]
    together_losses = train_stacked(together, adam, generators, source, rows, schedule, losses,
                                    [f'run{i}' for i in range(len(sizes))], [[] for _ in sizes])
    worst = max(float((together.unit_state(r)[key] - value).abs().max())
                for r, model in enumerate(alone) for key, value in model.state_dict().items())
    return alone_losses, together_losses, worst


def test_units_of_unequal_length_train_as_they_do_alone():
    """40, 33 and 7 records at batch 16: 3, 3 and 1 steps an epoch, last batches of 8, 1 and 7 records. The AE
    ends within rounding of the one-at-a-time weights after 7 Adam steps of lr 1e-3 (another batch order or loss
    would move them by ~1e-3 a step)."""
    alone_losses, together_losses, worst = train_both('AE', LossSettings('AE', 'paper'), [40, 33, 7])
    for alone, together in zip(alone_losses, together_losses):
        assert together == pytest.approx(alone, rel=1e-6)
    assert worst < 2e-5, worst


def test_memae_units_differ_only_where_adam_amplifies_rounding():
    """With hard shrinkage many addressing weights are exactly 0, so some gradients are exactly 0 on one path and
    ~1e-12 on the other; Adam turns the latter into a step of the full learning rate. Measured here: at most
    about two steps of lr (2e-3) after 7 steps, and epoch losses within 1e-3 (relative)."""
    alone_losses, together_losses, worst = train_both('MemAE', MEMAE, [40, 33, 7])
    for alone, together in zip(alone_losses, together_losses):
        assert together[0] == pytest.approx(alone[0], rel=1e-5)  # the first epoch: little drift yet
        assert together == pytest.approx(alone, rel=1e-3)
    assert worst < 3 * 1e-3, worst


def test_a_resumed_lockstep_run_equals_an_uninterrupted_one_bit_for_bit():
    torch.manual_seed(0)
    source = torch.rand(60, D)
    rows = [torch.arange(0, 40), torch.arange(20, 45)]
    names = ['run0', 'run1']

    def fresh():
        stacked = StackedMLP(units('MemAE', 2, shrink_thres=0.1, addressing='cosine'))
        return stacked, StackedAdam(stacked.stacked, 1e-3, 2), [torch.Generator().manual_seed(s) for s in (5, 6)]

    whole, whole_adam, generators = fresh()
    train_stacked(whole, whole_adam, generators, source, rows, Schedule(1e-3, 3, 16), MEMAE, names, [[], []])
    saved = {}

    def keep(epoch, trained, losses, _):
        if epoch == 2:  # what UnitRunner writes to each unit's training state
            template = torch.optim.Adam(units('MemAE', 1, shrink_thres=0.1, addressing='cosine')[0].parameters(),
                                        lr=1e-3).state_dict()
            saved.update({r: (part.unit_state(r), adam.unit_state(r, template), gens[r].get_state(),
                              list(losses[r])) for r in trained})
    part, adam, gens = fresh()
    train_stacked(part, adam, gens, source, rows, Schedule(1e-3, 2, 16), MEMAE, names, [[], []], keep)
    models = units('MemAE', 2, shrink_thres=0.1, addressing='cosine')
    for r, model in enumerate(models):
        model.load_state_dict(saved[r][0])
    resumed, resumed_adam, resumed_gens = StackedMLP(models), None, [torch.Generator() for _ in range(2)]
    resumed_adam = StackedAdam(resumed.stacked, 1e-3, 2)
    for r in range(2):
        resumed_adam.load_unit_state(r, saved[r][1])
        resumed_gens[r].set_state(saved[r][2])
    train_stacked(resumed, resumed_adam, resumed_gens, source, rows, Schedule(1e-3, 3, 16), MEMAE, names,
                  [saved[0][3], saved[1][3]])
    for r in range(2):
        for key, value in whole.unit_state(r).items():
            assert torch.equal(resumed.unit_state(r)[key], value), key


def test_a_non_finite_loss_names_the_unit():
    source = torch.rand(30, D)
    source[25] = float('nan')
    stacked = StackedMLP(units('AE', 2))
    with pytest.raises(NonFiniteLossError, match=r'^run1: the loss is nan'):
        train_stacked(stacked, StackedAdam(stacked.stacked, 1e-3, 2), [torch.Generator().manual_seed(1)] * 2,
                      source, [torch.arange(0, 10), torch.arange(20, 30)], Schedule(1e-3, 1, 32),
                      LossSettings('AE', 'paper'), ['run0', 'run1'], [[], []])


KDD = ['--Dataset', 'KDDCUP99', '--Runs', '3', '--EpochNum', '3', '--BatchSize', '64', '--MemDim', '10',
       '--ShrinkThres', '0.1', '--ModelSetting', 'FCSpar', '--UseCUDA', 'False', '--IsTbLog', 'False']


def train_kdd_both_ways(tmp_path, argv, num_rows):
    """``argv`` on a synthetic KDD file, one run at a time and in lockstep; the two output folders by --Lockstep
    value ('False', 'True'), each holding its models under models/."""
    make_kdd(tmp_path / 'data', num_rows=num_rows)
    folders = {}
    for lockstep in ('False', 'True'):
        folders[lockstep] = out = tmp_path / lockstep
        assert run_cli(script_training.main, [*argv, '--DataRoot', str(tmp_path / 'data'), '--ModelRoot',
                                              str(out / 'models'), '--OutRoot', str(out), '--Lockstep',
                                              lockstep]) == 0
    return folders


def test_lockstep_kdd_runs_end_to_end_like_the_one_at_a_time_path(tmp_path):
    summaries = {}
    for lockstep, out in train_kdd_both_ways(tmp_path, KDD, num_rows=600).items():
        summaries[lockstep] = json.loads((out / 'kdd_summary.json').read_text())
        assert not list((out / 'models').rglob('*_resume.pt'))  # finished units keep only their weights
        assert len(list((out / 'models').rglob('*_Run?.pt'))) == 3
    for metric in ('precision', 'recall', 'f1'):
        assert summaries['True'][metric]['mean'] == pytest.approx(summaries['False'][metric]['mean'], abs=0.02)


def test_lockstep_resumes_what_the_one_at_a_time_path_left(tmp_path, monkeypatch):
    """Interrupted after run1's second epoch: run0 finished, run1 has 2 of 3 epochs, run2 none. --Lockstep
    with --Resume auto keeps run0, continues run1 for its last epoch (sitting out the first two while run2 trains
    them) and trains run2; the numbers match an uninterrupted one-at-a-time run to rounding."""
    make_kdd(tmp_path / 'data', num_rows=600)

    def argv(name, *extra):
        return [*KDD, '--DataRoot', str(tmp_path / 'data'), '--ModelRoot', str(tmp_path / name / 'models'),
                '--OutRoot', str(tmp_path / name), *extra]
    assert run_cli(script_training.main, argv('whole')) == 0
    real_end = EpochClock.end_epoch

    def stop_in_run1(self, unit, units_done, epoch):
        if unit == 'run1' and epoch == 2:
            raise KeyboardInterrupt
        return real_end(self, unit, units_done, epoch)
    with monkeypatch.context() as patch:
        patch.setattr(EpochClock, 'end_epoch', stop_in_run1)
        assert run_cli(script_training.main, argv('parts')) == 130
    assert run_cli(script_training.main, argv('parts', '--Lockstep', 'True', '--Resume', 'auto')) == 0
    whole, parts = ({name: json.loads(next((tmp_path / run).rglob(f'{name}.json')).read_text())
                     for name in ('run0', 'run1', 'run2')} for run in ('whole', 'parts'))
    assert parts['run0']['epoch_losses'] == whole['run0']['epoch_losses']  # finished before: kept as it was
    assert parts['run1']['epoch_losses'][:2] == whole['run1']['epoch_losses'][:2]  # restored, not retrained
    for name in ('run1', 'run2'):
        assert parts[name]['epoch_losses'] == pytest.approx(whole[name]['epoch_losses'], rel=1e-3)


def test_lockstep_is_refused_for_the_image_experiments(tmp_path, capsys):
    expect_one_sentence(script_training.main, ['--Dataset', 'MNIST', '--Lockstep', 'True', '--DataRoot',
                                               str(tmp_path)], capsys,
                        '--Lockstep trains KDDCUP99 runs together; --Dataset MNIST trains one model at a time')
