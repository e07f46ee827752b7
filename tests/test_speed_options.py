"""The speed options of the video scripts: --AMP bf16 and --Compile (run on the CPU here; GPUs are their use)."""
import json

import numpy as np
import torch

import script_testing
import script_training

COMMON = ['--UseCUDA', 'False', '--NumWorker', '0', '--MemDim', '20']
SETTING = 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim20_EntW0.0002_ShrThres0.0025_Seed1_Non'


def train(prepared_root, model_root, *extra):
    argv = ['--DataRoot', str(prepared_root), '--ModelRoot', str(model_root), '--EpochNum', '1', '--BatchSize', '5',
            '--IsTbLog', 'False', *COMMON, *extra]
    assert script_training.main(argv) == 0
    return model_root / f'model_{SETTING}'


def scores(prepared_root, model_root, out, *extra):
    argv = ['--DataRoot', str(prepared_root), '--ModelRoot', str(model_root), '--OutRoot', str(out), '--BatchSize',
            '5', *COMMON, *extra]
    assert script_testing.main(argv) == 0
    res = out / f'res_{SETTING}'
    results = json.loads((res / 'results.json').read_text())
    return np.concatenate([np.load(res / f'Test00{k}.npy') for k in (1, 2)]), results


def test_bf16_autocast_trains_and_scores_close_to_float32(prepared_root, tmp_path):
    folder = train(prepared_root, tmp_path / 'm', '--AMP', 'bf16')
    losses = [float(row.split(',')[2]) for row in (folder / 'train_log.csv').read_text().splitlines()[1:]]
    assert losses and all(np.isfinite(losses))
    weights = torch.load(folder / f'{SETTING}_epoch_0000_final.pt', weights_only=True)
    assert weights['mem_rep.memory.weight'].dtype == torch.float32  # autocast leaves the parameters in float32
    fp32, _ = scores(prepared_root, tmp_path / 'm', tmp_path / 'fp32')
    bf16, results = scores(prepared_root, tmp_path / 'm', tmp_path / 'bf16', '--AMP', 'bf16')
    assert results['options']['AMP'] == 'bf16'
    assert not np.array_equal(bf16, fp32) and np.allclose(bf16, fp32, rtol=0.05)


def test_compile_wraps_the_model_without_changing_scores_or_weight_files(prepared_root, tmp_path, monkeypatch):
    compiled = []
    real_compile = torch.compile

    def eager_compile(model, **kwargs):  # dynamo's tracing, without the minutes of an inductor build on 2 cores
        compiled.append(model)
        return real_compile(model, backend='eager', **kwargs)
    monkeypatch.setattr(torch, 'compile', eager_compile)
    folder = train(prepared_root, tmp_path / 'm', '--Compile', 'True')
    assert len(compiled) == 1
    keys = torch.load(folder / f'{SETTING}_epoch_0000_final.pt', weights_only=True).keys()
    assert not any(k.startswith('_orig_mod') for k in keys)  # the plain model's keys
    plain, _ = scores(prepared_root, tmp_path / 'm', tmp_path / 'plain')
    traced, _ = scores(prepared_root, tmp_path / 'm', tmp_path / 'traced', '--Compile', 'True')
    assert len(compiled) == 2 and np.allclose(traced, plain, rtol=1e-5)


def test_preloaded_frames_give_the_same_scores(prepared_root, tmp_path):
    train(prepared_root, tmp_path / 'm')
    loaded, _ = scores(prepared_root, tmp_path / 'm', tmp_path / 'loader', '--ClipWindow', '0')
    preloaded, results = scores(prepared_root, tmp_path / 'm', tmp_path / 'preloaded', '--PreloadFrames', 'True',
                                '--ClipWindow', '0')
    assert results['options']['PreloadFrames'] is True and np.array_equal(preloaded, loaded)


def test_channels_last_trains_and_scores_like_the_default_layout(prepared_root, tmp_path):
    folder = train(prepared_root, tmp_path / 'm', '--ChannelsLast', 'True')
    default_folder = train(prepared_root, tmp_path / 'd')
    logs = [(f / 'train_log.csv').read_text().splitlines()[1:] for f in (folder, default_folder)]
    losses = [np.array([float(row.split(',')[2]) for row in log]) for log in logs]
    assert np.allclose(losses[0], losses[1], rtol=1e-4)
    plain, _ = scores(prepared_root, tmp_path / 'm', tmp_path / 'plain')
    last, _ = scores(prepared_root, tmp_path / 'm', tmp_path / 'last', '--ChannelsLast', 'True')
    assert np.allclose(last, plain, rtol=1e-5)
