import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# CI runs every property test on the same examples (derandomize), with no time limit per example: a busy 2-core
# machine must not turn a slow example into a failure, nor a new random search into a different result.
settings.register_profile('ci', derandomize=True, deadline=None, database=None, print_blob=True)
if os.environ.get('CI'):
    settings.load_profile('ci')

# The test command runs two pytest-xdist processes on a 2-core machine: one thread each (and in the commands they
# start), instead of two apiece fighting over the cores. A test that compares a command's numbers with this
# process's gets the same thread count in both, as when the suite runs in one process with the default threads.
if os.environ.get('PYTEST_XDIST_WORKER'):
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)

from data.prepare_video import prepare
from synthetic import make_ucsd_original

# Small enough for the 3-D autoencoder (time / 8, space / 16) and fast on 2 CPU cores.
PREPARED_SIZE = (32, 32)
NUM_FRAMES = 20  # 5 clips of 16 frames per video


@pytest.fixture(scope='session')
def prepared_root(tmp_path_factory):
    """A prepared data set ``<root>/UCSD_P2_256`` (2 training and 2 test videos of 20 frames of 32 x 32)."""
    root = tmp_path_factory.mktemp('prepared')
    src = make_ucsd_original(root / 'src', num_frames=NUM_FRAMES)
    prepare(src, root / 'data' / 'UCSD_P2_256', size=PREPARED_SIZE, progress=False)
    return root / 'data'


@pytest.fixture(scope='session')
def real_data():
    """The real data sets folder named by MEMAE_REAL_DATA; tests that use it skip when it is unset."""
    folder = os.environ.get('MEMAE_REAL_DATA')
    if not folder:
        pytest.skip('MEMAE_REAL_DATA is not set')
    path = Path(folder)
    if not path.is_dir():
        pytest.fail(f'MEMAE_REAL_DATA={folder} is not a folder')
    return path


@pytest.fixture(autouse=True, scope='session')
def private_cache(tmp_path_factory):
    """Parsed-data caches (data/kdd.py) go to a folder of the test session, never to the user's ~/.cache."""
    os.environ['MEMAE_CACHE'] = str(tmp_path_factory.mktemp('cache'))
