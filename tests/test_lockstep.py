"""utils/lockstep.py: units trained together (KDDCUP99 runs, image classes) keep each unit's semantics (its initial
weights, batches, loss, batch-norm statistics and Adam steps) up to rounding, units of unequal length included;
resumption is exact; --Lockstep end to end for both families."""
import json
import os

import pytest
import torch

import script_training
from models import ImageAutoEncoder, ImageMemAE, MLPAutoEncoder, MLPMemAE, weights_init
from synthetic import make_kdd, make_mnist
from utils.errors import run_cli
from utils.lockstep import StackedAdam, StackedUnits, UnitBatches, in_one_tensor, train_stacked
from utils.one_class import Schedule, train_unit
from utils.progress import EpochClock
from utils.training import LOSS_TERMS, LossSettings, NonFiniteLossError, compute_losses

MEMAE = LossSettings('MemAE', 'paper', entropy_weight=0.0002)
AE = LossSettings('AE', 'paper')
D = 12
IMAGE = (1, 28, 28)
# ATEN_CPU_CAPABILITY=default (docs/DEVELOPING.md, how to check a verdict under other kernels)
DEFAULT_KERNELS = os.environ.get('ATEN_CPU_CAPABILITY') == 'default'
# Adam moves a weight by about the learning rate per step whatever the gradient's size, so where two paths round a
# near-zero gradient to other signs, their weights part by at most two learning rates per step
ADAM_PARTING = 2


def units(kind, count, **memory):
    """``count`` freshly initialised models, unit i seeded with i + 1: MLPs of D features ('MemAE', 'AE') or
    MNIST-shaped image models with batch norm ('ImageMemAE', 'ImageAE', a 4-channel code)."""
    models = []
    for seed in range(1, count + 1):
        torch.manual_seed(seed)
        model = {'MemAE': lambda: MLPMemAE(D, 10, **memory), 'AE': lambda: MLPAutoEncoder(D),
                 'ImageMemAE': lambda: ImageMemAE(10, code_channels=4, **memory),
                 'ImageAE': lambda: ImageAutoEncoder(code_channels=4)}[kind]()
        models.append(model.apply(weights_init))
    return models


def samples(kind, count):
    return torch.rand(count, *(IMAGE if kind.startswith('Image') else (D,)))


def bias_before_batch_norm(model):
    """The state_dict keys of the biases a batch norm follows: BN subtracts the batch mean, so their gradient is 0
    up to rounding and Adam turns that rounding into steps of the learning rate of either sign (on both paths);
    they and the running means that absorb them move freely, and the network's training-mode output does not."""
    keys, previous = set(), None
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            keys |= {f'{previous}.bias', f'{name}.running_mean'}
        previous = name
    return keys


@pytest.mark.parametrize('kind, losses, memory', [
    ('MemAE', MEMAE, {'shrink_thres': 0.1, 'addressing': 'cosine'}),
    ('MemAE', LossSettings('MemAE', 'released', entropy_weight=0.0002), {'shrink_thres': 0.1, 'addressing': 'dot'}),
    ('MemAE', MEMAE, {'shrink_thres': 0.0, 'addressing': 'cosine', 'temperature': 0.5}),
    ('AE', LossSettings('AE', 'paper', l1_weight=0.01), {}),  # an AE has no l1 term, whatever --L1Weight says
    ('AE', LossSettings('AEL1', 'paper', l1_weight=0.01), {}),
    ('ImageMemAE', MEMAE, {'shrink_thres': 0.1, 'addressing': 'cosine'}),
    ('ImageAE', LossSettings('AEL1', 'paper', l1_weight=0.01), {}),
], ids=['cosine-shrink-paper', 'dot-shrink-released', 'nonspar-temperature', 'ae', 'ae-l1', 'image-memae',
        'image-ae-l1'])
def test_one_group_gives_each_unit_its_own_loss_gradient_and_statistics(kind, losses, memory):
    """Units 0 and 2 of three as one group: each gets the loss, gradient and batch-norm statistics its own model
    gets on its own batch; unit 1, not in the group, keeps its statistics and gets no gradient.

    In float64: the gradient of a ReLU network (and of hard shrinkage) jumps where a pre-activation crosses 0, and
    in float32 a batch of image-model activations nearly always holds one within rounding of 0 (measured: the
    image AE's own gradient moves by 1-5 % when its input moves by 1e-6, for 10 of 12 batches), so two paths
    that round differently part by a few per cent at random, whatever the kernels. In float64 no pre-activation
    lies that close, and what is left is the arithmetic below."""
    models = [model.double() for model in units(kind, 3, **memory)]
    stacked = StackedUnits(models, losses)
    x = samples(kind, 2 * 20).double().reshape(2, 20, *samples(kind, 1).shape[1:])
    # The two paths reduce a batch in other orders (grouped or single kernels, vectorised or not: a plain float
    # sum of N terms is off by up to N x eps of their magnitudes). The longest reduction sums over every input
    # element of the batch (batch-norm statistics and their gradients, a first layer's weight gradient), and a
    # gradient's terms outweigh the gradient itself where they cancel (up to 3.5x measured, ATen's default
    # kernels): 8 N eps of the tensor's scale. A gradient of another unit, or mixed across units, is off by O(1).
    accumulation = 8 * x[0].numel() * torch.finfo(torch.float64).eps
    loss, terms = stacked.losses(x, torch.tensor([0, 2]))
    loss.sum().backward()
    for i, r in enumerate((0, 2)):
        own, _, values = compute_losses(models[r], x[i], losses)
        own.backward()
        assert terms[i].tolist() == pytest.approx([values[t] for t in ('loss', 'recon_loss', 'entropy_loss',
                                                                       'l1_loss')], rel=1e-5, abs=1e-9)
        free = bias_before_batch_norm(models[r])
        for j, (key, parameter) in enumerate(models[r].named_parameters()):  # the rounding of other kernels
            scale = float(parameter.grad.abs().max())
            if key not in free:
                assert torch.allclose(stacked.params[j].grad[r], parameter.grad, rtol=0, atol=accumulation * scale), key
        for key, value in models[r].state_dict().items():  # the running statistics moved as the model's own
            scale = float(value.double().abs().max())
            assert torch.allclose(stacked.unit_state(r)[key].double(), value.double(), rtol=0,
                                  atol=accumulation * scale), key
    assert all(float(p.grad[1].abs().max()) == 0 for p in stacked.params)
    fresh = units(kind, 3, **memory)[1].double().state_dict()
    assert all(torch.equal(stacked.unit_state(1)[key], value) for key, value in fresh.items())


def test_batches_are_grouped_by_size_and_never_padded():
    """Three units of 40, 33 and 8 samples at batch 16: step 1 all three (one group, every unit); step 2 the
    first two (16 each) and the third's last 8... no: the third's 8 make its only batch, so at step 1 it is a group
    of its own, and so on; every sample of every unit comes exactly once per epoch, in its unit's order."""
    source = torch.arange(100.0).unsqueeze(1)
    rows = [torch.arange(0, 40), torch.arange(40, 73), torch.arange(80, 88)]
    orders = [torch.randperm(len(r), generator=torch.Generator().manual_seed(i)) for i, r in enumerate(rows)]
    steps = list(UnitBatches(source, rows, 16).epoch(orders))
    shapes = [[(members, tuple(x.shape[:2])) for members, _, x in groups] for groups in steps]
    assert shapes == [[([0, 1], (2, 16)), ([2], (1, 8))], [([0, 1], (2, 16))], [([0], (1, 8)), ([1], (1, 1))]]
    seen = {r: [] for r in range(3)}
    for groups in steps:
        for members, picked, x in groups:
            assert picked is None or picked.tolist() == members
            for i, r in enumerate(members):
                seen[r] += x[i, :, 0].long().tolist()
    for r in range(3):
        assert seen[r] == rows[r][orders[r]].tolist()
    everyone = list(UnitBatches(source, rows[:2], 20).epoch(orders[:2]))[0]
    assert [(members, picked) for members, picked, _ in everyone] == [([0, 1], None)]  # all units: no gather


def test_stacked_adam_is_torch_adam_per_unit_with_its_own_rate_and_skips_inactive_units():
    torch.manual_seed(0)
    weights = torch.randn(5, 4, 5)
    stacked = torch.nn.Parameter(weights.clone())
    rates = [1e-2, 1e-3, 3e-2, 1e-3, 1e-3]
    adam = StackedAdam([stacked], rates, 5)
    own = [torch.nn.Parameter(weights[r].clone()) for r in range(5)]
    optimizers = [torch.optim.Adam([p], lr=rate, foreach=True) for p, rate in zip(own, rates)]
    for step in range(4):
        grads = torch.randn(5, 4, 5)
        # unit 3 never steps, unit 4 once: their saved states are those of per-unit optimizers too
        active = torch.tensor([True, step % 2 == 0, step != 1, False, step == 3])
        stacked.grad = grads
        adam.step(active)
        for r in range(5):
            if active[r]:
                own[r].grad = grads[r]
                optimizers[r].step()
    for r in range(5):
        assert torch.allclose(stacked.detach()[r], own[r].detach(), rtol=0, atol=1e-6)
        states = adam.unit_state(r, optimizers[r].state_dict())['state']
        assert states.keys() == optimizers[r].state_dict()['state'].keys()  # none before the first step
        if r == 3:
            continue
        state, reference = states[0], optimizers[r].state_dict()['state'][0]
        assert float(state['step']) == float(reference['step']) == [4, 2, 3, 0, 1][r]
        assert torch.allclose(state['exp_avg_sq'], reference['exp_avg_sq'], rtol=1e-5, atol=1e-9)


def train_both(kind, losses, sizes, epochs=3, batch=16, lr=1e-3, **memory):
    """The same units trained one after another (train_unit) and in lockstep on unequal numbers of samples;
    (per-unit epoch losses alone, together, the largest weight difference and the fraction of weights that differ
    by more than lr / 10, both outside ``bias_before_batch_norm``)."""
    torch.manual_seed(0)
    source = samples(kind, sum(sizes) + 10)
    rows = [torch.randperm(len(source), generator=torch.Generator().manual_seed(r))[:n] for r, n in enumerate(sizes)]
    schedule = Schedule(lr, epochs, batch)
    alone = units(kind, len(sizes), **memory)
    alone_losses = [train_unit(model, source[r], schedule, losses, seed=10 + i)
                    for i, (model, r) in enumerate(zip(alone, rows))]
    together = StackedUnits(units(kind, len(sizes), **memory), losses)
    adam = StackedAdam(together.params, lr, len(sizes))
    generators = [torch.Generator().manual_seed(10 + i) for i in range(len(sizes))]
    together_losses = train_stacked(together, adam, generators, source, rows, schedule,
                                    [f'run{i}' for i in range(len(sizes))], [[] for _ in sizes])
    free = bias_before_batch_norm(alone[0])
    differences = torch.cat([(together.unit_state(r)[key].double() - value.double()).abs().flatten()
                             for r, model in enumerate(alone) for key, value in model.state_dict().items()
                             if key not in free])
    return alone_losses, together_losses, float(differences.max()), float((differences > lr / 10).double().mean())


def test_units_of_unequal_length_train_as_they_do_alone():
    """40, 33 and 7 records at batch 16: 3, 3 and 1 steps an epoch, last batches of 8, 1 and 7 records. The AE
    ends within rounding of the one-at-a-time weights after up to 9 Adam steps of lr 1e-3 (another batch order or
    loss would move them by ~1e-3 a step)."""
    alone_losses, together_losses, worst, _ = train_both('AE', AE, [40, 33, 7])
    for alone, together in zip(alone_losses, together_losses):
        assert together == pytest.approx(alone, rel=1e-6)
    assert worst < 2e-5, worst


def test_image_units_of_unequal_length_train_as_they_do_alone():
    """The same with batch norm (a last batch of 1 image: statistics over its pixels). Here weights cannot be
    compared to rounding: Adam's first steps are lr x sign(gradient), and with batch norm many gradients are as
    small as the rounding of two convolution kernels, so they step either way; the one-at-a-time path itself, run
    with oneDNN off, ends with 14 % of its weights more than lr / 10 from the path with oneDNN on, up to 3.5e-3
    (measured). What stays exact is each step (the test above); over 9 steps the epoch losses agree to 2e-3
    (measured 5e-4), where another batch order or statistic moves them by more (checked by breaking each)."""
    alone_losses, together_losses, worst, _ = train_both('ImageAE', AE, [40, 33, 7])
    for alone, together in zip(alone_losses, together_losses):
        assert together == pytest.approx(alone, rel=2e-3)
    assert worst < ADAM_PARTING * 9 * 1e-3, worst


@pytest.mark.parametrize('kind, rel', [('MemAE', 1e-3), ('ImageMemAE', 3e-3)])
def test_memae_units_differ_only_where_adam_amplifies_rounding(kind, rel):
    """With hard shrinkage many addressing weights are exactly 0, so some gradients are exactly 0 on one path and
    ~1e-12 on the other; Adam turns the latter into a step of the full learning rate. Measured here for the MLP:
    about three steps of lr (3.1e-3 with one thread; 4.05e-3 on an Intel Xeon) after 9 steps; for the image MemAE
    batch norm adds the drift of the image AE's test. The bound is Adam's: a step moves a weight by about lr at
    most, so two paths part by at most two steps of lr per step. Epoch losses within 1e-3 (MLP; image MemAE 3e-3,
    measured 1.3e-3), the first epoch's within 1e-4."""
    alone_losses, together_losses, worst, _ = train_both(kind, MEMAE, [40, 33, 7], shrink_thres=0.1,
                                                         addressing='cosine')
    for alone, together in zip(alone_losses, together_losses):
        assert together[0] == pytest.approx(alone[0], rel=1e-4)  # the first epoch: little drift yet
        assert together == pytest.approx(alone, rel=rel)
    assert worst < ADAM_PARTING * 9 * 1e-3, worst


@pytest.mark.parametrize('kind', ['MemAE', 'ImageAE'])
def test_a_resumed_lockstep_run_equals_an_uninterrupted_one_bit_for_bit(kind):
    torch.manual_seed(0)
    source = samples(kind, 60)
    rows = [torch.arange(0, 40), torch.arange(20, 45)]
    names = ['run0', 'run1']
    memory = {'shrink_thres': 0.1, 'addressing': 'cosine'} if kind == 'MemAE' else {}
    losses = MEMAE if kind == 'MemAE' else AE

    def fresh(models=None):
        stacked = StackedUnits(models or units(kind, 2, **memory), losses)
        return stacked, StackedAdam(stacked.params, 1e-3, 2), [torch.Generator().manual_seed(s) for s in (5, 6)]

    whole, whole_adam, generators = fresh()
    train_stacked(whole, whole_adam, generators, source, rows, Schedule(1e-3, 3, 16), names, [[], []])
    saved = {}

    def keep(epoch, trained, losses_so_far, _):
        if epoch == 2:  # what UnitRunner writes to each unit's training state
            template = torch.optim.Adam(units(kind, 1, **memory)[0].parameters(), lr=1e-3).state_dict()
            saved.update({r: (part.unit_state(r), adam.unit_state(r, template), gens[r].get_state(),
                              list(losses_so_far[r])) for r in trained})
    part, adam, gens = fresh()
    train_stacked(part, adam, gens, source, rows, Schedule(1e-3, 2, 16), names, [[], []], keep)
    models = units(kind, 2, **memory)
    for r, model in enumerate(models):
        model.load_state_dict(saved[r][0])
    resumed, resumed_adam, resumed_gens = fresh(models)
    for r in range(2):
        resumed_adam.load_unit_state(r, saved[r][1])
        resumed_gens[r].set_state(saved[r][2])
    calls = []
    train_stacked(resumed, resumed_adam, resumed_gens, source, rows, Schedule(1e-3, 3, 16), names,
                  [saved[0][3], saved[1][3]], lambda epoch, trained, *_: calls.append((epoch, trained)))
    assert calls == [(3, [0, 1])]  # only the epoch left: the two done are not gone through again
    for r in range(2):
        for key, value in whole.unit_state(r).items():
            assert torch.equal(resumed.unit_state(r)[key], value), key


@pytest.mark.skipif(DEFAULT_KERNELS, reason="inductor's generated C++ uses the vectorised ATen headers, which "
                    'ATEN_CPU_CAPABILITY=default leaves out: it does not compile')
def test_the_compiled_step_trains_as_the_eager_one(monkeypatch):
    """--Compile: the step of all units compiled (torch.compile), the groups of fewer units (here the last batches
    of 8 and 1 records) eager beside it; the MemAE units end where the eager lockstep's end, up to the rounding
    Adam amplifies under hard shrinkage (test above; measured 5e-4 in the second epoch's loss)."""
    torch.manual_seed(0)
    source = samples('MemAE', 90)
    rows = [torch.arange(0, 40), torch.arange(40, 80), torch.arange(50, 83)]
    memory = {'shrink_thres': 0.1, 'addressing': 'cosine'}
    results, compiled_calls, real_compile = [], [], torch.compile

    def compile_spy(function):  # the all-units step: compiled once, then called through the compiled function
        step = real_compile(function)
        return lambda *args: compiled_calls.append(len(args[2])) or step(*args)
    monkeypatch.setattr(torch, 'compile', compile_spy)
    for compiled in (False, True):
        stacked = StackedUnits(units('MemAE', 3, **memory), MEMAE, compiled=compiled)
        assert compiled_calls == []  # nothing compiled or called yet, and never for the eager lockstep
        calls = []
        real = stacked.vmapped
        stacked.vmapped = lambda *args: calls.append(len(args[2])) or real(*args)  # the eager groups
        losses = train_stacked(stacked, StackedAdam(stacked.params, 1e-3, 3),
                               [torch.Generator().manual_seed(s) for s in (1, 2, 3)], source, rows,
                               Schedule(1e-3, 2, 16), ['a', 'b', 'c'], [[], [], []])
        results.append((stacked, losses, calls))
    (eager, eager_losses, _), (compiled, compiled_losses, eager_calls) = results
    assert eager_calls == [2, 1] * 2  # per epoch: the 8-record batches of two units, the 1 record of the third
    assert compiled_calls == [3, 3] * 2  # per epoch: the two 16-record batches of all three units, compiled
    for a, b in zip(eager_losses, compiled_losses):
        assert b[0] == pytest.approx(a[0], rel=1e-5) and b == pytest.approx(a, rel=1e-3)
    for r in range(3):  # 2 epochs of 3 steps at lr 1e-3
        for key, value in eager.unit_state(r).items():
            assert torch.allclose(compiled.unit_state(r)[key], value, rtol=0, atol=ADAM_PARTING * 6 * 1e-3), key


def test_a_non_finite_loss_names_the_unit_before_any_update():
    source = torch.rand(30, D)
    source[25] = float('nan')
    stacked = StackedUnits(units('AE', 2), AE)
    before = [p.detach().clone() for p in stacked.params]
    with pytest.raises(NonFiniteLossError, match=r'^run1: the loss is nan'):
        train_stacked(stacked, StackedAdam(stacked.params, 1e-3, 2), [torch.Generator().manual_seed(1)] * 2,
                      source, [torch.arange(0, 10), torch.arange(20, 30)], Schedule(1e-3, 1, 32), ['run0', 'run1'],
                      [[], []])
    assert all(torch.equal(p, b) for p, b in zip(stacked.params, before))


def test_an_epoch_mean_is_the_float64_mean_of_its_batches_and_reaches_the_epoch_hook():
    """Each unit's epoch mean of every loss term is the float64 mean of the terms of its batches (a float32 sum
    would round once per batch), recorded in its losses and handed to ``on_epoch_end`` for the units that
    trained."""
    torch.manual_seed(0)
    stacked = StackedUnits(units('MemAE', 2, shrink_thres=0.0, addressing='cosine'), MEMAE)
    seen = []  # per call: (units of the group, their terms)
    real = stacked.losses

    def losses(x, picked):
        loss, terms = real(x, picked)
        seen.append((picked, terms.detach().double()))
        return loss, terms
    stacked.losses = losses
    told = []
    rows = [torch.arange(0, 37), torch.arange(30, 90)]
    epoch_losses = train_stacked(stacked, StackedAdam(stacked.params, 1e-3, 2),
                                 [torch.Generator().manual_seed(s) for s in (1, 2)], samples('MemAE', 90), rows,
                                 Schedule(1e-3, 1, 8), ['a', 'b'], [[], []],
                                 lambda epoch, trained, _, means: told.append((epoch, trained, means)))
    expected = {}
    for r in range(2):
        sums, count = torch.zeros(len(LOSS_TERMS), dtype=torch.float64), 0
        for picked, terms in seen:
            members = list(range(2)) if picked is None else picked.tolist()
            if r in members:
                sums, count = sums + terms[members.index(r)], count + 1
        assert count == -(-len(rows[r]) // 8)  # one per batch of 8
        expected[r] = dict(zip(LOSS_TERMS, (sums / count).tolist()))
    assert told == [(1, [0, 1], expected)]
    assert epoch_losses == [[expected[0]['loss']], [expected[1]['loss']]]


def test_a_loss_made_infinite_by_its_entropy_term_names_the_unit():
    """The check is on the total loss: an entropy term that overflows (reconstruction still finite) stops the
    run too."""
    stacked = StackedUnits(units('MemAE', 2, shrink_thres=0.0, addressing='cosine'), MEMAE)
    real = stacked.losses

    def losses(x, picked):
        loss, terms = real(x, picked)
        terms = terms.clone()
        terms[-1, 0] = terms[-1, 2] = float('inf')  # the last unit of the group: run1
        return loss, terms
    stacked.losses = losses
    with pytest.raises(NonFiniteLossError, match=r'^run1: the loss is inf \(reconstruction [0-9.e-]+, entropy inf\)'):
        train_stacked(stacked, StackedAdam(stacked.params, 1e-3, 2), [torch.Generator().manual_seed(1)] * 2,
                      samples('MemAE', 30), [torch.arange(0, 10), torch.arange(20, 30)], Schedule(1e-3, 1, 32),
                      ['run0', 'run1'], [[], []])


def test_an_epoch_groups_each_step_by_batch_size_and_leaves_out_units_sitting_it_out():
    """UnitBatches: unit 0 (16 samples) and unit 2 (20) take batches of 8 in their own orders; unit 1 (None: it
    has done this epoch) takes none; no group is empty when a unit's samples end on a batch boundary."""
    source = torch.arange(100.0)[:, None]
    rows = [torch.arange(0, 16), torch.arange(20, 30), torch.arange(50, 70)]
    orders = [torch.randperm(16, generator=torch.Generator().manual_seed(1)), None,
              torch.randperm(20, generator=torch.Generator().manual_seed(2))]
    steps = list(UnitBatches(source, rows, 8).epoch(orders))
    assert [[(members, None if units is None else units.tolist(), tuple(x.shape)) for members, units, x in groups]
            for groups in steps] == [[([0, 2], [0, 2], (2, 8, 1))], [([0, 2], [0, 2], (2, 8, 1))],
                                     [([2], [2], (1, 4, 1))]]
    for r in (0, 2):  # each unit's samples, in its own order
        taken = torch.cat([x[members.index(r)] for groups in steps for members, _, x in groups if r in members])
        assert torch.equal(taken[:, 0], source[rows[r][orders[r]], 0])


def test_the_units_weights_are_held_once_in_the_stack():
    models = units('MemAE', 2, shrink_thres=0.1, addressing='cosine')
    stacked = StackedUnits(models, MEMAE)
    # the architecture that functional_call fills has no storage of its own (meta tensors)
    assert all(t.is_meta for t in [*stacked.template.parameters(), *stacked.template.buffers()])
    for r, model in enumerate(models):
        assert all(torch.equal(stacked.unit_state(r)[key], value) for key, value in model.state_dict().items())


def test_models_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match='one architecture'):
        StackedUnits([MLPAutoEncoder(D), MLPAutoEncoder(D + 1)], AE)

    class Subclass(MLPAutoEncoder):  # the same parameters, another forward pass: not one architecture either
        pass
    with pytest.raises(ValueError, match='one architecture'):
        StackedUnits([MLPAutoEncoder(D), Subclass(D)], AE)


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


MNIST = ['--Dataset', 'MNIST', '--ModelSetting', 'Conv2DSpar', '--MemDim', '10', '--ShrinkThres', '0.1',
         '--ImageCodeChannels', '4', '--Runs', '2', '--EpochNum', '3', '--BatchSize', '4', '--LR', '1e-5',
         '--EarlyStopping', 'True', '--UseCUDA', 'False', '--IsTbLog', 'False']


def train_mnist(out, data, *flags):
    return run_cli(script_training.main, [*MNIST, '--DataRoot', str(data), '--ModelRoot', str(out / 'models'),
                                          '--OutRoot', str(out), *flags])


def unit_results(out):
    return {path.stem: json.loads(path.read_text()) for path in out.rglob('class*_run*.json')}


def test_lockstep_mnist_trains_every_class_like_the_one_at_a_time_path(tmp_path, capsys):
    """10 classes x 2 runs of a synthetic MNIST whose classes have 10 to 13 training images, so that the
    validation split leaves units of 8, 9 and 10 (batches of 4: steps where units of different lengths group
    apart), each stopped on its own validation set; images train one after another by default (--Lockstep auto:
    lockstep is slower for them on a CPU, docs/SPEED.md), together with --Lockstep True. A learning rate of 1e-5: at
    1e-3 these 4-image batch-norm steps are chaotic, and the one-at-a-time path with oneDNN off differs from itself
    with oneDNN on by 12 % in epoch loss and 0.11 in AUC (measured); at 1e-5 by 1.5e-3 and 0, lockstep by 7e-4 and
    0. So: epoch losses to 3e-3, the same stopping epochs, AUCs within one swapped pair of the 9 test images."""
    make_mnist(tmp_path / 'data', per_class_train=[10 + c % 4 for c in range(10)])
    assert train_mnist(tmp_path / 'alone', tmp_path / 'data') == 0
    assert 'in lockstep' not in capsys.readouterr().out
    assert train_mnist(tmp_path / 'together', tmp_path / 'data', '--Lockstep', 'True') == 0
    assert 'training 20 units in lockstep' in capsys.readouterr().out
    alone, together = unit_results(tmp_path / 'alone'), unit_results(tmp_path / 'together')
    assert len(together) == 20 and set(together) == set(alone)
    assert {r['train_samples'] for r in together.values()} == {8, 9, 10}
    for name, result in alone.items():
        assert together[name]['train_samples'] == result['train_samples']
        assert together[name]['epoch_losses'] == pytest.approx(result['epoch_losses'], rel=3e-3)
        assert together[name]['validation']['chosen_epoch'] == result['validation']['chosen_epoch']
        assert together[name]['metrics']['auc'] == pytest.approx(result['metrics']['auc'], abs=1 / 18 + 1e-9)
    assert not list((tmp_path / 'together').rglob('*_resume.pt'))


def test_an_interrupted_lockstep_mnist_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """Interrupted after the second epoch: every unit has its training state of 2 epochs; --Resume auto continues
    all of them in lockstep for their last epoch and ends bit for bit where the uninterrupted run ends."""
    make_mnist(tmp_path / 'data', per_class_train=[10 + c % 4 for c in range(10)])
    assert train_mnist(tmp_path / 'whole', tmp_path / 'data', '--Lockstep', 'True') == 0
    real_end = EpochClock.end_epoch

    def stop_after_epoch_2(self, unit, units_done, epoch):
        if epoch == 3:
            raise KeyboardInterrupt
        return real_end(self, unit, units_done, epoch)
    with monkeypatch.context() as patch:
        patch.setattr(EpochClock, 'end_epoch', stop_after_epoch_2)
        assert train_mnist(tmp_path / 'parts', tmp_path / 'data', '--Lockstep', 'True') == 130
    assert len(list((tmp_path / 'parts').rglob('*_resume.pt'))) == 20
    assert train_mnist(tmp_path / 'parts', tmp_path / 'data', '--Lockstep', 'True', '--Resume', 'auto') == 0
    whole, parts = unit_results(tmp_path / 'whole'), unit_results(tmp_path / 'parts')
    for name, result in whole.items():
        assert parts[name]['epoch_losses'] == result['epoch_losses'], name
        assert parts[name]['validation'] == result['validation'], name
        assert parts[name]['metrics'] == result['metrics'], name


def test_units_samples_in_one_tensor_are_found_again_by_their_rows():
    """in_one_tensor: every unit's rows select exactly its own samples from the shared tensor, an empty unit
    included, and no unit is left out."""
    parts = [torch.randn(length, 3) for length in (3, 0, 2, 4)]
    source, rows = in_one_tensor(parts)
    assert torch.equal(source, torch.cat(parts)) and len(rows) == len(parts)
    for part, unit_rows in zip(parts, rows):
        assert torch.equal(source[unit_rows], part)
