"""Shared test set-up: CPU only, offline, no display, no writes outside tmp folders."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# CPU training in tests (tiny models) runs one torch thread: see core/cpu_threads.py and one_torch_thread
os.environ.setdefault("MEDSEG_CPU_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own app home so caches and settings never leak between tests."""
    home = tmp_path_factory.mktemp("medseg_home")
    monkeypatch.setenv("MEDSEG_HOME", str(home))
    return home


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP spin-waits
    make each step seconds instead of milliseconds; the setting is restored for other tests.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
