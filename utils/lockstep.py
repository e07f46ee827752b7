"""Many one-class units trained in lockstep as one batched model: the KDDCUP99 runs and the image classes.

Why: one training step of a small model (the 118-60-30-10-3 KDD network on 1,024 records, a 28 x 28 image
autoencoder on 64 images) is partly per-operation overhead, which R units trained one after the other pay R
times. Here the R units' parameters and buffers are stacked along a first axis (a weight of R x out x in, a
memory of R x N x C, batch-norm statistics of R x C) and every operation runs once for all of them:
``torch.func.functional_call`` of one unit's model under ``torch.vmap`` over the unit axis, which turns the
linear layers into batched matrix products and the convolutions into grouped convolutions. The loss is the
per-unit path's own function (utils/training.py ``loss_terms``), run under the same ``vmap``.

Per unit, training is what :func:`utils.one_class.train_unit` does: the weights its own seed initialised, a
permutation generator seeded with its seed, mini-batches of its own training samples in that order, the same
loss, batch-norm statistics over its own batch, and Adam with its own step count. Units of different lengths:
at every step the units are grouped by the size of their batch (all full batches together; a unit's last,
shorter batch with the units whose batch has the same size) and each group runs as one ``vmap`` call, so no
batch is ever padded (padding would change batch-norm statistics); a unit whose epoch has ended sits the rest of
the epoch out and takes no Adam step. The only difference to the per-unit path is floating-point rounding; but
Adam divides by the root of the running squared gradient, so a weight whose gradient is exactly 0 on one path
and 1e-20 on the other moves by the learning rate on one and not on the other, and the weights drift apart over
the epochs (tests/test_lockstep.py states how far); the metrics agree within their spread over seeds
(docs/SPEED.md).

Shapes: a group's samples G x B x (sample shape); its losses G and loss terms G x 4.
"""
import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from utils.training import LOSS_TERMS, NonFiniteLossError, loss_terms

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which train_unit uses


class UnitLoss(nn.Module):
    """One unit's model and its training loss as one module, so that ``functional_call`` can run
    :func:`utils.training.loss_terms` with any unit's parameters: batch -> (loss, the LOSS_TERMS as a tensor)."""

    def __init__(self, model, losses):
        super().__init__()
        self.model, self.losses = model, losses

    def forward(self, batch):
        loss, _, terms = loss_terms(self.model, batch, self.losses)
        return loss, terms


class StackedUnits:
    """R models of one architecture (the same class and ``state_dict`` shapes) as stacked tensors with the unit
    axis first: ``params`` (in the order of ``model.parameters()``, which is a unit's Adam state's order) and
    ``buffers``; ``keys`` are a unit's ``state_dict`` keys. ``compiled`` (--Compile): the step of all units
    together, nearly every step, runs ``torch.compile``d (fused elementwise kernels; a one-time compilation of
    about half a minute); the groups of a few units at the end of an epoch, whose shapes vary, run as they are."""

    def __init__(self, models, losses, compiled=False):
        shapes = {(type(m), tuple((k, tuple(v.shape)) for k, v in m.state_dict().items())) for m in models}
        if len(shapes) != 1:
            raise ValueError('lockstep training needs models of one architecture and shape')
        params, buffers = stack_module_state(models)
        self.param_names, self.buffer_names = list(params), list(buffers)
        self.params = [nn.Parameter(params[name].detach()) for name in self.param_names]
        self.buffers = [buffers[name] for name in self.buffer_names]
        self.keys = list(models[0].state_dict())
        # the architecture without storage: functional_call gives it a unit's tensors for every call
        self.template = UnitLoss(copy.deepcopy(models[0]).to('meta'), losses).train()
        self.all_units = torch.compile(self.vmapped) if compiled else self.vmapped

    def vmapped(self, params, buffers, batch):
        def one_unit(unit_params, unit_buffers, unit_batch):
            return functional_call(self.template, (unit_params, unit_buffers), (unit_batch,))
        return vmap(one_unit)(params, buffers, batch)

    def losses(self, batch, units=None):
        """The loss and its terms (G, G x 4) of the units ``units`` (a long tensor of G unit indices; None: all
        R) on their batches ``batch`` (G x B x ...), through the graph of the stacked parameters; the units'
        batch-norm statistics move as their own models' would."""
        def pick(tensor):
            return tensor if units is None else tensor[units]
        params = {f'model.{n}': pick(p) for n, p in zip(self.param_names, self.params)}
        buffers = {f'model.{n}': pick(b) for n, b in zip(self.buffer_names, self.buffers)}
        loss, terms = (self.all_units if units is None else self.vmapped)(params, buffers, batch)
        if units is not None:  # the statistics were updated in the picked copies: write them back
            for name, stacked in zip(self.buffer_names, self.buffers):
                stacked[units] = buffers[f'model.{name}']
        return loss, terms

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def unit_state(self, r):
        """Unit ``r``'s ``state_dict`` (the keys and shapes of its own model)."""
        tensors = dict(zip(self.param_names, self.params)) | dict(zip(self.buffer_names, self.buffers))
        return {key: tensors[key][r].detach().clone() for key in self.keys}


class StackedAdam:
    """torch.optim.Adam (default betas and eps, no weight decay) for stacked parameters, with a step count and a
    learning rate (``lr``: one for all, or one per unit) per unit; :meth:`step` updates the units ``active``
    marks and leaves the others exactly as they were."""

    def __init__(self, params, lr, units):
        self.params = list(params)
        self.lr = torch.as_tensor(lr, dtype=torch.float64).expand(units).clone()
        self.steps = torch.zeros(units, dtype=torch.float64)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, active):
        (beta1, beta2), units = ADAM_BETAS, len(self.steps)
        active = active.cpu()
        self.steps += active.double()
        steps = self.steps.clamp(min=1)
        device = self.params[0].device
        step_size = (self.lr / (1 - beta1 ** steps)).float().to(device)
        bias_correction2_sqrt = (1 - beta2 ** steps).sqrt().float().to(device)
        active = active.to(device)
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            shape = (units,) + (1,) * (p.dim() - 1)
            on = active.view(shape)
            grad = torch.where(on, p.grad, torch.zeros_like(p.grad))
            m.copy_(torch.where(on, m.lerp(grad, 1 - beta1), m))
            v.copy_(torch.where(on, v * beta2 + (1 - beta2) * grad * grad, v))
            update = step_size.view(shape) * m / (v.sqrt() / bias_correction2_sqrt.view(shape) + ADAM_EPS)
            p.sub_(torch.where(on, update, torch.zeros_like(update)))

    def unit_state(self, r, template):
        """Unit ``r``'s state in the format of ``torch.optim.Adam.state_dict()`` (``template``: such a dict of a
        per-unit optimizer, for its parameter groups), so that a per-unit run can resume it."""
        state = {i: {'step': torch.tensor(float(self.steps[r])), 'exp_avg': m[r].clone(), 'exp_avg_sq': v[r].clone()}
                 for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq)) if self.steps[r] > 0}
        return {'state': state, 'param_groups': template['param_groups']}

    def load_unit_state(self, r, state):
        """Take unit ``r``'s state from a ``torch.optim.Adam.state_dict()`` of its own model."""
        for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq)):
            if i in state['state']:
                m[r] = state['state'][i]['exp_avg']
                v[r] = state['state'][i]['exp_avg_sq']
                self.steps[r] = float(state['state'][i]['step'])


def in_one_tensor(parts):
    """The sample tensors ``parts`` as one tensor, from which :func:`train_stacked` draws every unit's batches, and
    the rows of each part in it."""
    starts = torch.tensor([0, *(len(part) for part in parts)]).cumsum(0)
    return torch.cat(list(parts)), [torch.arange(start, end) for start, end in zip(starts[:-1], starts[1:])]


class UnitBatches:
    """Each unit's mini-batches of one epoch, in lockstep. Unit r trains on the samples ``source[rows[r]]`` (one
    shared tensor, no copy per unit), in the order of its own permutation, ``batch_size`` at a time."""

    def __init__(self, source, rows, batch_size):
        self.source, self.batch_size = source, batch_size
        self.rows = [torch.as_tensor(r, dtype=torch.long, device=source.device) for r in rows]

    def epoch(self, orders):
        """For every step of an epoch, its groups: (unit indices, the same as a tensor or None for all units,
        samples G x B x ...), one group per batch size; ``orders[r]`` is unit r's permutation of its samples, or
        None for a unit that sits this epoch out."""
        lengths = [0 if order is None else len(order) for order in orders]
        width = max(lengths)
        index = torch.zeros(len(orders), width, dtype=torch.long, device=self.source.device)
        for r, (rows, order) in enumerate(zip(self.rows, orders)):
            if order is not None:
                index[r, :len(order)] = rows[order]
        for start in range(0, width, self.batch_size):
            sizes = {}
            for r, length in enumerate(lengths):
                size = min(self.batch_size, length - start)
                if size > 0:
                    sizes.setdefault(size, []).append(r)
            groups = []
            for size, members in sizes.items():
                whole = len(members) == len(orders)
                units = None if whole else torch.tensor(members, device=self.source.device)
                picked = index[:, start:start + size] if whole else index[units, start:start + size]
                groups.append((members, units, self.source[picked]))
            yield groups


def train_stacked(stacked, adam, generators, source, rows, schedule, names, epoch_losses, on_epoch_end=None):
    """Train the units of ``stacked`` (:class:`StackedUnits`, with its :class:`StackedAdam` ``adam``), unit r on
    the samples ``source[rows[r]]``, each unit's batches in the order of its ``generators[r]``, until every unit
    has ``schedule.epochs`` epochs; ``epoch_losses`` (R lists, the epochs a unit has done: a resumed unit
    continues after them) grows by each epoch's mean loss. ``on_epoch_end(epoch, units, epoch_losses, means)``
    runs after every epoch (1-based) with the units that trained in it and, per unit, the epoch's mean of every
    term of LOSS_TERMS. A non-finite loss raises :class:`NonFiniteLossError` naming its unit before the step
    updates anything. Returns ``epoch_losses``."""
    batches = UnitBatches(source, rows, schedule.batch_size)
    units = len(rows)
    for epoch in range(min(len(done) for done in epoch_losses), schedule.epochs):
        orders = [torch.randperm(len(r), generator=g).to(source.device) if len(done) <= epoch else None
                  for r, g, done in zip(rows, generators, epoch_losses)]
        sums = torch.zeros(units, len(LOSS_TERMS), dtype=torch.float64)
        counts = torch.zeros(units, dtype=torch.float64)
        for groups in batches.epoch(orders):
            stacked.zero_grad()
            active = torch.zeros(units, dtype=torch.bool)
            for members, picked, x in groups:
                loss, terms = stacked.losses(x, picked)
                values = terms.detach().double().cpu()
                bad = ~torch.isfinite(values[:, 0])
                if bad.any():
                    i = int(torch.nonzero(bad)[0])
                    raise NonFiniteLossError(f'{names[members[i]]}: the loss is {values[i, 0].item()} '
                                             f'(reconstruction {values[i, 1].item()}, entropy {values[i, 2].item()}); '
                                             f'try a lower --LR')
                loss.sum().backward()  # the units' parameters are disjoint: each gets the gradient of its own loss
                active[members] = True
                sums[members] += values
                counts[members] += 1
            adam.step(active)
        trained = [r for r, order in enumerate(orders) if order is not None]
        means = {r: dict(zip(LOSS_TERMS, (sums[r] / counts[r]).tolist())) for r in trained}
        for r in trained:
            epoch_losses[r].append(means[r]['loss'])
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, trained, epoch_losses, means)
    return epoch_losses
