"""Shared test fixtures: the numerical reference beside the repository, small models."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from helpers import REFERENCE_DIR

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine, 2 threads can be 10-30x slower.

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def reference():
    """The ``seeded_state`` module and golden outputs of ``../shared/reference``.

    Skipped where the reference is absent (a user's clone), but never on CI.
    """
    module_path = REFERENCE_DIR / "seeded_state.py"
    if not module_path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the numerical reference at {REFERENCE_DIR}")
        pytest.skip(f"numerical reference not found at {REFERENCE_DIR} (set DMT_REFERENCE_DIR)")
    spec = importlib.util.spec_from_file_location("seeded_state", module_path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    golden = torch.load(REFERENCE_DIR / "golden_outputs.pt", weights_only=True)
    return mod, golden


@pytest.fixture(scope="session")
def official_paper_model(reference):
    """The paper model with the converted seeded official weights, eval mode."""
    from dmt_core import DMT, DMTConfig, convert_official_state_dict

    seeded, _ = reference
    model = DMT(DMTConfig.paper()).eval()
    model.load_state_dict(convert_official_state_dict(seeded.seeded_state_dict()), strict=True)
    return model
