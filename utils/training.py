"""One optimisation step of MemAE or AE training, shared by the video script and the one-class experiments."""
import torch

from models import has_latent_penalty
from utils.errors import InputError
from models.losses import entropy_loss, latent_l1_loss, reconstruction_loss

LOSS_TERMS = ('loss', 'recon_loss', 'entropy_loss', 'l1_loss')


class NonFiniteLossError(InputError):
    """The loss became NaN or infinite (usually a learning rate too large for the data)."""


def compute_losses(model, batch, opt, memory_model):
    """(loss to minimise, reconstruction, {term of LOSS_TERMS: float}) for one batch.

    MemAE: reconstruction + EntropyLossWeight x entropy of the addressing; AE-l1: reconstruction + L1Weight x
    l1 norm of the encoding; AE: the reconstruction alone. ``opt.LossScaling`` chooses between the released and
    the paper's scaling of every term (models/losses.py). Terms a model does not have are reported as 0.
    """
    zero = torch.zeros(())
    ent_loss = l1_loss = zero
    if has_latent_penalty(opt.ModelName):
        # the AE's forward would hide the encoding, which the penalty needs
        latent = model.encoder(batch)
        recon = model.decoder(latent)
        l1_loss = latent_l1_loss(latent, opt.LossScaling)
    else:
        output = model(batch)
        recon = output['output'] if memory_model else output
        if memory_model:
            ent_loss = entropy_loss(output['att'], opt.LossScaling)
    recon_loss = reconstruction_loss(recon, batch, opt.LossScaling)
    loss = recon_loss
    if memory_model:
        loss = loss + opt.EntropyLossWeight * ent_loss
    if has_latent_penalty(opt.ModelName):
        loss = loss + opt.L1Weight * l1_loss
    values = dict(zip(LOSS_TERMS, (loss.item(), recon_loss.item(), ent_loss.item(), l1_loss.item())))
    return loss, recon, values


def training_step(model, batch, optimizer, opt, memory_model):
    """Forward, backward and an optimizer step; returns the reconstruction and the loss values. A non-finite
    loss raises :class:`NonFiniteLossError` before anything is updated."""
    loss, recon, values = compute_losses(model, batch, opt, memory_model)
    if not torch.isfinite(loss):
        raise NonFiniteLossError(f"the loss is {values['loss']} (reconstruction {values['recon_loss']}, entropy "
                                 f"{values['entropy_loss']}); try a lower --LR")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return recon, values
