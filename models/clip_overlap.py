"""The video autoencoders of :mod:`models.ae_3dconv` evaluated on many overlapping clips at once, exactly.

Test clips start at every frame, so neighbouring clips share 15 of their 16 frames. In eval mode the encoder's
layers are convolutions, affine batch norms and pointwise activations: inside a clip, a layer's output at a
time position equals the output computed once over the whole window of frames, except where the clip's zero
temporal padding is within reach — the clip's first and last positions. :class:`ClipWindowModel` computes the
first ``SHARED_LAYERS`` encoder layers once per window of frames and recomputes only those edge positions; the
rest of the network runs per clip. The result equals ``model(clips)`` up to float rounding.

How one shared layer works (a Conv3d with kernel 3 in time, temporal padding 1 and temporal stride 1 or 2,
then the folded batch norm and the activation). At its input, clip ``s`` (0-based start in the window) has
``P`` time positions ``p``, at window times ``s + d p`` (``d``, the dilation, doubles with every stride 2);
positions 1 .. P-2 equal the *shared* activation at those times, positions 0 and P-1 are the clip's own *edges*
(at the input frames, before any layer, there is no difference). With ``W_k`` the conv weight of temporal tap
``k`` (0, 1, 2), ``T_k[t] = W_k * shared[t]`` is computed once at every window time ``t``:

* shared output ``shared'[t] = b + T_0[t - d] + T_1[t] + T_2[t + d]``;
* the clip's first output (its inputs: zero padding, position 0, position 1):
  ``b + W_1 * left[s] + T_2[s + d]``;
* its last output, stride 1 (positions P-2, P-1, padding): ``b + T_0[s + d (P-2)] + W_1 * right[s]``;
  stride 2 (positions P-3, P-2, P-1): ``b + T_0[s + d (P-3)] + T_1[s + d (P-2)] + W_2 * right[s]``;

where ``W_k * edge`` is a 2-D convolution of the edge frame (``T_k`` when the edge is a plain input frame). The
outputs in between only read shared positions, so they are the shared output at their times, and the new edges
are again the first and last outputs. A window of ``K`` clips spans ``F = K + 15`` frames: the taps cost one
position per frame, the edges two thirds of a position per clip, against 8 positions per clip for the second
layer and 4 for the third (``python -m utils.benchmark test`` prints the FLOPs of both paths).

Batch norm is folded into the convolution before it (eval mode: a per-channel affine map), so the window model
holds its own copies of the weights; the trained model, its ``state_dict`` and its memory module (called as a
module, so forward hooks such as :class:`utils.memory_usage.SlotUsage` see every query) are untouched.
"""
import torch
import torch.nn.functional as F
from torch import nn

from models.ae_3dconv import SPATIAL_ONLY_STRIDE, check_clip_shape

SHARED_LAYERS = 3  # the fourth encoder layer has no interior output (2 positions, both edges): nothing to share


class FoldedLayer(nn.Module):
    """A Conv3d or ConvTranspose3d with the eval-mode BatchNorm3d after it folded into its weight and bias, and
    the LeakyReLU slope after them (None: no activation)."""

    def __init__(self, conv, norm=None, slope=None):
        super().__init__()
        weight, bias = conv.weight.detach(), conv.bias.detach()
        self.transposed = isinstance(conv, nn.ConvTranspose3d)
        if norm is not None:
            scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
            # the output channel is dim 0 of a Conv3d weight and dim 1 of a ConvTranspose3d weight
            weight = weight * scale.view(1, -1, 1, 1, 1) if self.transposed else weight * scale.view(-1, 1, 1, 1, 1)
            bias = (bias - norm.running_mean) * scale + norm.bias.detach()
        self.register_buffer('weight', weight.contiguous())
        self.register_buffer('bias', bias.contiguous())
        self.stride, self.padding, self.output_padding = conv.stride, conv.padding, conv.output_padding
        self.slope = slope

    def activate(self, x):
        return x if self.slope is None else F.leaky_relu_(x, self.slope)

    def forward(self, x):
        if self.transposed and self.weight.shape[1] <= 3 and self.stride == SPATIAL_ONLY_STRIDE:
            x = image_layer_by_matmul(x, self.weight, self.bias)
        elif self.transposed:
            x = F.conv_transpose3d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)
        else:
            x = F.conv3d(x, self.weight, self.bias, self.stride, self.padding)
        return self.activate(x)


def image_layer_by_matmul(x, weight, bias):
    """The decoder's last layer (ConvTranspose3d to the 1 or 3 image channels: kernel 3, stride (1, 2, 2), padding
    1, output padding (0, 1, 1)) as one matrix product and 27 shifted additions. oneDNN runs it at a few GFLOP/s
    on this CPU (so few output channels); here every input position's contribution to its 3 x 3 x 3 output
    neighbourhood comes from one product, then each kernel tap's plane is added where it lands: output time
    t + kt - 1, output row 2 i + kh - 1 = 2 (i + kh // 2) + kh % 2 - 1 (and the same for columns)."""
    batch, channels, frames, height, width = x.shape
    out_channels = weight.shape[1]
    rows = x.permute(0, 2, 3, 4, 1).reshape(-1, channels)  # positions x Cin (free in channels_last_3d)
    planes = (weight.permute(1, 2, 3, 4, 0).reshape(-1, channels) @ rows.t())
    planes = planes.view(out_channels, 3, 3, 3, batch, frames, height, width)
    # padded output: time t + 1, rows as (pair, phase) so that every tap's plane is one strided block
    out = x.new_zeros(batch, out_channels, frames + 2, height + 1, 2, width + 1, 2)
    for kt in range(3):
        for kh in range(3):
            for kw in range(3):
                out[:, :, kt:kt + frames, kh // 2:kh // 2 + height, kh % 2, kw // 2:kw // 2 + width, kw % 2] += \
                    planes[:, kt, kh, kw].transpose(0, 1)
    out = out.view(batch, out_channels, frames + 2, 2 * height + 2, 2 * width + 2)
    return out[:, :, 1:frames + 1, 1:2 * height + 1, 1:2 * width + 1] + bias.view(1, -1, 1, 1, 1)


def fold_sequential(layers):
    """A released encoder or decoder as :class:`FoldedLayer`\\ s: each convolution with the batch norm and the
    LeakyReLU that follow it (the decoder's last convolution has neither)."""
    starts = [i for i, layer in enumerate(layers) if isinstance(layer, (nn.Conv3d, nn.ConvTranspose3d))]
    folded = []
    for start, end in zip(starts, [*starts[1:], len(layers)]):
        conv, *after = layers[start:end]
        norm = next((m for m in after if isinstance(m, nn.BatchNorm3d)), None)
        slope = next((m.negative_slope for m in after if isinstance(m, nn.LeakyReLU)), None)
        folded.append(FoldedLayer(conv, norm, slope))
    return folded


class WindowActivations:
    """One level of the shared computation: ``shared`` (F x C x H x W: the window's F times as a batch of 2-D
    maps), the clips' ``left`` and ``right`` edges (K x C x H x W; None at the input frames, which have no edges),
    the number of positions ``P`` a clip has at this level and their spacing ``d`` in window time."""

    def __init__(self, shared, left, right, positions, dilation):
        self.shared, self.left, self.right = shared, left, right
        self.positions, self.dilation = positions, dilation


def shared_layer(layer, level, clips):
    """Apply one folded encoder layer to a :class:`WindowActivations` level (the module docstring's formulas).
    Every temporal tap is a 2-D convolution of the 2-D maps; tap 1 carries the bias."""
    time_stride, spatial_stride, spatial_padding = layer.stride[0], layer.stride[1:], layer.padding[1:]
    if time_stride == 1 and level.left is not None:
        raise ValueError('a temporal stride of 1 after the first shared layer would read the clip edges twice')
    d, positions = level.dilation, level.positions

    def tap_conv(x, k):  # W_k * x (+ b for the centre tap)
        return F.conv2d(x, layer.weight[:, :, k], layer.bias if k == 1 else None, spatial_stride, spatial_padding)

    tap = (single_channel_taps(layer, level.shared) if level.shared.shape[1] == 1
           else [tap_conv(level.shared, k) for k in range(3)])  # T_k: F x Cout x H' x W'

    def at(k, offset):  # T_k[s + offset] for every clip start s
        return tap[k][offset:offset + clips]

    left = (at(1, 0) if level.left is None else tap_conv(level.left, 1)) + at(2, d)
    if time_stride == 1:  # only at the input frames (checked above): the last position is a plain frame
        right = at(0, d * (positions - 2)) + at(1, d * (positions - 1))
    else:
        right = at(0, d * (positions - 3)) + at(1, d * (positions - 2)) + tap_conv(level.right, 2)
    # shared'[t] = T_0[t - d] + T_1[t] + T_2[t + d], summed into T_1 after the edges have read it; the d times at
    # each end of the window get partial sums, which no clip reads
    shared = tap[1]
    shared[d:] += tap[0][:-d]
    shared[:-d] += tap[2][d:]
    return WindowActivations(layer.activate(shared), layer.activate(left), layer.activate(right),
                             positions // time_stride, d * time_stride)


def single_channel_taps(layer, frames):
    """The three taps of a layer over one-channel frames as matrix products of the frames' 3 x 3 patches: a
    convolution with one input channel runs at a few GFLOP/s in oneDNN on this CPU, the products several times
    faster (same values)."""
    count, _, height, width = frames.shape
    stride, padding = layer.stride[1:], layer.padding[1:]
    patches = F.unfold(frames, 3, padding=padding, stride=stride).transpose(1, 2)  # F x H'W' x 9
    out_height, out_width = -(-height // stride[0]), -(-width // stride[1])  # kernel 3, padding 1
    taps = []
    for k in range(3):
        weight = layer.weight[:, 0, k].reshape(len(layer.weight), 9)
        tap = patches @ weight.t() if k != 1 else torch.addmm(layer.bias, patches.flatten(0, 1), weight.t())
        taps.append(tap.view(count, out_height, out_width, -1).permute(0, 3, 1, 2))  # F x Cout x H' x W' (NHWC)
    return taps


def clips_of(level, clips):
    """Every clip's activations at one level, K x C x P x H x W: edges at both ends, shared values in between."""
    starts = torch.arange(clips, device=level.shared.device)
    middle = [level.shared[starts + level.dilation * p] for p in range(1, level.positions - 1)]
    return torch.stack([level.left, *middle, level.right], dim=2)


class ClipWindowModel(nn.Module):
    """An eval-mode copy of a video AE or MemAE that takes a window of frames and returns what the model returns
    for every clip of ``clip_len`` consecutive frames in it (clip ``s`` = frames ``s .. s + clip_len - 1``)."""

    def __init__(self, model):
        super().__init__()
        if model.training:
            raise ValueError('ClipWindowModel folds batch norm statistics: put the model in eval mode first')
        self.encoder = nn.ModuleList(fold_sequential(model.encoder))
        self.decoder = nn.ModuleList(fold_sequential(model.decoder))
        self.memory = getattr(model, 'mem_rep', None)

    def forward(self, frames, clip_len, memory_format=torch.contiguous_format, batch_size=8):
        """``frames``: F x C x H x W (F >= clip_len) -> the model's output for the F - clip_len + 1 clips.
        The layers after the shared ones run on ``batch_size`` clips at a time (memory: about 0.1 GB per 16 x 256
        x 256 clip), in ``memory_format`` (``--ChannelsLast``)."""
        clips = frames.shape[0] - clip_len + 1
        check_clip_shape(frames[:clip_len].transpose(0, 1)[None])
        level = WindowActivations(frames.contiguous(memory_format=torch.channels_last), None, None, clip_len, 1)
        for layer in self.encoder[:SHARED_LAYERS]:
            level = shared_layer(layer, level, clips)
        encoded = clips_of(level, clips)
        return joined([self.per_clip_layers(encoded[start:start + batch_size].contiguous(memory_format=memory_format))
                       for start in range(0, clips, batch_size)])

    def per_clip_layers(self, x):
        """The layers after the shared ones, on a batch of clips; the model's output for them."""
        for layer in self.encoder[SHARED_LAYERS:]:
            x = layer(x)
        memory_result = self.memory(x) if self.memory is not None else None
        if memory_result is not None:
            x = memory_result['output']
        for layer in self.decoder:
            x = layer(x)
        return x if memory_result is None else {'output': x, 'att': memory_result['att']}


def joined(outputs):
    """The outputs of batches of clips as one: a tensor, or (MemAE) a dict of tensors, concatenated in order."""
    if isinstance(outputs[0], dict):
        return {key: torch.cat([output[key] for output in outputs]) for key in outputs[0]}
    return torch.cat(outputs)


class PerClipModel(nn.Module):
    """The window interface of :class:`ClipWindowModel` over the unchanged model: every clip of the window goes
    through the whole model, ``batch_size`` clips at a time (``--ClipWindow 0`` on a frame stream, ``--Video``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, frames, clip_len, memory_format=torch.contiguous_format, batch_size=8):
        clips = frames.unfold(0, clip_len, 1).permute(0, 1, 4, 2, 3)  # K x C x T x H x W
        return joined([self.model(clips[start:start + batch_size].contiguous(memory_format=memory_format))
                       for start in range(0, len(clips), batch_size)])
