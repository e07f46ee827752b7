"""Options of ``script_testing.py``."""
from options.base_options import BaseOptions
from utils.flags import optional_path, str2bool


class TestOptions(BaseOptions):
    mode = 'eval'
    description = ('Score every test clip of a prepared video data set and compute the frame-level AUC, or evaluate '
                   'the trained models of an image or KDDCUP99 experiment.')
    batch_size = 1

    def add_arguments(self, parser):
        parser.add_argument('--ModelFilePath', help='weights to load (image and KDD experiments: the folder of the '
                            "units' weights); default: <ModelRoot>/<setting>.pt and the released file names",
                            type=optional_path, default=None)
        parser.add_argument('--Plots', help='(added) video data sets: write figures under '
                            '<OutRoot>/res_<setting>/plots/ (regularity curves, ROC, error maps, memory usage; see '
                            'utils/plots.py)',
                            type=str2bool, default=False)
        parser.add_argument('--PreloadFrames', help='(added) video: decode each test video once into one uint8 tensor '
                            'on the device (GPU memory on CUDA) and cut the clips from it, instead of a DataLoader; '
                            'same scores', type=str2bool, default=False)
