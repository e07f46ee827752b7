"""Multi-process video training with DistributedDataParallel, started by ``torchrun``:

    torchrun --nproc_per_node 4 script_training.py [flags]        # 4 GPUs of one machine

Every process trains a replica on its share of each batch (``DistributedSampler``; ``--BatchSize`` stays the
global batch, split evenly, so a run's settings mean the same on any number of processes), gradients are averaged,
and process 0 alone writes logs, TensorBoard and weights. GPUs use NCCL, the CPU Gloo (how the tests run it).
BatchNorm statistics stay per process (no SyncBatchNorm), as with DataParallel.
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from utils.errors import InputError
from utils.runtime import select_device


@dataclass
class Processes:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def start_processes(use_cuda):
    """This process's place: from torchrun's environment when it started several, else a single process."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    if world_size == 1:
        return Processes(0, 1, select_device(use_cuda))
    cuda = use_cuda and torch.cuda.is_available()
    torch_dist.init_process_group('nccl' if cuda else 'gloo')
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if cuda:
        torch.cuda.set_device(local_rank)
    return Processes(torch_dist.get_rank(), world_size, torch.device(f'cuda:{local_rank}' if cuda else 'cpu'))


def per_process_batch(batch_size, processes):
    if batch_size % processes.world_size:
        raise InputError(f'--BatchSize {batch_size} is the global batch and must divide evenly among the '
                         f'{processes.world_size} processes')
    return batch_size // processes.world_size


def sampler(dataset, processes, seed):
    """Each process's shuffled share of the clips (None for a single process, which shuffles in its loader)."""
    if not processes.distributed:
        return None
    return DistributedSampler(dataset, num_replicas=processes.world_size, rank=processes.rank, shuffle=True,
                              seed=seed)


def replicated(model, processes):
    """The model wrapped for gradient averaging across processes (itself for a single process)."""
    if not processes.distributed:
        return model
    device_ids = [processes.device.index] if processes.device.type == 'cuda' else None
    return DistributedDataParallel(model, device_ids=device_ids)


def stop_processes(processes):
    if processes.distributed:
        torch_dist.barrier()
        torch_dist.destroy_process_group()
