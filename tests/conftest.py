import os

import pytest
import torch as th

# Two cores here: more torch threads than cores slows everything down.
th.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    th.manual_seed(0)
