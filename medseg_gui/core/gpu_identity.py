"""One identity for a GPU everywhere: NVML's cards mapped to the ordinals CUDA (and so PyTorch and
Lightning) will use, and the user's choice of GPUs resolved against them.

Why this exists: NVML (nvidia-smi, the Hardware page) numbers cards in PCI bus order and sees every
card; CUDA numbers them *fastest first* by default and only sees what ``CUDA_VISIBLE_DEVICES``
lets through, renumbered from 0. Planning with one numbering and training with the other sizes the
wrong card (a run planned for an idle card trains on a busy one and runs out of memory). So every
``GpuInfo`` carries its UUID (the identity that never changes), its NVML index (nvidia-smi's number)
and its CUDA ordinal (``cuda:N`` in this process, None when CUDA cannot see it), and "GPU N" in the
app always means the CUDA ordinal.

How CUDA numbers the cards is read in ``core.hardware`` (``assign_cuda_indices``); this module
names them and resolves the user's choice against that numbering.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from medseg_gui.core import hardware
from medseg_gui.core.hardware import VISIBLE_ENV, GpuInfo, HardwareSnapshot, match_uuid

# Set by rank 0 of a multi-GPU run: the CUDA ordinals it resolved, so the processes Lightning starts
# for the other ranks train on the same cards (their own NVML reading would see rank 0's memory).
TRAIN_DEVICES_ENV = "MEDSEG_CUDA_DEVICES"


class GpuSelectionError(ValueError):
    """A GPU named in training.gpus / --gpu / --gpus that CUDA cannot see; the message says which exist."""


# ---- naming a card --------------------------------------------------------------------------------

def short_uuid(uuid: str | None) -> str:
    return "no UUID" if not uuid else (uuid[:12] + "…" if len(uuid) > 13 else uuid)


def gpu_label(gpu: "GpuInfo") -> str:
    """"GPU 1" (the CUDA ordinal: what training uses), or nvidia-smi's number when CUDA cannot see it."""
    if gpu.cuda_index is None:
        return f"nvidia-smi GPU {gpu.index} (hidden from CUDA)"
    return f"GPU {gpu.cuda_index}"


def gpu_description(gpu: "GpuInfo") -> str:
    """Label, name and the identifiers a user can check against nvidia-smi -L."""
    extra = f"nvidia-smi #{gpu.index}, {short_uuid(gpu.uuid)}" if gpu.cuda_index is not None else short_uuid(gpu.uuid)
    return f"{gpu_label(gpu)} {gpu.name} ({extra})"


def by_cuda_index(gpus: Iterable["GpuInfo"]) -> list["GpuInfo"]:
    """Visible cards by ordinal, then hidden ones by nvidia-smi number (the order to list them in)."""
    return sorted(gpus, key=lambda g: (g.cuda_index is None, g.cuda_index if g.cuda_index is not None else g.index))


def _available(snapshot: "HardwareSnapshot") -> str:
    visible = [g for g in by_cuda_index(snapshot.gpus) if g.cuda_index is not None]
    if not visible:
        why = (f"{VISIBLE_ENV}={snapshot.cuda_visible_devices!r} hides every card" if snapshot.gpus
               else snapshot.nvml_error or "no NVIDIA GPU was found")
        return f"no GPU is visible to CUDA ({why})"
    return "CUDA sees " + "; ".join(f"{g.cuda_index} = {g.name} ({g.uuid or 'no UUID'})" for g in visible)


# ---- the user's choice ----------------------------------------------------------------------------

def _ensure_numbered(snapshot: "HardwareSnapshot") -> None:
    """Cards put into a snapshot by hand (tests, tools) after it was made: numbered as CUDA would with no
    CUDA_VISIBLE_DEVICES (``HardwareSnapshot.__post_init__``'s rule). ``probe`` numbers real ones."""
    if snapshot.cuda_device_order is None and all(g.cuda_index is None for g in snapshot.gpus):
        for g in snapshot.gpus:
            g.cuda_index = g.index


def parse_gpu_list(text: str) -> list[str]:
    """``"0,1"`` or ``"GPU-ab12,GPU-cd34"`` (the CLI's --gpus) as config entries."""
    return [part.strip() for part in text.split(",") if part.strip()]


def resolve_gpus(snapshot: "HardwareSnapshot", wanted: Sequence[str | int]) -> list["GpuInfo"]:
    """The cards named by CUDA ordinal ("0") or UUID (full or unique prefix), in the order given.

    Raises GpuSelectionError (one line: what is wrong and which cards exist) for a card that does
    not exist, is ambiguous, is hidden from CUDA, or is named twice.
    """
    _ensure_numbered(snapshot)
    out: list[GpuInfo] = []
    for raw in wanted:
        entry = str(raw).strip()
        if entry.lstrip("-").isdigit():
            n = int(entry)
            gpu = next((g for g in snapshot.gpus if g.cuda_index == n), None)
            if gpu is None:
                raise GpuSelectionError(f"there is no GPU {entry}: {_available(snapshot)}")
        else:
            gpu = match_uuid(entry, snapshot.gpus) if entry else None
            if gpu is None:
                raise GpuSelectionError(f"no GPU has the UUID {entry!r} (or it is ambiguous): {_available(snapshot)}")
            if gpu.cuda_index is None:
                raise GpuSelectionError(f"{entry} ({gpu.name}, nvidia-smi #{gpu.index}) is hidden from CUDA by "
                                        f"{VISIBLE_ENV}={snapshot.cuda_visible_devices!r}: {_available(snapshot)}")
        if any(g is gpu for g in out):
            raise GpuSelectionError(f"GPU {entry} is named twice")
        out.append(gpu)
    return out


def choose_gpus(snapshot: "HardwareSnapshot", wanted: Sequence[str | int] = (), count: int = 1) -> list["GpuInfo"]:
    """The named cards, or else the ``count`` visible cards with the most free memory (by ordinal).

    This is "the card the recommendation chose" when training.gpus is empty: most free memory, not
    CUDA's device 0, which may be the one another program is filling.
    """
    if wanted:
        return resolve_gpus(snapshot, wanted)
    _ensure_numbered(snapshot)
    visible = [g for g in snapshot.gpus if g.cuda_index is not None]
    if not visible:
        return []
    if count > len(visible):
        raise GpuSelectionError(f"{count} GPUs asked for, but {_available(snapshot)}")
    best = sorted(visible, key=lambda g: (-(g.free_gb or 0.0), g.cuda_index))[:count]
    return sorted(best, key=lambda g: g.cuda_index)


def device_count(gpus: Sequence[str], devices: int) -> int:
    """How many GPUs a run uses: the named ones when training.gpus is set, else training.devices."""
    return len(gpus) if gpus else devices


# ---- the training process -------------------------------------------------------------------------

def training_gpu(snapshot: "HardwareSnapshot", gpus: Sequence[str], devices: int) -> "GpuInfo | None":
    """The card a run with this training.gpus / training.devices trains on (the first of several), as the
    session chooses it (``plan_training_devices``): what speed estimates and plans must speak of, not
    merely the card with the most free memory. None without a visible GPU; GpuSelectionError for a
    configured card that does not exist."""
    chosen = choose_gpus(snapshot, list(gpus), device_count(list(gpus), devices))
    return chosen[0] if chosen else None


def torch_uuids() -> list[str] | None:
    """PyTorch's UUID for each CUDA ordinal ("GPU-..." like NVML), or None without CUDA.

    The authority on the numbering inside the process that trains (it initialises CUDA, so only the
    training process calls it, never the GUI).
    """
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return [_nvml_style(str(torch.cuda.get_device_properties(i).uuid)) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 — an old torch without .uuid: fall back to our mapping
        return None


def _nvml_style(uuid: str) -> str:
    return uuid if uuid[:4].upper() in ("GPU-", "MIG-") else f"GPU-{uuid}"


@dataclass
class DevicePlan:
    """Where a run trains: CUDA ordinals for Lightning's ``devices=[...]`` and the cards they are."""
    ordinals: list[int]
    gpus: list["GpuInfo"]
    note: str = ""  # said in the run's log

    @property
    def uuids(self) -> list[str]:
        return [g.uuid or "" for g in self.gpus]


def plan_training_devices(snapshot: "HardwareSnapshot", gpus: Sequence[str], devices: int,
                          uuids_by_ordinal: Sequence[str] | None = None,
                          inherited: str | None = None, launched_externally: bool = False) -> DevicePlan:
    """Resolve training.gpus / training.devices to CUDA ordinals (raises GpuSelectionError).

    ``uuids_by_ordinal``: torch's UUIDs (``torch_uuids``), trusted over our FASTEST_FIRST guess.
    ``inherited``: rank 0's resolved ordinals (``MEDSEG_CUDA_DEVICES``) in the processes it starts.
    ``launched_externally``: torchrun/SLURM started every process at once; with training.gpus empty
    each would read a different "most free" card, so they all take CUDA's first ``devices`` cards
    (what Lightning does), and the launcher's CUDA_VISIBLE_DEVICES picks the cards.
    """
    if inherited:
        ordinals = [int(x) for x in inherited.split(",") if x.strip()]
        return DevicePlan(ordinals, [g for n in ordinals for g in snapshot.gpus if g.cuda_index == n],
                          "the GPUs chosen by the first process")
    count = device_count(list(gpus), devices)
    if launched_externally and not gpus:
        ordinals = list(range(count))
        return DevicePlan(ordinals, [g for n in ordinals for g in snapshot.gpus if g.cuda_index == n],
                          f"CUDA's first {count} GPU(s): started by an external launcher (set training.gpus to choose)")
    if not snapshot.gpus:  # NVML unreadable: CUDA ordinals and UUIDs through torch only
        if not gpus:
            return DevicePlan(list(range(count)), [], "")
        ordinals = []
        for entry in gpus:
            entry = str(entry).strip()
            if entry.isdigit():
                ordinals.append(int(entry))
                continue
            hits = [i for i, u in enumerate(uuids_by_ordinal or []) if u.lower().startswith(entry.lower())]
            if len(hits) != 1:
                raise GpuSelectionError(f"no GPU has the UUID {entry!r} (the driver cannot be queried to list them)")
            ordinals.append(hits[0])
        if uuids_by_ordinal is not None and any(n >= len(uuids_by_ordinal) for n in ordinals):
            raise GpuSelectionError(f"there is no GPU {max(ordinals)}: CUDA sees {len(uuids_by_ordinal)}")
        return DevicePlan(ordinals, [], "")
    chosen = choose_gpus(snapshot, gpus, count)
    ordinals = []
    for g in chosen:
        n = g.cuda_index
        if uuids_by_ordinal and g.uuid:
            exact = [i for i, u in enumerate(uuids_by_ordinal) if u.lower() == g.uuid.lower()]
            if exact:
                n = exact[0]
        ordinals.append(int(n))  # choose_gpus returns visible cards only
    how = "as configured (training.gpus)" if gpus else "the most free memory"
    names = ", ".join(f"GPU {n} {g.name} ({short_uuid(g.uuid)}, {g.free_gb or 0:.1f} GB free)"
                      for n, g in zip(ordinals, chosen))
    return DevicePlan(ordinals, chosen, f"training on {names}: {how}")


def plan_for_this_process(gpus: Sequence[str], devices: int) -> DevicePlan:
    """``plan_training_devices`` with this machine's NVML reading, torch's numbering and rank 0's choice.

    For the processes that train (the session, the tools' trial runs); raises GpuSelectionError.
    """
    external = any(key in os.environ for key in ("LOCAL_RANK", "SLURM_PROCID", "TORCHELASTIC_RUN_ID"))
    return plan_training_devices(hardware.probe(), gpus, devices, torch_uuids(), os.environ.get(TRAIN_DEVICES_ENV),
                                 launched_externally=external)


def select_gpu(snapshot: HardwareSnapshot, index: int | str | None = None) -> GpuInfo | None:
    """The GPU asked for (CUDA ordinal or UUID), or the visible one with the most free memory.

    None on a CPU-only machine or when CUDA_VISIBLE_DEVICES hides every card. A card that does not
    exist raises ``GpuSelectionError`` (a ValueError) naming the cards that do.
    """
    if index is not None:
        return choose_gpus(snapshot, [str(index)])[0]
    chosen = choose_gpus(snapshot, (), 1)
    return chosen[0] if chosen else None
