"""Test-suite settings: quiet CPU threads, deterministic seeds, no Hub access."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's spinning threads slow every other process
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded at test time
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)
