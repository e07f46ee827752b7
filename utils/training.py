"""One optimisation step of MemAE or AE training, shared by the video script and the one-class experiments."""
import weakref

import torch

from models import has_latent_penalty
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


def compute_losses(model, batch, opt, memory_model):
    """(loss to minimise, reconstruction, {term of LOSS_TERMS: float}) for one batch. ``model`` may be wrapped
    (DistributedDataParallel, torch.compile).

    MemAE: reconstruction + EntropyLossWeight x entropy of the addressing; AE-l1: reconstruction + L1Weight x
    l1 norm of the encoding; AE: the reconstruction alone. ``opt.LossScaling`` chooses between the released and
    the paper's scaling of every term (models/losses.py). Terms a model does not have are reported as 0.
    """
    zero = torch.zeros(())
    ent_loss = l1_loss = zero
    encodings = EncodingRecorder.of(base_network(model)) if has_latent_penalty(opt.ModelName) else None
    output = model(batch)
    recon = output['output'] if memory_model else output
    if memory_model:
        ent_loss = entropy_loss(output['att'], opt.LossScaling)
    if encodings is not None:
        l1_loss = latent_l1_loss(encodings.latest, opt.LossScaling)
    recon_loss = reconstruction_loss(recon, batch, opt.LossScaling)
    loss = recon_loss
    if memory_model:
        loss = loss + opt.EntropyLossWeight * ent_loss
    if has_latent_penalty(opt.ModelName):
        loss = loss + opt.L1Weight * l1_loss
    values = dict(zip(LOSS_TERMS, (loss.item(), recon_loss.item(), ent_loss.item(), l1_loss.item())))
    return loss, recon, values


def training_step(model, batch, optimizer, opt, memory_model, amp='none'):
    """Forward (in bfloat16 autocast for ``amp='bf16'``), backward and an optimizer step; returns the
    reconstruction and the loss values. A non-finite loss raises :class:`NonFiniteLossError` before anything is
    updated."""
    with autocast(batch.device, amp):
        loss, recon, values = compute_losses(model, batch, opt, memory_model)
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"the loss is {values['loss']} (reconstruction {values['recon_loss']}, entropy "
                                 f"{values['entropy_loss']}); try a lower --LR")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return recon, values
