"""MemAE for video: the 3-D autoencoder of :mod:`models.ae_3dconv` with a memory between encoder and decoder."""
from torch import nn

from models.ae_3dconv import ENCODER_CHANNELS, build_decoder, build_encoder, check_clip_shape
from models.memory_module import MemModule


class AutoEncoderCov3DMem(nn.Module):
    """encoder -> memory (``mem_rep``, N slots of 256 features) -> decoder.

    ``forward`` returns ``{'output': reconstruction, 'att': addressing weights}``; ``att`` is
    B x mem_dim x T/8 x H/16 x W/16. ``addressing`` is ours ('dot' as released, 'cosine' as in the paper), and so is
    ``temperature`` (of the addressing soft-max; 1 as released).
    """

    def __init__(self, chnum_in, mem_dim, shrink_thres=0.0025, addressing='dot', temperature=1.0):
        super().__init__()
        self.chnum_in = chnum_in
        self.encoder = build_encoder(chnum_in)
        self.mem_rep = MemModule(mem_dim=mem_dim, fea_dim=ENCODER_CHANNELS[-1], shrink_thres=shrink_thres,
                                 addressing=addressing, temperature=temperature)
        self.decoder = build_decoder(chnum_in)

    def forward(self, x):
        check_clip_shape(x)
        memory_result = self.mem_rep(self.encoder(x))
        return {'output': self.decoder(memory_result['output']), 'att': memory_result['att']}
