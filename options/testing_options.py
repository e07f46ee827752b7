"""Options of ``script_testing.py``."""
from options.base_options import BaseOptions, optional_path


class TestOptions(BaseOptions):
    mode = 'eval'
    description = ('Score every test clip of a prepared video data set and compute the frame-level AUC, or evaluate '
                   'the trained models of an image or KDDCUP99 experiment.')
    batch_size = 1

    def add_arguments(self, parser):
        parser.add_argument('--ModelFilePath', help='weights to load (image and KDD experiments: the folder of the '
                            "units' weights); default: <ModelRoot>/<setting>.pt and the released file names",
                            type=optional_path, default=None)
