"""Fully connected autoencoders of the paper's KDDCUP99 experiment.

The shape of DAGMM's compression network, which the paper follows: FC(d,60)-FC(60,30)-FC(30,10)-FC(10,3) and
FC(3,10)-FC(10,30)-FC(30,60)-FC(60,d), tanh after every layer but the code layer and the output layer. d is the
width of a record after one-hot encoding (about 120). The MemAE variant puts a memory of N slots of 3 features
(``mem_rep``) between encoder and decoder; each record is one query, so ``att`` is B x N.
"""
from torch import nn

from models.memory_module import MemoryUnit

HIDDEN = (60, 30, 10, 3)


def _mlp(widths):
    """Linear layers between consecutive widths, tanh between them (none after the last)."""
    layers = []
    for i, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if i < len(widths) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class MLPAutoEncoder(nn.Module):
    """The AE baseline; ``forward`` returns the reconstruction tensor (B x d)."""

    def __init__(self, input_dim, hidden=HIDDEN):
        super().__init__()
        self.encoder = _mlp((input_dim, *hidden))
        self.decoder = _mlp((*hidden[::-1], input_dim))

    def forward(self, x):
        return self.decoder(self.encoder(x))


class MLPMemAE(MLPAutoEncoder):
    """MemAE for records; ``forward`` returns ``{'output': B x d, 'att': B x N}``."""

    def __init__(self, input_dim, mem_dim=50, shrink_thres=0.02, addressing='dot', hidden=HIDDEN, temperature=1.0):
        super().__init__(input_dim, hidden)
        self.mem_rep = MemoryUnit(mem_dim, hidden[-1], shrink_thres, addressing, temperature)

    def forward(self, x):
        memory_result = self.mem_rep(self.encoder(x))
        return {'output': self.decoder(memory_result['output']), 'att': memory_result['att']}
