"""The built-in demo dataset: synthetic abdominal-MRI-like slices with three organ classes.

Why synthetic: a fresh install must be able to train at once, offline, without a licence question,
and the app ships no patient data. The generator is deterministic (same seed → same bytes), numpy
only, and fast (a few milliseconds a slice).

Each *case* is one synthetic patient; its slices are neighbours in a volume, so organ shapes drift
smoothly from slice to slice (which makes the case-wise split meaningful). Per slice:

* body: an ellipse of textured soft tissue with a bright subcutaneous-fat rim, outside it air;
* distractors labelled background: a large smooth liver-like blob, two kidney-like ellipses, a spine
  ring — all in the same intensity range as the organs, so intensity alone cannot separate classes;
* class 1 "stomach": a lobed blob with a dark wall and faint fold stripes (rugae);
* class 2 "small bowel": tortuous tubes (near-zero level set of a smooth random field, so the loops
  meander), a dark wall and a coarse mottled lumen;
* class 3 "large bowel": a thick C-shaped tube framing the abdomen with periodic dark haustral folds
  and bright speckle; lower slices open the C into two separate limbs;
* a multiplicative bias field (coil inhomogeneity) and Rician-like noise on top.

Class intensities are drawn per case from overlapping ranges; shape, position and texture tell the
classes apart, which is what a segmentation model has to learn.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from medseg_gui.core.atomic import make_temp_dir
from medseg_gui.core.paths import cache_dir

DEFAULT_SIZE = 256
DEFAULT_N = 240
SLICES_PER_CASE = 8
VALID_FRACTION = 0.2
GENERATOR_VERSION = 1  # bump when the output changes, so cached copies are regenerated
CLASS_NAMES = ("background", "stomach", "small_bowel", "large_bowel")
DEMO_INFO = "demo.json"


def _smooth_field(rng: np.random.Generator, size: int, corr: float) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ``corr`` (fraction of the image).

    Filtering white noise in Fourier space costs O(S² log S) and needs no scipy.
    """
    white = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    sigma = corr * size
    kernel = np.exp(-2.0 * (math.pi * sigma) ** 2 * (fx * fx + fy * fy))
    field = np.fft.irfft2(np.fft.rfft2(white) * kernel, s=(size, size))
    std = field.std()
    return (field / std if std > 0 else field).astype(np.float32)


def _blend(f0: np.ndarray, f1: np.ndarray, t: float) -> np.ndarray:
    """A field that moves smoothly with slice position ``t`` and keeps unit variance."""
    a = 0.5 * math.pi * t
    return math.cos(a) * f0 + math.sin(a) * f1


class _Case:
    """The random parameters of one synthetic patient; :meth:`render` draws slice ``t`` in [0, 1]."""

    def __init__(self, rng: np.random.Generator, size: int):
        u = rng.uniform
        self.size = size
        self.body_c = (0.5 + u(-0.02, 0.02), 0.52 + u(-0.02, 0.02))
        self.body_r = (u(0.43, 0.46), u(0.36, 0.39))
        self.liver_c = (0.30 + u(-0.03, 0.03), 0.36 + u(-0.03, 0.03))
        self.liver_r = (u(0.13, 0.17), u(0.10, 0.13))
        self.kidney_dx = u(0.18, 0.22)
        self.spine_c = (0.5 + u(-0.01, 0.01), 0.78 + u(-0.02, 0.01))
        self.stomach_c = (0.63 + u(-0.03, 0.03), 0.46 + u(-0.02, 0.02))
        self.stomach_r = u(0.105, 0.125)
        self.stomach_h = [(u(0.04, 0.14), u(0, 2 * math.pi), k) for k in (2, 3, 4)]
        self.stomach_drift = (u(-0.04, 0.04), u(-0.03, 0.03))
        self.rugae = (u(0, math.pi), u(25, 40))  # direction, cycles per image
        self.colon_c = (0.5 + u(-0.02, 0.02), 0.56 + u(-0.02, 0.02))
        self.colon_r = (u(0.32, 0.34), u(0.25, 0.27))
        self.colon_w = u(0.045, 0.055)
        self.haustra = (int(rng.integers(9, 14)), u(0, 2 * math.pi))
        self.sb_c = (0.45 + u(-0.03, 0.03), 0.66 + u(-0.02, 0.02))
        self.sb_r = (u(0.19, 0.22), u(0.13, 0.15))
        self.sb_w = u(0.032, 0.038)
        # Intensities (0..255 before bias and noise), overlapping on purpose.
        self.i_air = u(5, 20)
        self.i_body = u(70, 100)
        self.i_fat = u(170, 215)
        self.i_liver = u(110, 170)
        self.i_kidney = u(120, 185)
        self.i_spine = u(150, 210)
        self.i_stomach = u(125, 195)
        self.i_sb = u(125, 195)
        self.i_colon = u(110, 185)
        self.noise_sigma = u(3.0, 8.0)
        self.bias = (u(-0.25, 0.25), u(-0.25, 0.25), u(-0.2, 0.1))
        # Per-case fields, blended along the slice axis.
        self.fields = {name: (_smooth_field(rng, size, corr), _smooth_field(rng, size, corr))
                       for name, corr in (("sb", 0.035), ("tissue", 0.02), ("mottle", 0.006),
                                          ("coarse", 0.06), ("lobes", 0.08))}
        self.speckle = rng.random((size, size), dtype=np.float32)

    def render(self, t: float, noise_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s = self.size
        coords = (np.arange(s, dtype=np.float32) + np.float32(0.5)) / np.float32(s)
        x = coords[None, :]
        y = coords[:, None]
        f = {k: _blend(a, b, t) for k, (a, b) in self.fields.items()}
        img = np.full((s, s), self.i_air, dtype=np.float32)
        label = np.zeros((s, s), dtype=np.uint8)

        # Body with a fat rim; the outline wobbles a little with the "lobes" field.
        bx, by = self.body_c
        rho = np.sqrt(((x - bx) / self.body_r[0]) ** 2 + ((y - by) / self.body_r[1]) ** 2)
        rho = rho + 0.015 * f["lobes"]
        body = rho < 1.0
        img = np.where(body, self.i_body + 10.0 * f["tissue"] + 6.0 * f["mottle"], img)
        img = np.where(body & (rho > 0.90), self.i_fat + 8.0 * f["tissue"], img)

        # Distractors (background class, organ-like intensities).
        lx, ly = self.liver_c
        grow = 1.0 - 0.35 * t  # the liver shrinks towards lower slices
        liver = (((x - lx) / (self.liver_r[0] * grow)) ** 2 + ((y - ly) / (self.liver_r[1] * grow)) ** 2
                 + 0.12 * f["lobes"]) < 1.0
        vessels = np.abs(f["tissue"]) < 0.06
        img = np.where(liver & body, self.i_liver + 5.0 * f["coarse"] - 35.0 * vessels, img)
        for side in (-1.0, 1.0):
            kx = 0.5 + side * self.kidney_dx
            kidney = ((x - kx) / 0.055) ** 2 + ((y - 0.70) / 0.075) ** 2 < 1.0
            img = np.where(kidney & body, self.i_kidney + 8.0 * f["mottle"], img)
        sx, sy = self.spine_c
        sd = np.sqrt((x - sx) ** 2 + (y - sy) ** 2)
        img = np.where(sd < 0.05, self.i_spine, img)
        img = np.where(sd < 0.032, self.i_body * 0.7, img)

        # Large bowel: thick elliptical arc, open at the bottom; lower slices also open it at the top.
        cx, cy = self.colon_c
        rx, ry = self.colon_r
        dx, dy = (x - cx) / rx, (cy - y) / ry
        phi = np.arctan2(dy, dx)  # 0 = image right, pi/2 = top
        rad = np.sqrt(dx * dx + dy * dy)
        scale = np.sqrt((rx * np.cos(phi)) ** 2 + (ry * np.sin(phi)) ** 2)  # radial length of one unit
        wobble = 0.04 * f["coarse"]
        width = self.colon_w * (1.0 + 0.18 * np.cos(self.haustra[0] * phi + self.haustra[1]))
        dist = np.abs(rad - 1.0 - wobble) * scale
        lo, hi = math.radians(-35.0), math.radians(215.0)
        gap = math.radians(max(0.0, t - 0.55) * 160.0)
        arc = (phi >= lo) | (phi <= hi - 2 * math.pi)  # atan2 wraps at pi; 215 deg is -145 deg
        if gap > 0:
            arc &= np.abs(phi - math.pi / 2) > gap
        colon = arc & (dist < width) & body
        fold = np.cos(2 * self.haustra[0] * phi + self.haustra[1]) ** 8  # sharp dark folds across
        bright = self.speckle < 0.04
        colon_tex = self.i_colon * (1.0 - 0.45 * fold) + 45.0 * bright + 6.0 * f["mottle"]
        img = np.where(colon, colon_tex, img)
        label[colon] = 3

        # Stomach geometry first (small bowel must keep clear of it).
        stx = self.stomach_c[0] + self.stomach_drift[0] * t
        sty = self.stomach_c[1] + self.stomach_drift[1] * t
        st_r = self.stomach_r * (1.05 - 0.45 * abs(t - 0.35))
        ddx, ddy = x - stx, y - sty
        theta = np.arctan2(ddy, ddx)
        r_theta = st_r * (1.0 + sum(a * np.cos(k * theta + p) for a, p, k in self.stomach_h))
        st_d = np.sqrt(ddx * ddx + ddy * ddy)
        stomach = st_d < r_theta

        # Small bowel: near-zero level set of a smooth field, normalised by its gradient for even width.
        field = f["sb"]
        gy, gx = np.gradient(field, 1.0 / s)
        grad = np.sqrt(gx * gx + gy * gy) + 1e-6
        sdist = np.abs(field) / grad  # ~ distance to the zero curve, in image fractions
        region = ((x - self.sb_c[0]) / self.sb_r[0]) ** 2 + ((y - self.sb_c[1]) / self.sb_r[1]) ** 2 < 1.0
        keep_clear = (st_d < r_theta + 0.02) | (colon | (arc & (dist < width + 0.02)))
        sb = region & (sdist < self.sb_w) & ~keep_clear & body
        sb_wall = sdist > 0.65 * self.sb_w
        sb_tex = self.i_sb + 22.0 * f["mottle"] - 50.0 * sb_wall
        img = np.where(sb, sb_tex, img)
        label[sb] = 2

        # Stomach on top: lobed blob, dark wall, rugae stripes.
        direction, cycles = self.rugae
        stripes = np.cos(2 * math.pi * cycles * (x * math.cos(direction) + y * math.sin(direction)))
        wall = st_d > r_theta - 0.014
        st_tex = self.i_stomach + 12.0 * stripes + 4.0 * f["coarse"] - 60.0 * wall
        img = np.where(stomach, st_tex, img)
        label[stomach] = 1

        # Coil bias field, then Rician-like noise (magnitude of a complex signal plus noise).
        ax, ay, ar = self.bias
        bias = 1.0 + ax * (x - 0.5) + ay * (y - 0.5) + ar * ((x - 0.5) ** 2 + (y - 0.5) ** 2) * 4
        img = img * bias
        sigma = self.noise_sigma
        n = noise_rng.standard_normal((2, s, s), dtype=np.float32)
        img = np.sqrt((img + sigma * n[0]) ** 2 + (sigma * n[1]) ** 2)
        return np.clip(img, 0, 255).astype(np.uint8), label


def _case_slices(n: int) -> list[int]:
    """Slices per case: up to :data:`SLICES_PER_CASE` each, and at least 5 cases when n >= 5 so the
    case-wise 20 % validation share stays near 20 % for small n."""
    n_cases = max(min(n, 5), math.ceil(n / SLICES_PER_CASE))
    return [len(part) for part in np.array_split(np.arange(n), n_cases)]


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def generate_demo(dst: str | Path, n: int = DEFAULT_N, size: int = DEFAULT_SIZE, seed: int = 0) -> Path:
    """Write ``n`` slices of ``size`` px in the tutorial layout under ``dst`` and return ``dst``.

    ``dst/{train,valid}/{images,masks}/case{K}_slice{J}.png``; the last ~20 % of cases go to valid.
    Images are 8-bit grey, masks 8-bit class ids 0..3; ``dst/demo.json`` records the settings.
    ``dst`` must not exist or be empty (the generator never mixes its files into someone's folder).
    Everything is written into a hidden staging folder beside ``dst`` and renamed into place at the
    end, so an interrupted run leaves no half-written dataset.
    """
    if n < 2:
        raise ValueError(f"n={n}: the demo needs at least 2 slices (one for train, one for valid)")
    if not 32 <= size <= 2048:
        raise ValueError(f"size={size}: choose a side between 32 and 2048 px")
    dst = Path(dst).expanduser()
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise FileExistsError(f"{dst}: already exists and is not an empty folder; choose a new folder for the demo")
    dst.parent.mkdir(parents=True, exist_ok=True)
    stage = make_temp_dir(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
    try:
        _write_demo(stage, n, size, seed)
        if dst.exists():
            dst.rmdir()  # empty (checked above); os.replace cannot replace a folder on Windows
        os.replace(stage, dst)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return dst


def _write_demo(root: Path, n: int, size: int, seed: int) -> None:
    counts = _case_slices(n)
    n_valid = max(1, round(VALID_FRACTION * len(counts)))
    first_valid = len(counts) - n_valid
    for split in ("train", "valid"):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
    root_seq = np.random.SeedSequence([seed, GENERATOR_VERSION, size])
    for k, (count, case_seq) in enumerate(zip(counts, root_seq.spawn(len(counts))), start=1):
        case_rng, noise_rng = (np.random.default_rng(s) for s in case_seq.spawn(2))
        case = _Case(case_rng, size)
        split = "valid" if k - 1 >= first_valid else "train"
        for j in range(count):
            image, mask = case.render((j + 0.5) / count, noise_rng)
            name = f"case{k}_slice{j + 1:03d}.png"
            _save_png(root / split / "images" / name, image)
            _save_png(root / split / "masks" / name, mask)
    info = {"generator": "medseg demo", "version": GENERATOR_VERSION, "n": n, "size": size, "seed": seed,
            "cases": len(counts), "valid_cases": n_valid, "class_names": list(CLASS_NAMES)}
    (root / DEMO_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def demo_dataset(size: int = DEFAULT_SIZE, n: int = DEFAULT_N, seed: int = 0) -> Path:
    """The cached demo dataset for these settings under ``paths.cache_dir("demo")``, made on first use.

    :func:`generate_demo` stages and renames, so a crash never leaves a half-written entry; when two
    processes race, the loser's rename fails and it uses the winner's copy.
    """
    final = cache_dir("demo") / f"v{GENERATOR_VERSION}_s{size}_n{n}_seed{seed}"
    if (final / DEMO_INFO).exists():
        return final
    try:
        generate_demo(final, n=n, size=size, seed=seed)
    except OSError:
        if not (final / DEMO_INFO).exists():
            raise
    return final
