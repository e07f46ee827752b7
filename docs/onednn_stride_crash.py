"""Minimal reproducer of the heap corruption that made the image experiments run without oneDNN until 2026-11-29.

    timeout 60 python docs/onednn_stride_crash.py           # torch 2.14.1, x86-64 CPU: aborts ("corrupted
                          # double-linked list", "corrupted size vs. prev_size"), segfaults, or hangs (exit 124)
    timeout 60 python docs/onednn_stride_crash.py standard  # the same on standard strides: finishes in seconds

The trigger is a valid, contiguous input whose size-1 channel axis has stride 1 instead of H x W. NumPy produces
exactly that for MNIST (``images[:, None][mask]``: the boolean index gives the new axis stride 1) and
``torch.from_numpy`` keeps it. With one channel the tensor is then both contiguous and channels-last, PyTorch
hands it to oneDNN as channels-last, and the backward pass of a 1 x 1 convolution of stride 2 (the MNIST model's
first layer, Conv2(1, 2, 16) of the paper) writes outside its buffers. 3 x 3 kernels or stride 1 do not crash;
one thread (OMP_NUM_THREADS=1) crashes as two do, so it is no race. A library bug, not ours; our side of the fix
(utils/one_class.py, ``as_tensor``) gives every tensor the models see freshly allocated standard strides.
"""
import sys

import torch
from torch import nn

torch.manual_seed(0)
convolution = nn.Conv2d(1, 16, kernel_size=1, stride=2)
images = torch.rand(64, 1, 28, 28)
if sys.argv[1:] != ['standard']:
    images = images.as_strided(images.shape, (28 * 28, 1, 28, 1))  # what NumPy gives MNIST's channel axis
for step in range(2000):
    convolution(images).square().sum().backward()
print('finished without a crash; input strides', images.stride())
