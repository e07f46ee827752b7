"""Options of ``script_testing.py``."""
from options.base_options import BaseOptions
from utils.decision_rules import RULES
from utils.flags import optional_path, str2bool


class TestOptions(BaseOptions):
    mode = 'eval'
    run_title = 'testing (weights, scoring, your own video)'
    description = ('Score every test clip of a prepared video data set and compute the frame-level AUC, or evaluate '
                   'the trained models of an image or KDDCUP99 experiment.')
    batch_size = 1

    def add_arguments(self, groups):
        outputs, run, speed = groups.outputs, groups.run, groups.speed
        run.add_argument('--ModelFilePath', help='weights to load (image and KDD experiments: the folder of the '
                            "units' weights); default: <ModelRoot>/<setting>.pt and the released file names",
                            type=optional_path, default=None)
        outputs.add_argument('--Plots', help='(added) video data sets: write figures under '
                            '<OutRoot>/res_<setting>/plots/ (regularity curves, ROC, error maps, memory usage; see '
                            'utils/plots.py)',
                            type=str2bool, default=False)
        speed.add_argument('--ClipWindow', help='(added) video: score this many consecutive clips together: '
                            'neighbouring clips share all but one frame, so the first three encoder layers run once '
                            'over the window\'s frames and only the clip edges are recomputed '
                            '(models/clip_overlap.py; the same scores up to float rounding: docs/FIDELITY.md); '
                            'the later layers take at least 4 clips (--BatchSize if larger) at a time; frames '
                            'preloaded as with --PreloadFrames. 0: every clip through the whole model, --BatchSize '
                            'clips per pass, as released',
                            type=int, default=16)
        run.add_argument('--Video', help='(added) score this video file (what PyAV decodes) or folder of frame '
                            'images instead of a prepared test set: no preparation, no ground truth; outputs in '
                            '<OutRoot>/video_<name>/ (utils/single_video.py)', type=optional_path, default=None)
        run.add_argument('--Stream', help='(added) score frames as they arrive, with a calibration: a video file '
                            '(read at its frame rate), a URL, a capture device (with --StreamFormat) or a folder that '
                            'is being filled with frame images; one decision per frame half a clip after it arrives, '
                            'until the source ends or Ctrl-C; outputs in <OutRoot>/stream_<name>/ '
                            '(utils/live_stream.py, docs/DEPLOYMENT.md)', type=optional_path, default=None)
        run.add_argument('--StreamFormat', help="(added) --Stream: FFmpeg's input format for a capture device "
                            '(v4l2 on Linux, avfoundation on macOS, dshow on Windows); default: FFmpeg guesses',
                            type=optional_path, default=None)
        run.add_argument('--VideoSize', help='(added) --Video, --Stream: the frame size H W the model takes; '
                            'default: the size in <DataRoot>/<Dataset>/prepare.json, else 256 256 (the released '
                            'preparation)',
                            type=int, nargs=2, metavar=('H', 'W'), default=None)
        run.add_argument('--Calibrate', help='(added) score normal footage, --Video PATH or the training videos '
                            'that --HoldOutVideos held out of training, and write the distribution of its clip errors '
                            'beside the weights (<weights>_calibration.json, or --Calibration) for calibrated '
                            'decisions (utils/calibration.py, docs/DEPLOYMENT.md)',
                            type=str2bool, default=False)
        run.add_argument('--Calibration', help='(added) --Video, --Stream: the calibration file for decisions; '
                            'default: <weights>_calibration.json when it exists (then every frame gets a decision and '
                            'runs of anomalous frames become events)', type=optional_path, default=None)
        run.add_argument('--FalseAlarmRate', help='(added) with a calibration: the share of normal clips allowed to '
                            'exceed the threshold', type=float, default=0.01)
        run.add_argument('--DecisionRule', help='(added) with a calibration: what a clip error is compared with, '
                            'from past clips only (utils/decision_rules.py, docs/DEPLOYMENT.md): global (the raw error '
                            "against the calibration's threshold), warmup (the error relative to the median of the "
                            "stream's first --BaselineClips unflagged clips), running (relative to the median of the "
                            'last --BaselineClips unflagged clips); the default was chosen on held-out training videos '
                            '(docs/DEPLOYMENT.md)', choices=RULES, default='warmup')
        run.add_argument('--BaselineClips', help='(added) --DecisionRule warmup, running: how many unflagged clips set '
                            'the level (--Calibrate records the rules for this number)', type=int, default=10)
        run.add_argument('--EventMinFrames', help='(added) with a calibration: the fewest anomalous frames an event '
                            'has', type=int, default=8)
        run.add_argument('--EventMergeGap', help='(added) with a calibration: runs of anomalous frames at most this '
                            'many frames apart are one event', type=int, default=16)
        speed.add_argument('--PreloadFrames', help='(added) video, --ClipWindow 0: decode each test video once into '
                            'one uint8 tensor on the device (GPU memory on CUDA) and cut the clips from it, instead of '
                            'a DataLoader; same scores', type=str2bool, default=False)

    def check(self, opt):
        if opt.VideoSize is not None and min(opt.VideoSize) < 1:
            self.parser.error(f'--VideoSize must be two positive numbers H W, got {opt.VideoSize}')
        if opt.Stream and (opt.Video or opt.Calibrate):
            self.parser.error('--Stream scores a live source with a calibration; --Video and --Calibrate are other '
                              'runs: give one of them')
        if opt.Stream and opt.Plots:
            self.parser.error('--Plots draws the figures of a test set or a --Video; a --Stream writes its '
                              'decisions.png when it ends: leave --Plots out')
        if opt.StreamFormat and not opt.Stream:
            self.parser.error('--StreamFormat is the input format of a --Stream source; give --Stream too')
        if opt.Calibrate and not opt.Video and not opt.HoldOutVideos:
            self.parser.error('--Calibrate True scores normal footage the model was not trained on: give --Video '
                              'PATH, or --HoldOutVideos N for the training videos held out of its training')
        if not 0 < opt.FalseAlarmRate < 1:
            self.parser.error(f'--FalseAlarmRate must lie between 0 and 1, got {opt.FalseAlarmRate}')
        if opt.BaselineClips < 1:
            self.parser.error(f'--BaselineClips must be at least 1, got {opt.BaselineClips}')
        if opt.EventMinFrames < 1 or opt.EventMergeGap < 0:
            self.parser.error(f'--EventMinFrames must be at least 1 and --EventMergeGap at least 0, got '
                              f'{opt.EventMinFrames} and {opt.EventMergeGap}')
        if opt.ClipWindow < 0:
            self.parser.error(f'--ClipWindow must be 0 (every clip separately) or a positive number of clips, got '
                              f'{opt.ClipWindow}')
