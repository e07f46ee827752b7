"""Models of the MemAE reproduction and the registry that maps ``--ModelName`` to them."""
from torch import nn

from utils.errors import InputError

from models.ae_3dconv import AutoEncoderCov3D
from models.entropy_loss import EntropyLoss, EntropyLossEncap
from models.image_ae import IMAGE_ARCHITECTURES, IMAGE_RANGES, QUERY_CHOICES, ImageAutoEncoder, ImageMemAE
from models.memae_3dconv import AutoEncoderCov3DMem
from models.memory_module import ADDRESSING_CHOICES, MemModule, MemoryUnit, hard_shrink_relu
from models.mlp_ae import MLPAutoEncoder, MLPMemAE

# --ModelName -> data family (data/registry.py) -> model class. The video classes are the released ones.
MODELS = {
    'AE': {'video': AutoEncoderCov3D, 'image': ImageAutoEncoder, 'tabular': MLPAutoEncoder},
    'MemAE': {'video': AutoEncoderCov3DMem, 'image': ImageMemAE, 'tabular': MLPMemAE},
}
# AE-l1 (the paper's ablation): the AE's network and weights, trained with an l1 penalty on its encoding
# (--L1Weight; see utils/training.py). It differs from the AE only in training.
MODELS['AEL1'] = MODELS['AE']


def is_memory_model(model_name):
    return model_name == 'MemAE'


def has_latent_penalty(model_name):
    """Whether training adds the l1 penalty on the encoding (AE-l1)."""
    return model_name == 'AEL1'


def build_model(opt, family='video', arch=None, input_dim=None, shrink_thres=None):
    """The model that ``opt.ModelName`` names for a data family, sized by the options (and, for images, the
    architecture; for records, their width); ``shrink_thres`` replaces --ShrinkThres (a unit's choice from
    --ShrinkThresGrid)."""
    if opt.ModelName not in MODELS:
        raise InputError(f"unknown --ModelName {opt.ModelName!r}; valid: {', '.join(MODELS)}")
    model_class = MODELS[opt.ModelName][family]
    memory = is_memory_model(opt.ModelName)
    memory_args = {'shrink_thres': opt.ShrinkThres if shrink_thres is None else shrink_thres,
                   'addressing': opt.MemAddressing, 'temperature': opt.MemTemperature}
    if family == 'video':
        return model_class(opt.ImgChnNum, opt.MemDim, **memory_args) if memory else model_class(opt.ImgChnNum)
    if family == 'image':
        layers = {'first_kernel': opt.ImageFirstKernel or None, 'code_channels': opt.ImageCodeChannels or None,
                  'image_range': opt.ImageRange}
        return model_class(opt.MemDim, arch=arch, query=opt.MemQuery, **memory_args, **layers) if memory \
            else model_class(arch, **layers)
    return model_class(input_dim, opt.MemDim, **memory_args) if memory else model_class(input_dim)


def weights_init(module):
    """The released training initialisation, for ``model.apply``: conv weights ~ N(0, 0.02), BatchNorm weights
    ~ N(1, 0.02) and biases 0. Conv biases keep PyTorch's default and the memory its own uniform init."""
    if isinstance(module, nn.modules.conv._ConvNd):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


__all__ = ['ADDRESSING_CHOICES', 'AutoEncoderCov3D', 'AutoEncoderCov3DMem', 'EntropyLoss', 'EntropyLossEncap',
           'IMAGE_ARCHITECTURES', 'IMAGE_RANGES', 'ImageAutoEncoder', 'ImageMemAE', 'MLPAutoEncoder', 'MLPMemAE',
           'MODELS', 'MemModule', 'MemoryUnit', 'QUERY_CHOICES', 'build_model', 'hard_shrink_relu',
           'has_latent_penalty', 'is_memory_model', 'weights_init']
