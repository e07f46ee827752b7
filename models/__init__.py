"""Models of the MemAE reproduction and the registry that maps ``--ModelName`` to them."""
from torch import nn

from utils.errors import InputError

from models.ae_3dconv import AutoEncoderCov3D
from models.entropy_loss import EntropyLoss, EntropyLossEncap
from models.memae_3dconv import AutoEncoderCov3DMem
from models.memory_module import ADDRESSING_CHOICES, MemModule, MemoryUnit, hard_shrink_relu

# --ModelName -> model class. Names and classes are the released ones.
MODELS = {
    'AE': AutoEncoderCov3D,
    'MemAE': AutoEncoderCov3DMem,
}


def is_memory_model(model_name):
    return model_name == 'MemAE'


def build_model(opt):
    """The model that ``opt.ModelName`` names, with the sizes the options give."""
    if opt.ModelName not in MODELS:
        raise InputError(f"unknown --ModelName {opt.ModelName!r}; valid: {', '.join(MODELS)}")
    if is_memory_model(opt.ModelName):
        return MODELS[opt.ModelName](opt.ImgChnNum, opt.MemDim, shrink_thres=opt.ShrinkThres,
                                     addressing=opt.MemAddressing)
    return MODELS[opt.ModelName](opt.ImgChnNum)


def weights_init(module):
    """The released training initialisation, for ``model.apply``: conv weights ~ N(0, 0.02), BatchNorm weights
    ~ N(1, 0.02) and biases 0. Conv biases keep PyTorch's default and the memory its own uniform init."""
    if isinstance(module, nn.modules.conv._ConvNd):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


__all__ = ['ADDRESSING_CHOICES', 'AutoEncoderCov3D', 'AutoEncoderCov3DMem', 'EntropyLoss', 'EntropyLossEncap',
           'MODELS', 'MemModule', 'MemoryUnit', 'build_model', 'hard_shrink_relu', 'is_memory_model',
           'weights_init']
