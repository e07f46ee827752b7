"""The training objective (paper Eq. 10): reconstruction error plus alpha times the entropy of the addressing;
for the AE-l1 ablation, reconstruction error plus a weight times the l1 norm of the encoding instead.

Two scalings, which differ by constant factors per term (``--LossScaling``; its ``auto`` picks ``released``
for video and ``paper`` for images and KDDCUP99, options/base_options.py):

* ``released``: MSE averaged over every element of the batch, plus alpha times the entropy averaged over every
  query (every position of the latent feature map) of the batch;
* ``paper``: per sample (clip, image or record), the squared L2 error ||x - x^||^2 summed over its elements plus
  alpha times the entropy summed over its queries, averaged over the samples of the batch, as Eq. 10 reads. For
  a whole-encoding image or record memory (one query per sample) the entropy term is the same under both
  scalings and the reconstruction term 784 (MNIST), 3072 (CIFAR-10) or 118 (KDDCUP99) times larger. Relative
  to ``released`` the reconstruction term is multiplied by the elements per clip and the entropy term by the
  queries per clip (for 16 x 256 x 256 clips: 1,048,576 and 512), so the same alpha weighs the entropy 2048
  times less.

The l1 penalty follows the same two scalings: the mean of |z| over every element of the batch's encodings
(``released``), or ||z||_1 per sample averaged over the batch (``paper``).
"""
from torch.nn import functional as F

from models.entropy_loss import EntropyLossEncap

LOSS_SCALINGS = ('released', 'paper')


def reconstruction_loss(recon, clips, scaling):
    loss = F.mse_loss(recon, clips)
    return loss * clips[0].numel() if scaling == 'paper' else loss


def entropy_loss(att, scaling):
    loss = EntropyLossEncap()(att)
    return loss * att[0, 0].numel() if scaling == 'paper' else loss


def latent_l1_loss(latent, scaling):
    loss = latent.abs().mean()
    return loss * latent[0].numel() if scaling == 'paper' else loss
