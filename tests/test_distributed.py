"""Multi-process training (torchrun, DistributedDataParallel, Gloo on the CPU) on the 16 x 32 x 32 data set."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shell import SHELL_TIMEOUT

REPO = Path(__file__).resolve().parents[1]
SETTING = 'MemAE_Conv3DSpar_UCSD_P2_256_MemDim20_EntW0.0002_ShrThres0.0025_Seed1_Non'


def torchrun(processes, *args):
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={processes}',
               'script_training.py', *args]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=SHELL_TIMEOUT)


def test_global_batch_must_divide_among_processes():
    """The check script_training.py makes of --BatchSize under torchrun (the two-process run above goes through
    it with a batch that divides)."""
    from types import SimpleNamespace
    from utils.distributed import per_process_batch
    from utils.errors import InputError
    two = SimpleNamespace(world_size=2, distributed=True)
    assert per_process_batch(4, two) == 2
    assert per_process_batch(5, SimpleNamespace(world_size=1, distributed=False)) == 5
    with pytest.raises(InputError, match='--BatchSize 5 is the global batch and must divide evenly among the 2 '
                                         'processes'):
        per_process_batch(5, two)


def test_two_processes_train_one_model_equal_to_one_process_averaging_the_two_half_batches(prepared_root, tmp_path):
    """One run of 2 processes. Only process 0 writes, and the weights are the plain model's. The weights equal an
    independent single-process computation of what DDP must do: each step, the gradient of rank 0's half-batch
    and of rank 1's half-batch (the shares DistributedSampler gives them), averaged, one Adam step; BatchNorm
    normalises each half with its own statistics, and the running statistics that survive are rank 0's (DDP
    broadcasts rank 0's buffers before every forward)."""
    flags = ['--DataRoot', str(prepared_root), '--ModelRoot', str(tmp_path), '--MemDim', '20', '--UseCUDA', 'False',
             '--NumWorker', '0', '--BatchSize', '4', '--EpochNum', '2', '--IsTbLog', 'False', '--LR', '1e-3',
             '--KeepIntermediate', 'True']
    done = torchrun(2, *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'in each of 2 processes' in done.stdout and done.stdout.count('final weights:') == 1
    folder = tmp_path / f'model_{SETTING}'
    log = (folder / 'train_log.csv').read_text().splitlines()
    # 10 clips shared by 2 processes (5 each) in batches of 4 / 2 = 2: 3 iterations per epoch, logged once
    assert len(log) == 1 + 2 * 3
    state = torch.load(folder / f'{SETTING}_resume.pt', weights_only=True)
    assert state['epochs_done'] == 2 and state['iteration'] == 6
    trained = torch.load(folder / f'{SETTING}_epoch_0001_final.pt', weights_only=True)
    assert 'mem_rep.memory.weight' in trained  # the plain model's keys: no 'module.' prefix from DDP

    # One thread, as each torchrun process has: Adam turns rounding noise in gradients near zero (a convolution's
    # bias before BatchNorm has a true gradient of 0) into whole steps of +-LR, so another thread count's rounding
    # would move some weights by about LR.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = averaged_half_batches(prepared_root, flags)
    finally:
        torch.set_num_threads(threads)
    assert trained.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(trained[name], value, rtol=1e-5, atol=1e-6, msg=name)


def averaged_half_batches(prepared_root, flags):
    """The state dict a 2-process run of ``flags`` must end with, computed in this process."""
    from torch.utils.data import DistributedSampler

    from data.layout import VideoLayout
    from data.video_datasets import VideoDataset
    from models import build_model, weights_init
    from options import TrainOptions
    from utils.runtime import seed_everything
    from utils.training import LossSettings, compute_losses

    opt = TrainOptions().parse(flags, is_print=False)
    seed_everything(opt.Seed)
    layout = VideoLayout(prepared_root / 'UCSD_P2_256')
    clips = VideoDataset(layout.index_dir('train'), layout.frames_dir('train'))
    model = build_model(opt)
    model.apply(weights_init)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=opt.LR)
    losses = LossSettings.from_options(opt)
    shares = [DistributedSampler(clips, num_replicas=2, rank=rank, shuffle=True, seed=opt.Seed) for rank in (0, 1)]
    for epoch in range(opt.EpochNum):
        orders = []
        for share in shares:
            share.set_epoch(epoch)
            orders.append(list(share))
        for start in range(0, len(orders[0]), 2):
            rank0_buffers = {name: b.clone() for name, b in model.named_buffers()}
            optimizer.zero_grad()
            for rank in (1, 0):  # rank 0 last: its buffer updates are the ones kept
                if rank == 0:
                    for name, buffer in model.named_buffers():
                        buffer.copy_(rank0_buffers[name])
                batch = torch.stack([clips[i][1] for i in orders[rank][start:start + 2]])
                compute_losses(model, batch, losses)[0].backward()
            for parameter in model.parameters():
                parameter.grad /= 2
            optimizer.step()
    return model.state_dict()
