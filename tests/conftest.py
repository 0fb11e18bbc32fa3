import random

import numpy as np
import pytest
import torch

from _torchvision_shim import define_missing_ops

# transformers imports torchvision when it is installed; make that import work before any test module runs.
define_missing_ops()
# Two threads make tiny ops ~40x slower on these 2-core machines.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
