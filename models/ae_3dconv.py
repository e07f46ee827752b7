"""The video autoencoders of the released MemAE code: 3-D convolutions over 16-frame grayscale clips.

Both share one encoder/decoder; the layer order (and so the ``state_dict`` keys ``encoder.{0,1,3,4,6,7,9,10}``
and ``decoder.{0,1,3,4,6,7,9}``) is a public interface: the authors' released weights load into it strictly.

Shapes for a C x 16 x 256 x 256 clip: the encoder maps it to 256 x 2 x 16 x 16 (time / 8, space / 16), the
decoder maps that back. Clip length must therefore be a multiple of 8 and frame height and width of 16.
"""
from torch import nn

from utils.errors import InputError

ENCODER_CHANNELS = (96, 128, 256, 256)
TIME_FACTOR = 8
SPACE_FACTOR = 16


# The first encoder layer (and the last decoder layer) keep the time resolution and halve the frame size.
SPATIAL_ONLY_STRIDE = (1, 2, 2)
SPATIAL_ONLY_OUTPUT_PADDING = (0, 1, 1)


def build_encoder(chnum_in):
    """Conv3d k3 p1 + BatchNorm3d + LeakyReLU(0.2), four times; the first keeps the time resolution."""
    layers = []
    channels_in = chnum_in
    for i, channels_out in enumerate(ENCODER_CHANNELS):
        stride = SPATIAL_ONLY_STRIDE if i == 0 else 2
        layers += [nn.Conv3d(channels_in, channels_out, 3, stride=stride, padding=1),
                   nn.BatchNorm3d(channels_out),
                   nn.LeakyReLU(0.2, inplace=True)]
        channels_in = channels_out
    return nn.Sequential(*layers)


def build_decoder(chnum_out):
    """The encoder's mirror with ConvTranspose3d; no normalisation or activation after the last layer."""
    mirrored = ENCODER_CHANNELS[::-1]  # 256, 256, 128, 96
    layers = []
    for channels_in, channels_out in zip(mirrored[:-1], mirrored[1:]):
        layers += [nn.ConvTranspose3d(channels_in, channels_out, 3, stride=2, padding=1, output_padding=1),
                   nn.BatchNorm3d(channels_out),
                   nn.LeakyReLU(0.2, inplace=True)]
    layers.append(nn.ConvTranspose3d(mirrored[-1], chnum_out, 3, stride=SPATIAL_ONLY_STRIDE, padding=1,
                                     output_padding=SPATIAL_ONLY_OUTPUT_PADDING))
    return nn.Sequential(*layers)


def check_clip_shape(clips):
    """Fail early, in one sentence, on clips the 3-D autoencoder cannot map back to their own size."""
    if clips.dim() != 5:
        raise InputError(f'the video autoencoder takes B x C x T x H x W clips, got shape {tuple(clips.shape)}')
    _, _, frames, height, width = clips.shape
    if frames % TIME_FACTOR or height % SPACE_FACTOR or width % SPACE_FACTOR:
        raise InputError(f'clips of {frames} frames of {height}x{width} pixels do not fit the video autoencoder: '
                         f'the clip length (--FrameNum) must be a multiple of {TIME_FACTOR} and frame height and '
                         f'width multiples of {SPACE_FACTOR}')


class AutoEncoderCov3D(nn.Module):
    """The AE baseline: encoder -> decoder; ``forward`` returns the reconstruction tensor, as released."""

    def __init__(self, chnum_in):
        super().__init__()
        self.chnum_in = chnum_in
        self.encoder = build_encoder(chnum_in)
        self.decoder = build_decoder(chnum_in)

    def forward(self, x):
        check_clip_shape(x)
        return self.decoder(self.encoder(x))
