import os

import pytest
import torch

# Two cores: one intra-op thread per xdist worker keeps the workers from fighting over them.
torch.set_num_threads(int(os.environ.get("CNNZOO_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
