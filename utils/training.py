"""One optimisation step of MemAE or AE training, shared by the video script and the one-class experiments."""
import torch

from models.losses import entropy_loss, reconstruction_loss


def compute_losses(model, batch, opt, memory_model):
    """(loss to minimise, reconstruction, {loss term: float}) for one batch.

    loss = reconstruction + EntropyLossWeight x entropy for a memory model, the reconstruction alone for an AE;
    ``opt.LossScaling`` chooses between the released and the paper's scaling of both terms.
    """
    output = model(batch)
    recon = output['output'] if memory_model else output
    recon_loss = reconstruction_loss(recon, batch, opt.LossScaling)
    ent_loss = entropy_loss(output['att'], opt.LossScaling) if memory_model else torch.zeros(())
    loss = recon_loss + opt.EntropyLossWeight * ent_loss if memory_model else recon_loss
    return loss, recon, {'loss': loss.item(), 'recon_loss': recon_loss.item(), 'entropy_loss': ent_loss.item()}


def training_step(model, batch, optimizer, opt, memory_model):
    """Forward, backward and an optimizer step; returns the reconstruction and the loss values."""
    loss, recon, values = compute_losses(model, batch, opt, memory_model)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return recon, values
