"""What the PyInstaller spec decides before its analysis: which bundle to build, and which CUDA libraries
to carry.

Kept out of the spec so it can be tested: the spec is executed by PyInstaller, not imported.

* The bundle kind. ``full`` is the desktop app plus the command line (what CI and the releases build).
  ``cli`` is the command line alone: a GPU build machine often has no PySide6 (Qt is ~600 MB of wheels that
  nobody installs on a headless trainer), and the command line still proves torch, CUDA and the engine
  frozen. ``MEDSEG_BUNDLE`` chooses; unset, a missing PySide6 means ``cli``, said loudly.
* The CUDA libraries. The contributed torch hook maps torch's ``nvidia-*-cuNN`` requirements to the
  ``nvidia.*`` packages and collects their libraries, but torch for CUDA 13 asks for most of CUDA through
  ``cuda-toolkit[cublas,cudart,nvrtc,...]``, whose wheels are named ``nvidia-cublas`` (no suffix) and
  install into one ``nvidia/cu13/lib`` folder: that mapping misses them. The libraries torch links
  against are still found through their RPATH, but the ones opened by name at run time (NVRTC's
  builtins, cuDNN's engines) would be left behind and fail only on the user's machine. So a CUDA build
  of torch carries every shared library of the ``nvidia-*`` wheels it requires, directly or through
  those extras.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

BUNDLE_KINDS = ("full", "cli")


class BundleChoiceError(ValueError):
    """MEDSEG_BUNDLE names no bundle kind, or asks for the desktop app without PySide6."""


def bundle_kind(environ: Mapping[str, str] = os.environ, has_pyside: bool | None = None) -> str:
    """``full`` or ``cli``: MEDSEG_BUNDLE when set, else ``full`` exactly when PySide6 is installed."""
    if has_pyside is None:
        has_pyside = importlib.util.find_spec("PySide6") is not None
    chosen = environ.get("MEDSEG_BUNDLE", "").strip().lower()
    if not chosen:
        return "full" if has_pyside else "cli"
    if chosen not in BUNDLE_KINDS:
        raise BundleChoiceError(f"MEDSEG_BUNDLE={chosen!r}: use 'full' (the desktop app and the command "
                                f"line) or 'cli' (the command line only)")
    if chosen == "full" and not has_pyside:
        raise BundleChoiceError("MEDSEG_BUNDLE=full, but PySide6 is not installed here: install it "
                                "(pip install -e .) or build the command line only with MEDSEG_BUNDLE=cli")
    return chosen


def is_gui_module(name: str) -> bool:
    """Modules a command-line bundle leaves out: the desktop app and the Qt libraries it alone uses."""
    top = name.split(".")[0]
    return top in {"PySide6", "shiboken6", "pyqtgraph"} or name.split(".")[:2] == ["medseg_gui", "gui"]


def torch_cuda_version() -> str | None:
    """The CUDA version torch was built for (``"13.0"``), or None for a CPU build; torch is not imported
    (the spec runs in the build process, and importing torch there costs seconds and GPU context)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return None
    version_file = Path(spec.origin).parent / "version.py"
    try:
        text = version_file.read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.replace(" ", "").startswith(("cuda:", "cuda=")):  # "cuda: Optional[str] = '13.0'"
            value = line.split("=", 1)[-1].strip().strip("'\"")
            return None if value in ("None", "") else value
    return None


def is_shared_library(name: str) -> bool:
    return name.endswith(".so") or ".so." in name or name.endswith((".dll", ".dylib"))


def installed_requires(name: str) -> list[str] | None:
    """The Requires-Dist lines of an installed distribution; None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.distribution(name).requires or []
    except metadata.PackageNotFoundError:
        return None


def _applies(req, extras: Iterable[str] = ()) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in (*extras, ""))


def torch_nvidia_requirements(requires: Callable[[str], list[str] | None] = installed_requires) -> list[str]:
    """The ``nvidia-*`` distributions this torch build depends on (none for a CPU build): named directly
    (``nvidia-cudnn-cu13``) or through the extras of NVIDIA's ``cuda-toolkit`` meta-package, which is how
    CUDA 13 builds ask for cuBLAS, the runtime, NVRTC and the rest (``cuda-toolkit[cublas,cudart,...]``)."""
    from packaging.requirements import Requirement  # PyInstaller's own dependency

    names: list[str] = []
    for line in requires("torch") or []:
        req = Requirement(line)
        if not _applies(req):
            continue
        if req.name.lower().startswith("nvidia-"):
            names.append(req.name)
        elif req.name.lower() == "cuda-toolkit":
            for sub_line in requires(req.name) or []:
                sub = Requirement(sub_line)
                if sub.name.lower().startswith("nvidia-") and _applies(sub, req.extras):
                    names.append(sub.name)  # only what torch's extras select, not the whole toolkit
    return list(dict.fromkeys(names))


def library_destinations(files: Iterable[tuple[str | Path, str]]) -> list[tuple[str, str]]:
    """PyInstaller ``(file, destination folder)`` pairs for the shared libraries among ``files``, given as
    (absolute path, path relative to site-packages): each keeps its folder (``nvidia/cu13/lib``), which
    is where torch's RPATH and its own loader look."""
    found: dict[str, tuple[str, str]] = {}
    for absolute, relative in files:
        rel = Path(relative)
        # libcuda is the driver's (a stub of it would shadow the real one); stubs/ are for linking only
        if rel.name.startswith("libcuda.so") or "stubs" in rel.parts or "__pycache__" in rel.parts:
            continue
        if is_shared_library(rel.name):
            dest = rel.parent.as_posix() or "."
            found.setdefault(rel.as_posix(), (str(absolute), dest))
    return list(found.values())


def nvidia_binaries() -> list[tuple[str, str]]:
    """Every shared library of the nvidia-* distributions torch requires (empty for a CPU torch)."""
    from importlib import metadata

    files = []
    for name in torch_nvidia_requirements():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional extra that is not installed: torch runs without it
        files += [(dist.locate_file(f), str(f)) for f in (dist.files or [])]
    return library_destinations((path, rel) for path, rel in files if Path(path).is_file())
