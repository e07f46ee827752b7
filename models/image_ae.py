"""Image autoencoders of the paper's MNIST and CIFAR-10 experiments (Sec. 4.1), with and without memory.

Notation of the paper: Conv2(k, s, c) is a 2-D convolution with kernel k, stride s and c output channels,
Dconv2 its transposed counterpart; BatchNorm and ReLU follow every layer but the network's last.

* MNIST (1 x 28 x 28): Conv2(1,2,16)-Conv2(3,2,32)-Conv2(3,2,64) | Dconv2(3,2,64)-Dconv2(3,2,32)-Dconv2(3,2,1).
  Paddings chosen here to map 28 x 28 back to 28 x 28: encoder padding 0, 1, 1 (28 -> 14 -> 7 -> 4);
  decoder padding 1 with output padding 0, 1, 1 (4 -> 7 -> 14 -> 28). Latent 64 x 4 x 4.
* CIFAR-10 (3 x 32 x 32): Conv2(3,2,64)-Conv2(3,2,128)-Conv2(3,2,128)-Conv2(3,2,256) and its mirror
  Dconv2(3,2,128)-Dconv2(3,2,128)-Dconv2(3,2,64)-Dconv2(3,2,3), padding 1 and output padding 1 throughout
  (32 -> 16 -> 8 -> 4 -> 2 and back). Latent 256 x 2 x 2. This layer list comes from secondary descriptions of
  the paper's CIFAR-10 model, not from the paper itself.

Images are scaled to [0, 1] and the output layer has no activation (``image_range='unit'``), unless an option
chooses another reading (``IMAGE_RANGES``: [0, 1] with a sigmoid output, or [-1, 1] with a tanh output). Two more
options change the layer table where the secondary sources may have misread the paper: the first encoder layer's
kernel (``first_kernel``; MNIST's ``Conv2(1,2,16)`` reads as a 1 x 1 kernel that skips three pixels of four) and
the channels of the code, the last encoder layer (``code_channels``; MNIST's 64 x 4 x 4 = 1024 numbers exceed the
784 pixels). An odd kernel k gets padding k // 2, which keeps the output size of the kernel-1, padding-0 layer.

The memory (``mem_rep``) addresses either the
whole latent encoding as one query (``query='whole'``, the default: a slot is a complete encoding, so every slot
can be decoded into an image) or every latent position as one query (``query='position'``, as for video).
"""
import math
from dataclasses import dataclass, replace

from torch import nn

from models.memory_module import MemModule, MemoryUnit

QUERY_CHOICES = ('whole', 'position')
# --ImageRange: the value of a pixel's lowest intensity (the highest is 1) and the output layer's activation
IMAGE_RANGES = {'unit': (0.0, None), 'unit_sigmoid': (0.0, nn.Sigmoid), 'symmetric_tanh': (-1.0, nn.Tanh)}


@dataclass(frozen=True)
class ConvSpec:
    kernel: int
    stride: int
    channels: int
    padding: int
    output_padding: int = 0  # transposed convolutions only


IMAGE_ARCHITECTURES = {
    'mnist': {
        'in_shape': (1, 28, 28),
        'encoder': (ConvSpec(1, 2, 16, 0), ConvSpec(3, 2, 32, 1), ConvSpec(3, 2, 64, 1)),
        'decoder': (ConvSpec(3, 2, 64, 1, 0), ConvSpec(3, 2, 32, 1, 1), ConvSpec(3, 2, 1, 1, 1)),
    },
    'cifar10': {
        'in_shape': (3, 32, 32),
        'encoder': (ConvSpec(3, 2, 64, 1), ConvSpec(3, 2, 128, 1), ConvSpec(3, 2, 128, 1), ConvSpec(3, 2, 256, 1)),
        'decoder': (ConvSpec(3, 2, 128, 1, 1), ConvSpec(3, 2, 128, 1, 1), ConvSpec(3, 2, 64, 1, 1),
                    ConvSpec(3, 2, 3, 1, 1)),
    },
}


def _conv_stack(specs, channels_in, transposed, output_activation=None):
    """Conv (or ConvTranspose) layers, each followed by BatchNorm2d and ReLU; with an ``output_activation`` (a
    module class, or None for none) the last is followed by that alone."""
    layers = []
    for i, spec in enumerate(specs):
        if transposed:
            layers.append(nn.ConvTranspose2d(channels_in, spec.channels, spec.kernel, spec.stride, spec.padding,
                                             output_padding=spec.output_padding))
        else:
            layers.append(nn.Conv2d(channels_in, spec.channels, spec.kernel, spec.stride, spec.padding))
        if not (transposed and i == len(specs) - 1):
            layers += [nn.BatchNorm2d(spec.channels), nn.ReLU()]
        elif output_activation is not None:
            layers.append(output_activation())
        channels_in = spec.channels
    return nn.Sequential(*layers)


def layer_table(arch, first_kernel=None, code_channels=None):
    """The encoder and decoder :class:`ConvSpec` lists of architecture ``arch``, with the first encoder layer's kernel
    (odd; padding kernel // 2) and the code's channels replaced where given."""
    if arch not in IMAGE_ARCHITECTURES:
        raise ValueError(f"unknown image architecture {arch!r}; valid: {', '.join(IMAGE_ARCHITECTURES)}")
    encoder, decoder = list(IMAGE_ARCHITECTURES[arch]['encoder']), IMAGE_ARCHITECTURES[arch]['decoder']
    if first_kernel is not None:
        if first_kernel < 1 or first_kernel % 2 == 0:
            raise ValueError(f'the first kernel must be odd and positive, got {first_kernel}')
        encoder[0] = replace(encoder[0], kernel=first_kernel, padding=first_kernel // 2)
    if code_channels is not None:
        if code_channels < 1:
            raise ValueError(f'the code must have at least one channel, got {code_channels}')
        encoder[-1] = replace(encoder[-1], channels=code_channels)
    return tuple(encoder), decoder


def latent_shape(arch, first_kernel=None, code_channels=None):
    """C x H x W of the encoder's output for an architecture of :data:`IMAGE_ARCHITECTURES` (and the layer
    options of :func:`layer_table`)."""
    encoder, _ = layer_table(arch, first_kernel, code_channels)
    _, height, width = IMAGE_ARCHITECTURES[arch]['in_shape']
    for layer in encoder:
        height = (height + 2 * layer.padding - layer.kernel) // layer.stride + 1
        width = (width + 2 * layer.padding - layer.kernel) // layer.stride + 1
    return encoder[-1].channels, height, width


class ImageAutoEncoder(nn.Module):
    """The image AE baseline; ``forward`` returns the reconstruction tensor. ``first_kernel``, ``code_channels``
    (None: the architecture's) and ``image_range`` (a key of :data:`IMAGE_RANGES`) select other readings of the
    paper's layer table; the defaults are the reading of the module docstring."""

    def __init__(self, arch='mnist', first_kernel=None, code_channels=None, image_range='unit'):
        super().__init__()
        if image_range not in IMAGE_RANGES:
            raise ValueError(f"unknown image range {image_range!r}; valid: {', '.join(IMAGE_RANGES)}")
        encoder, decoder = layer_table(arch, first_kernel, code_channels)
        self.arch = arch
        self.encoder = _conv_stack(encoder, IMAGE_ARCHITECTURES[arch]['in_shape'][0], transposed=False)
        self.decoder = _conv_stack(decoder, encoder[-1].channels, transposed=True,
                                   output_activation=IMAGE_RANGES[image_range][1])

    def forward(self, x):
        return self.decoder(self.encoder(x))


class WholeEncodingMemory(nn.Module):
    """A memory whose queries and slots are whole (flattened) encodings: B x C x H x W -> one query per image.

    Returns the read-out reshaped back to B x C x H x W and the addressing weights B x N."""

    def __init__(self, mem_dim, encoding_shape, shrink_thres, addressing, temperature):
        super().__init__()
        self.encoding_shape = tuple(encoding_shape)
        self.memory = MemoryUnit(mem_dim, math.prod(encoding_shape), shrink_thres, addressing, temperature)

    def forward(self, features):
        result = self.memory(features.flatten(1))
        return {'output': result['output'].reshape(-1, *self.encoding_shape), 'att': result['att']}


class ImageMemAE(ImageAutoEncoder):
    """Image MemAE; ``forward`` returns ``{'output', 'att'}`` (att: B x N, or B x N x H' x W' per position)."""

    def __init__(self, mem_dim, shrink_thres=0.01, arch='mnist', addressing='dot', query='whole', temperature=1.0,
                 first_kernel=None, code_channels=None, image_range='unit'):
        super().__init__(arch, first_kernel, code_channels, image_range)
        if query not in QUERY_CHOICES:
            raise ValueError(f"unknown memory query {query!r}; valid: {', '.join(QUERY_CHOICES)}")
        encoding = latent_shape(arch, first_kernel, code_channels)
        if query == 'whole':
            self.mem_rep = WholeEncodingMemory(mem_dim, encoding, shrink_thres, addressing, temperature)
        else:
            self.mem_rep = MemModule(mem_dim, encoding[0], shrink_thres, addressing, temperature)

    def forward(self, x):
        memory_result = self.mem_rep(self.encoder(x))
        return {'output': self.decoder(memory_result['output']), 'att': memory_result['att']}

    def decode_slots(self):
        """Every memory slot decoded into an image (whole-encoding memory only): N x C x H x W."""
        if not isinstance(self.mem_rep, WholeEncodingMemory):
            raise ValueError('only a whole-encoding memory (--MemQuery whole) has slots that decode into images')
        slots = self.mem_rep.memory.weight.reshape(-1, *self.mem_rep.encoding_shape)
        return self.decoder(slots)
