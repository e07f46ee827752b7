"""Entropy loss on the memory addressing weights (Gong et al., ICCV 2019, Eq. 9).

For each query with weights w^ (N values summing to 1)::

    E(w^) = - sum_i w^_i log(w^_i + eps),   eps = 1e-12

averaged over every query of the batch. Minimising it pushes the addressing towards a few slots.
"""
import torch
from torch import nn

ENTROPY_EPS = 1e-12


class EntropyLoss(nn.Module):
    """Mean entropy of the queries of a weight tensor whose dimension 1 holds the N slots: Q x N, or B x N x *S."""

    def __init__(self, eps=ENTROPY_EPS):
        super().__init__()
        self.eps = eps

    def forward(self, weights):
        return -(weights * torch.log(weights + self.eps)).sum(dim=1).mean()


class EntropyLossEncap(nn.Module):
    """Entropy loss for ``att`` as a MemAE returns it: B x N x *S, one query per position of S."""

    def __init__(self, eps=ENTROPY_EPS):
        super().__init__()
        self.entropy_loss = EntropyLoss(eps)

    def forward(self, att):
        if att.dim() < 2:
            raise ValueError(f'addressing weights need at least 2 dimensions (B x N x ...), got {tuple(att.shape)}')
        # Summed over the slots (dimension 1), averaged over every other index: one query per position of S.
        return self.entropy_loss(att)
