"""Many one-class units trained in lockstep as one batched model: the KDDCUP99 runs (fully connected MemAE or AE).

Why: one training step of the 118-60-30-10-3 network on 1,024 records is mostly per-operation overhead, so 20
runs one after the other pay it 20 times. Here the R units' parameters are stacked along a first axis (a
weight of R x out x in, a memory of R x N x C) and every operation runs once for all of them: ``torch.baddbmm``
for the layers, batched matrix products for the memory.

Per unit, training is what :func:`utils.one_class.train_unit` does: the weights its own seed initialised, a
permutation generator seeded with its seed, mini-batches of its own training records in that order, the same
loss (utils/training.py), and Adam with its own step count. Units with fewer records have a smaller last batch, or
none: each unit's batch is padded to ``batch_size`` and its loss is the mean over its real records only (a
mask), and a unit without a batch at a step takes no Adam step. The only difference to the per-unit path is
floating-point rounding; but Adam divides by the root of the running squared gradient, so a weight whose
gradient is exactly 0 on one path and 1e-20 on the other moves by the learning rate on one and not on the other,
and the weights drift apart over the epochs (tests/test_lockstep.py states how far); the metrics agree within
their spread over seeds (docs/SPEED.md).

Shapes: records R x B x d; codes R x B x C; addressing weights R x B x N.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from models import has_latent_penalty
from models.entropy_loss import ENTROPY_EPS
from models.memory_module import ADDRESSING_CHOICES, SHRINK_EPS, hard_shrink_relu
from utils.training import LOSS_TERMS, NonFiniteLossError

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which train_unit uses


class StackedMLP(nn.Module):
    """R models of models/mlp_ae.py (all MLPAutoEncoder or all MLPMemAE of one shape) as one module whose
    parameters carry the unit axis first; ``keys`` are the per-unit ``state_dict`` keys, in parameter order."""

    def __init__(self, models):
        super().__init__()
        first = models[0]
        self.keys = [name for name, _ in first.named_parameters()]
        self.stacked = nn.ParameterList([nn.Parameter(torch.stack([dict(m.named_parameters())[key].detach()
                                                                   for m in models]))
                                         for key in self.keys])
        self.encoder_layers = self._layers(first.encoder, 'encoder')
        self.decoder_layers = self._layers(first.decoder, 'decoder')
        memory = getattr(first, 'mem_rep', None)
        self.memory = None
        if memory is not None:
            if memory.addressing not in ADDRESSING_CHOICES:
                raise ValueError(f'unknown memory addressing {memory.addressing!r}')
            self.memory = (self.keys.index('mem_rep.weight'), memory.addressing, memory.shrink_thres,
                           memory.temperature)

    def _layers(self, sequential, prefix):
        """(index of the weight in ``keys``, index of the bias) per linear layer, None for a tanh."""
        layers = []
        for i, layer in enumerate(sequential):
            if isinstance(layer, nn.Linear):
                layers.append((self.keys.index(f'{prefix}.{i}.weight'), self.keys.index(f'{prefix}.{i}.bias')))
            elif isinstance(layer, nn.Tanh):
                layers.append(None)
            else:
                raise ValueError(f'lockstep training takes linear and tanh layers, not {type(layer).__name__}')
        return layers

    def _run(self, layers, x):
        for layer in layers:
            if layer is None:
                x = torch.tanh(x)
            else:
                weight, bias = self.stacked[layer[0]], self.stacked[layer[1]]
                x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        return x

    def forward(self, x):
        """R x B x d records -> {'output': R x B x d, 'att': R x B x N or None, 'code': R x B x C}."""
        code = self._run(self.encoder_layers, x)
        att = None
        latent = code
        if self.memory is not None:
            latent, att = stacked_memory_readout(code, self.stacked[self.memory[0]], *self.memory[1:])
        return {'output': self._run(self.decoder_layers, latent), 'att': att, 'code': code}

    def unit_state(self, r):
        """Unit ``r``'s ``state_dict`` (the keys and shapes of its own model)."""
        return {key: tensor[r].detach().clone() for key, tensor in zip(self.keys, self.stacked)}


def stacked_memory_readout(queries, memory, addressing, shrink_thres, temperature):
    """The memory of models/memory_module.py (Eq. 3-7) for R units at once: queries R x Q x C, memory R x N x C
    -> (read-outs R x Q x C, weights R x Q x N)."""
    if addressing == 'cosine':
        logits = torch.bmm(F.normalize(queries, dim=2), F.normalize(memory, dim=2).transpose(1, 2))
    else:
        logits = torch.bmm(queries, memory.transpose(1, 2))
    att = F.softmax(logits / temperature, dim=2)
    if shrink_thres > 0:
        att = hard_shrink_relu(att, lambd=shrink_thres)
        att = F.normalize(att, p=1, dim=2, eps=SHRINK_EPS)
    return torch.bmm(att, memory), att


def masked_mean(values, mask, count):
    """Per unit, the mean of ``values`` (R x B) over its real records (``mask``, R x B; ``count``, R)."""
    return (values * mask).sum(dim=1) / count.clamp(min=1)


def unit_losses(output, x, mask, losses):
    """Per unit (R), the loss of utils/training.compute_losses and its terms (R x 4, LOSS_TERMS' order), over
    the records ``mask`` marks."""
    count = mask.sum(dim=1)
    paper = losses.scaling == 'paper'  # each term times the size of one sample's part (models/losses.py)
    recon = masked_mean(((output['output'] - x) ** 2).mean(dim=2), mask, count) * (x.shape[2] if paper else 1)
    zero = torch.zeros_like(recon)
    entropy = l1 = zero
    loss = recon
    if losses.memory_model:
        # an R x B x N weight holds one query per record: one element per query and slot (att[0, 0].numel())
        entropy = masked_mean(-(output['att'] * torch.log(output['att'] + ENTROPY_EPS)).sum(dim=2), mask, count)
        loss = loss + losses.entropy_weight * entropy
    if has_latent_penalty(losses.model_name):  # AE-l1, as compute_losses decides it
        l1 = masked_mean(output['code'].abs().mean(dim=2), mask, count) * (output['code'].shape[2] if paper else 1)
        loss = loss + losses.l1_weight * l1
    return loss, torch.stack([loss, recon, entropy, l1], dim=1)


class StackedAdam:
    """torch.optim.Adam (default betas and eps, no weight decay) for stacked parameters, with a step count per
    unit; :meth:`step` updates the units ``active`` marks and leaves the others exactly as they were."""

    def __init__(self, params, lr, units):
        self.params, self.lr = list(params), lr
        self.steps = torch.zeros(units, dtype=torch.float64)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, active):
        (beta1, beta2), units = ADAM_BETAS, len(self.steps)
        self.steps += active.double()
        steps = self.steps.clamp(min=1)
        step_size = (self.lr / (1 - beta1 ** steps)).float()
        bias_correction2_sqrt = (1 - beta2 ** steps).sqrt().float()
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


class UnitBatches:
    """Each unit's mini-batches of one epoch, in lockstep. Unit r trains on the records ``source[rows[r]]`` (one
    shared tensor, no copy per unit), in the order of its own permutation, ``batch_size`` at a time; where a unit
    has fewer records than another, its batch is padded (with its first record) and the padding masked."""

    def __init__(self, source, rows, batch_size):
        self.source, self.batch_size = source, batch_size
        self.rows = [torch.as_tensor(r, dtype=torch.long, device=source.device) for r in rows]

    def epoch(self, orders):
        """(records R x B x d, mask R x B, active R) for every step of an epoch; ``orders[r]`` is unit r's
        permutation of its records, or None for a unit that sits this epoch out."""
        steps = max(math.ceil(len(o) / self.batch_size) for o in orders if o is not None)
        width = steps * self.batch_size
        index = torch.zeros(len(orders), width, dtype=torch.long, device=self.source.device)
        mask = torch.zeros(len(orders), width, device=self.source.device)
        for r, (rows, order) in enumerate(zip(self.rows, orders)):
            index[r] = rows[0]
            if order is not None:
                index[r, :len(order)] = rows[order]
                mask[r, :len(order)] = 1
        for k in range(steps):
            part = slice(k * self.batch_size, (k + 1) * self.batch_size)
            batch_mask = mask[:, part]
            yield self.source[index[:, part]], batch_mask, batch_mask.any(dim=1)


def train_stacked(stacked, adam, generators, source, rows, schedule, losses, names, epoch_losses,
                  on_epoch_end=None):
    """Train the units of ``stacked`` (:class:`StackedMLP`, with its :class:`StackedAdam` ``adam``), unit r on
    the records ``source[rows[r]]``, each unit's batches in the order of its ``generators[r]``, until every unit
    has ``schedule.epochs`` epochs; ``epoch_losses`` (R lists, the epochs a unit has done: a resumed unit
    continues after them) grows by each epoch's mean loss. ``on_epoch_end(epoch, units, epoch_losses, means)``
    runs after every epoch (1-based) with the units that trained in it and, per unit, the epoch's mean of every
    term of LOSS_TERMS. Returns ``epoch_losses``."""
    batches = UnitBatches(source, rows, schedule.batch_size)
    stacked.train()
    for epoch in range(min(len(done) for done in epoch_losses), schedule.epochs):
        orders = [torch.randperm(len(r), generator=g).to(source.device) if len(done) <= epoch else None
                  for r, g, done in zip(rows, generators, epoch_losses)]
        sums = torch.zeros(len(rows), len(LOSS_TERMS), dtype=torch.float64)
        counts = torch.zeros(len(rows), dtype=torch.float64)
        for x, mask, active in batches.epoch(orders):
            loss, terms = unit_losses(stacked(x), x, mask, losses)
            values = terms.detach().double()
            bad = active & ~torch.isfinite(values[:, 0])
            if bad.any():
                r = int(torch.nonzero(bad)[0])
                raise NonFiniteLossError(f'{names[r]}: the loss is {values[r, 0].item()} (reconstruction '
                                         f'{values[r, 1].item()}, entropy {values[r, 2].item()}); try a lower --LR')
            stacked.zero_grad()
            loss.sum().backward()  # the units' parameters are disjoint: each gets the gradient of its own loss
            adam.step(active)
            sums += torch.where(active.unsqueeze(1), values, torch.zeros_like(values))
            counts += active.double()
        trained = [r for r, order in enumerate(orders) if order is not None]
        means = {r: dict(zip(LOSS_TERMS, (sums[r] / counts[r]).tolist())) for r in trained}
        for r in trained:
            epoch_losses[r].append(means[r]['loss'])
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, trained, epoch_losses, means)
    return epoch_losses

