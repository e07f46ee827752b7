"""Helpers of the scripts. ``import utils`` also gives the names the authors' scripts called on the package
(``utils.eval_video``, ``utils.get_model_setting``, ...), imported on first use so that importing a small helper
such as ``utils.errors`` does not load the models, the data code or scikit-learn."""
import importlib

# released name -> (module, name there)
RELEASED_NAMES = {
    'eval_video': ('utils.saved_scores', 'eval_video'),
    'get_model_setting': ('options.base_options', 'model_setting'),
    'seed': ('utils.runtime', 'seed_everything'),
    'weights_init': ('models', 'weights_init'),
    **{name: ('utils.released_names', name) for name in (
        'mkdir', 'get_subdir_list', 'get_file_list', 'crop_image', 'tensor2numpy', 'UnNormalize', 'vframes2imgs',
        'btv2btf')},
}


def __getattr__(name):
    if name not in RELEASED_NAMES:
        raise AttributeError(f"module 'utils' has no attribute {name!r}")
    module, attribute = RELEASED_NAMES[name]
    return getattr(importlib.import_module(module), attribute)


def __dir__():
    return sorted(list(globals()) + list(RELEASED_NAMES))
