"""One optimisation step of MemAE or AE training, shared by the video script and the one-class experiments."""
import math
import weakref
from dataclasses import dataclass

import torch

from models import has_latent_penalty, is_memory_model
from models.losses import entropy_loss, latent_l1_loss, reconstruction_loss
from utils.errors import InputError
from utils.runtime import autocast

LOSS_TERMS = ('loss', 'recon_loss', 'entropy_loss', 'l1_loss')


class NonFiniteLossError(InputError):
    """The loss became NaN or infinite (usually a learning rate too large for the data)."""


def base_network(model):
    """The network inside DistributedDataParallel (``module``) and torch.compile (``_orig_mod``) wrappers."""
    while True:
        inner = getattr(model, 'module', None) or getattr(model, '_orig_mod', None)
        if inner is None:
            return model
        model = inner


class EncodingRecorder:
    """Keeps the encoder's latest output (a forward hook, attached once per network), so that the AE-l1 penalty
    gets the encoding through the model's own forward, wrapped or not."""
    _attached = weakref.WeakKeyDictionary()

    def __init__(self, encoder):
        self.latest = None
        encoder.register_forward_hook(self._record)

    def _record(self, module, inputs, output):
        self.latest = output

    @classmethod
    def of(cls, network):
        if network not in cls._attached:
            cls._attached[network] = cls(network.encoder)
        return cls._attached[network]


@dataclass(frozen=True)
class LossSettings:
    """What the training loss depends on: the model (--ModelName), --LossScaling, and the weights of the entropy
    term (--EntropyLossWeight, MemAE) and of the l1 term (--L1Weight, AE-l1)."""
    model_name: str
    scaling: str = 'released'
    entropy_weight: float = 0.0
    l1_weight: float = 0.0

    @classmethod
    def from_options(cls, opt):
        """From parsed options; the testing script's lack the training-only ones, which only training reads."""
        return cls(opt.ModelName, getattr(opt, 'LossScaling', 'released'), getattr(opt, 'EntropyLossWeight', 0.0),
                   getattr(opt, 'L1Weight', 0.0))

    @property
    def memory_model(self):
        return is_memory_model(self.model_name)

    @property
    def model_terms(self):
        """The LOSS_TERMS the model has (entropy: a memory; l1: AE-l1), which progress bars show; the others are
        reported as 0."""
        absent = {'entropy_loss': not self.memory_model, 'l1_loss': not has_latent_penalty(self.model_name)}
        return tuple(term for term in LOSS_TERMS if not absent.get(term, False))


def loss_terms(model, batch, losses):
    """(loss to minimise, reconstruction, the LOSS_TERMS as one detached float tensor of 4) for one batch under
    :class:`LossSettings` ``losses``; tensors only, so that it also runs under ``torch.vmap`` (utils/lockstep.py
    trains many units with this very function). ``model`` may be wrapped (DistributedDataParallel, torch.compile).

    MemAE: reconstruction + entropy_weight x entropy of the addressing; AE-l1: reconstruction + l1_weight x
    l1 norm of the encoding; AE: the reconstruction alone. ``losses.scaling`` chooses between the released and
    the paper's scaling of every term (models/losses.py). Terms a model does not have are reported as 0.
    """
    zero = torch.zeros((), device=batch.device)
    ent_loss = l1_loss = zero
    penalised = has_latent_penalty(losses.model_name)
    encodings = EncodingRecorder.of(base_network(model)) if penalised else None
    output = model(batch)
    recon = output['output'] if losses.memory_model else output
    if losses.memory_model:
        ent_loss = entropy_loss(output['att'], losses.scaling)
    if encodings is not None:
        l1_loss = latent_l1_loss(encodings.latest, losses.scaling)
    recon_loss = reconstruction_loss(recon, batch, losses.scaling)
    loss = recon_loss
    if losses.memory_model:
        loss = loss + losses.entropy_weight * ent_loss
    if penalised:
        loss = loss + losses.l1_weight * l1_loss
    terms = torch.stack([t.detach().float().reshape(()) for t in (loss, recon_loss, ent_loss, l1_loss)])
    return loss, recon, terms


def compute_losses(model, batch, losses):
    """:func:`loss_terms` with the terms as a dict {term of LOSS_TERMS: float}."""
    loss, recon, terms = loss_terms(model, batch, losses)
    # one read of the four numbers instead of four (each a synchronisation on a GPU)
    return loss, recon, dict(zip(LOSS_TERMS, terms.tolist()))


def non_finite_message(values):
    """The sentence for a non-finite loss, from the {term: value} dict of :func:`compute_losses`."""
    return (f"the loss is {values['loss']} (reconstruction {values['recon_loss']}, entropy {values['entropy_loss']}); "
            f"try a lower --LR")


def reads_losses_late(device):
    """A GPU runs ahead of Python only while nothing waits for its results, so on CUDA the loss terms stay on the
    device until a value is printed or a file written (:func:`training_step_ahead`); a CPU reads them at once
    (:func:`training_step`), which costs nothing there."""
    return device.type == 'cuda'


def make_optimizer(model, lr, ahead):
    """Adam (as released) over ``model``'s parameters; for steps that run ``ahead`` of their loss reads
    (:func:`training_step_ahead`), the fused implementation, whose ``found_inf`` skips an update on the device."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True if ahead else None)


def _update(loss, optimizer):
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def training_step(model, batch, optimizer, losses, amp='none'):
    """Forward (in bfloat16 autocast for ``amp='bf16'``), backward and an optimizer step; returns the
    reconstruction and the loss values. A non-finite loss raises :class:`NonFiniteLossError` before anything is
    updated."""
    with autocast(batch.device, amp):
        loss, recon, values = compute_losses(model, batch, losses)
    if not math.isfinite(values['loss']):
        raise NonFiniteLossError(non_finite_message(values))
    _update(loss, optimizer)
    return recon, values


def training_step_ahead(model, batch, optimizer, losses, amp='none'):
    """:func:`training_step` without waiting for the device: returns the reconstruction and the LOSS_TERMS as one
    tensor on the device, to be read later (a GPU queues the next steps meanwhile). A non-finite loss cannot stop
    the step before its update here, so the update is skipped on the device instead: ``optimizer`` is fused Adam
    (:func:`make_optimizer`), whose ``found_inf`` leaves the weights, moments and step count as they were. The
    reader of the terms finds the non-finite loss and stops the run."""
    with autocast(batch.device, amp):
        loss, recon, terms = loss_terms(model, batch, losses)
    optimizer.found_inf = (~torch.isfinite(terms[0])).float()
    _update(loss, optimizer)
    return recon, terms
