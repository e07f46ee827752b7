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


def test_two_processes_train_one_model_and_only_process_0_writes(prepared_root, tmp_path):
    done = torchrun(2, '--DataRoot', str(prepared_root), '--ModelRoot', str(tmp_path), '--MemDim', '20',
                    '--UseCUDA', 'False', '--NumWorker', '0', '--BatchSize', '4', '--EpochNum', '2',
                    '--IsTbLog', 'False')
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'in each of 2 processes' in done.stdout and done.stdout.count('final weights:') == 1
    folder = tmp_path / f'model_{SETTING}'
    log = (folder / 'train_log.csv').read_text().splitlines()
    # 10 clips shared by 2 processes (5 each) in batches of 4 / 2 = 2: 3 iterations per epoch, logged once
    assert len(log) == 1 + 2 * 3
    weights = torch.load(folder / f'{SETTING}_epoch_0001_final.pt', weights_only=True)
    assert 'mem_rep.memory.weight' in weights  # the plain model's keys: no 'module.' prefix from DDP
    state = torch.load(folder / f'{SETTING}_resume.pt', weights_only=True)
    assert state['epochs_done'] == 2 and state['iteration'] == 6


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
