"""How a MemAE addresses its memory: the addressing weight each slot receives and how many slots a query reads.

:class:`SlotUsage` records it while a model runs (a forward hook on the memory module, so it costs no extra
forward pass): training reports it per epoch (log and TensorBoard; a memory whose every weight was shrunk to 0 has
*collapsed*), testing draws it (utils/plots.py).
"""


class SlotUsage:
    """Sum of the addressing weights each slot receives, over every query the memory answers while attached.

    ``with SlotUsage(model.mem_rep) as usage: model(x)``; then ``usage.mass`` (N,) and ``usage.queries``.
    ``usage.nonzero_per_query``: the mean number of slots with a non-zero weight per query (0 when shrinkage
    has removed every weight: memory collapse); ``usage.largest_weight_per_query``: the mean over queries of the
    largest weight (1 when every query reads one slot, 1/N when it reads all alike)."""

    def __init__(self, memory):
        self.memory = memory
        self._mass = None
        self._nonzero = 0
        self._largest = 0
        self.queries = 0
        self._handle = None

    def _record(self, module, inputs, output):
        # sums stay on the model's device: reading them back every batch would stall a GPU at every step
        att = output['att'].detach()
        weights = att.movedim(1, -1).reshape(-1, att.shape[1]).float()  # queries x N
        self._mass = weights.sum(0) if self._mass is None else self._mass + weights.sum(0)
        self._nonzero = (weights > 0).sum() + self._nonzero
        self._largest = weights.amax(1).sum() + self._largest
        self.queries += weights.shape[0]

    def __enter__(self):
        self._handle = self.memory.register_forward_hook(self._record)
        return self

    def __exit__(self, *exc):
        self._handle.remove()

    @property
    def mass(self):
        """Addressing weight per slot (N,), on the CPU; None before the first query."""
        return None if self._mass is None else self._mass.cpu()

    @property
    def nonzero(self):
        """Non-zero addressing weights over all queries."""
        return int(self._nonzero)

    @property
    def nonzero_per_query(self):
        return self.nonzero / self.queries if self.queries else float('nan')

    @property
    def largest_weight_per_query(self):
        return float(self._largest) / self.queries if self.queries else float('nan')

    @property
    def slots_used(self):
        """Slots that received any addressing weight."""
        return int((self.mass > 0).sum()) if self.mass is not None else 0

    @property
    def collapsed(self):
        """Shrinkage set every addressing weight to 0: the decoder saw only zeros."""
        return self.queries > 0 and self.nonzero == 0

    def describe(self):
        """One line for a training log; it says so when the memory collapsed."""
        line = (f'{self.nonzero_per_query:.2f} non-zero addressing weights per query, {self.slots_used} of '
                f'{len(self.mass)} slots used')
        if self.collapsed:
            line += (' -- memory collapse: shrinkage set every addressing weight to 0, so the decoder sees only '
                     'zeros (lower --ShrinkThres)')
        return line

    def shares(self):
        """Share of the total addressing weight per slot (sums to 1 unless every weight was shrunk to 0)."""
        total = float(self.mass.sum())
        return (self.mass / total).numpy() if total > 0 else self.mass.numpy()
