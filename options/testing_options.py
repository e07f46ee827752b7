"""Options of ``script_testing.py``."""
from options.base_options import BaseOptions, optional_path


class TestOptions(BaseOptions):
    mode = 'eval'
    description = 'Score every test clip of a prepared data set and compute the frame-level AUC.'
    batch_size = 1

    def add_arguments(self, parser):
        parser.add_argument('--ModelFilePath', help='weights to load; default: <ModelRoot>/<setting>.pt and the '
                            'released file names', type=optional_path, default=None)
