"""Evaluate saved clip scores against the ground truth, without the model (the released ``script_eval_video.py``).

    python script_eval_video.py --ModelName MemAE --ModelSetting Conv3DSpar --Dataset UCSD_P2_256 \
        --MemDim 2000 --EntropyLossWeight 0.0002 --ShrinkThres 0.0025 --Seed 1 \
        --DataRoot ./dataset/ --OutRoot ./results/ --Suffix Non

It takes the flags of ``script_testing.py`` (those that make up the run name say which ``res_<setting>`` folder
to read), reads ``<OutRoot>/res_<setting>/<Video>.npy`` and the ground truth of ``<DataRoot>/<Dataset>``, rewrites
``acc.txt`` there and prints ``AUC: <value>``: the released protocol, the same number ``script_testing.py``
printed for those scores. ``--Plots True`` draws the regularity curves and the ROC (``plots/``). From Python, as
released: ``import utils; auc = utils.eval_video(data_path, res_path, is_show=False)``.
"""
import sys
from pathlib import Path

from data.readers import DataFormatError
from options import TestOptions
from utils.errors import run_cli
from utils.saved_scores import eval_video


def main(argv=None):
    options = TestOptions()  # the flags of script_testing.py, which name the res_<setting> folder
    options.parser.description = __doc__.split('\n')[0]
    opt = options.parse(argv)
    res_path = Path(opt.OutRoot) / f'res_{opt.setting}'
    if not res_path.is_dir():
        raise DataFormatError(f'no saved scores in {res_path}: run script_testing.py with the same flags first')
    eval_video(Path(opt.DataRoot) / opt.Dataset, res_path, is_show=opt.Plots, clip_len=opt.FrameNum)
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main))
