from options.base_options import BaseOptions, model_setting, str2bool
from options.testing_options import TestOptions
from options.training_options import TrainOptions

__all__ = ['BaseOptions', 'TestOptions', 'TrainOptions', 'model_setting', 'str2bool']
