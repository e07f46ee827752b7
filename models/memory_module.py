"""The memory module of MemAE (Gong et al., ICCV 2019, Sec. 3.3).

Notation (paper): an encoding z in R^C is a *query*; the memory M in R^{N x C} holds N slots m_i.

Addressing (Eq. 4-5)::

    w_i = exp(d(z, m_i)) / sum_j exp(d(z, m_j))           soft-max over the N slots

where d is the dot product z . m_i in the released code (our default, ``addressing='dot'``) and the cosine
similarity z . m_i / (|z| |m_i|) in the paper (``addressing='cosine'``). Ours, not in the paper nor the release:
``temperature`` T divides d before the soft-max, w_i = softmax(d / T); T = 1 (the default) is Eq. 5 as written.
With the cosine, d lies in [-1, 1], so at T = 1 no slot of N can get more than e / (e + (N - 1) / e) (0.069 for
N = 100): a temperature below 1 is what lets cosine addressing concentrate on a few slots.

Hard shrinkage (Eq. 7), written with a ReLU so that it stays differentiable almost everywhere::

    w^_i = max(w_i - lambda, 0) * w_i / (|w_i - lambda| + eps),   eps = 1e-12
    w^   = w^ / max(||w^||_1, eps)                              re-normalisation (Eq. 7, second line)

so every weight below the threshold lambda becomes exactly 0 and the rest keep their value before the L1
re-normalisation. lambda = 0 switches shrinkage (and re-normalisation) off.

Read-out (Eq. 3)::

    z^ = w^ M = sum_i w^_i m_i

Shapes: :class:`MemoryUnit` works on a batch of queries (Q x C) and returns (Q x C) read-outs and (Q x N)
weights. :class:`MemModule` treats every position of a feature map as one query, so it accepts
B x C x L, B x C x H x W and B x C x T x H x W, and returns the read-out with the input's shape and the
addressing weights shaped B x N x L / B x N x H x W / B x N x T x H x W.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

SHRINK_EPS = 1e-12


def hard_shrink_relu(weights, lambd=0.0, epsilon=SHRINK_EPS):
    """Eq. 7: keep w where w > lambd, set it to exactly 0 elsewhere (weights are soft-max outputs, so >= 0)."""
    return F.relu(weights - lambd) * weights / (torch.abs(weights - lambd) + epsilon)


def dot_logits(queries, memory):
    """d(z, m_i) = z . m_i for every query and slot: (Q x C), (N x C) -> (Q x N)."""
    return F.linear(queries, memory)


def cosine_logits(queries, memory):
    """d(z, m_i) = z . m_i / (|z| |m_i|): (Q x C), (N x C) -> (Q x N)."""
    return F.linear(F.normalize(queries, dim=1), F.normalize(memory, dim=1))


ADDRESSING = {'dot': dot_logits, 'cosine': cosine_logits}
ADDRESSING_CHOICES = tuple(ADDRESSING)


class MemoryUnit(nn.Module):
    """N memory slots of C features, addressed by Q queries at once.

    ``weight`` (N x C) is the memory M; its name is part of the released ``state_dict``
    (``mem_rep.memory.weight``).
    """

    def __init__(self, mem_dim, fea_dim, shrink_thres=0.0025, addressing='dot', temperature=1.0):
        super().__init__()
        if addressing not in ADDRESSING_CHOICES:
            raise ValueError(f"unknown memory addressing {addressing!r}; valid: {', '.join(ADDRESSING_CHOICES)}")
        if not temperature > 0:
            raise ValueError(f'the addressing temperature must be positive, got {temperature}')
        self.mem_dim = mem_dim
        self.fea_dim = fea_dim
        self.shrink_thres = shrink_thres
        self.addressing = addressing
        self.temperature = temperature
        self.weight = nn.Parameter(torch.empty(mem_dim, fea_dim))
        self.reset_parameters()

    def reset_parameters(self):
        """uniform(-1/sqrt(C), 1/sqrt(C)), as released (the default init of a linear layer's weight)."""
        bound = 1.0 / math.sqrt(self.fea_dim)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, queries):
        """(Q x C) queries -> {'output': (Q x C) read-outs, 'att': (Q x N) addressing weights}."""
        att = F.softmax(ADDRESSING[self.addressing](queries, self.weight) / self.temperature, dim=1)
        if self.shrink_thres > 0:
            att = hard_shrink_relu(att, lambd=self.shrink_thres)
            att = F.normalize(att, p=1, dim=1, eps=SHRINK_EPS)
        return {'output': att @ self.weight, 'att': att}

    def extra_repr(self):
        return (f'mem_dim={self.mem_dim}, fea_dim={self.fea_dim}, shrink_thres={self.shrink_thres}, '
                f'addressing={self.addressing}, temperature={self.temperature}')


class MemModule(nn.Module):
    """Memory addressing for feature maps: each spatial (or spatio-temporal) position is one query."""

    def __init__(self, mem_dim, fea_dim, shrink_thres=0.0025, addressing='dot', temperature=1.0):
        super().__init__()
        self.mem_dim = mem_dim
        self.fea_dim = fea_dim
        self.shrink_thres = shrink_thres
        self.memory = MemoryUnit(mem_dim, fea_dim, shrink_thres, addressing, temperature)

    def forward(self, features):
        """B x C x *S -> {'output': B x C x *S, 'att': B x N x *S}, for S of 1, 2 or 3 dimensions."""
        if features.dim() not in (3, 4, 5):
            raise ValueError(f'MemModule takes B x C x L, B x C x H x W or B x C x T x H x W features, '
                             f'got shape {tuple(features.shape)}')
        if features.shape[1] != self.fea_dim:
            raise ValueError(f'MemModule expects {self.fea_dim} feature channels, got {features.shape[1]}')
        batch, channels, *positions = features.shape
        # Channels last, then one row per position: (B * prod(S)) x C.
        queries = features.movedim(1, -1).reshape(-1, channels)
        result = self.memory(queries)
        output = result['output'].reshape(batch, *positions, channels).movedim(-1, 1)
        att = result['att'].reshape(batch, *positions, self.mem_dim).movedim(-1, 1)
        return {'output': output, 'att': att}
