import os

import pytest
import torch

# Two cores: one intra-op thread per xdist worker keeps the workers from fighting over them. OMP_NUM_THREADS
# carries it into `cnnzoo.train` runs (their default threads) and into the subprocesses tests start.
THREADS = os.environ.get("CNNZOO_TEST_THREADS", "1")
os.environ["OMP_NUM_THREADS"] = THREADS
torch.set_num_threads(int(THREADS))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
