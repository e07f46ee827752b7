"""Options of ``script_testing.py``."""
from options.base_options import BaseOptions, optional_path
from utils.scoring import SCORE_TYPES


class TestOptions(BaseOptions):
    mode = 'eval'
    description = 'Score every test clip of a prepared data set and compute the frame-level AUC.'
    batch_size = 1

    def add_arguments(self, parser):
        parser.add_argument('--ModelFilePath', help='weights to load; default: <ModelRoot>/<setting>.pt and the '
                            'released file names', type=optional_path, default=None)
        parser.add_argument('--OutRoot', help='results go to <OutRoot>/res_<setting>/', type=str,
                            default='./results/')
        parser.add_argument('--ScoreType', help='(added) per-clip score: "released" = what the released code '
                            'computes for --ModelName (MemAE: mean per-pixel L2 error on [-1, 1] frames; AE: MSE on '
                            '[0, 1] frames), or one of those two for any model', choices=SCORE_TYPES,
                            default='released')
