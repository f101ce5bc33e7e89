"""Seconds for the dataset validation report on a large folder of small files.

    python benchmarks/bench_validate.py [--pairs 5000] [--size 128]

Writes ``--pairs`` image/mask PNG pairs (so 2x as many files) in the flat layout with case ids into a
temporary folder, then times ``validate_dataset`` twice: with every mask decoded (the default) and
with a 500-mask sample. Prints the numbers and writes ``benchmarks/results/bench_validate.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench_loader import cpu_model  # noqa: E402
from results_io import write_results  # noqa: E402
from medseg_gui.core.data.demo import _Case  # noqa: E402
from medseg_gui.core.data.validate import validate_dataset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_validate.json"


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    # 16 distinct realistic slices, written many times over (generation is not what is measured).
    case = _Case(rng, args.size)
    samples = [case.render(t / 16, rng) for t in range(16)]
    encoded = [(_png(i), _png(m)) for i, m in samples]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_validate_") as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        (root / "masks").mkdir()
        for k in range(args.pairs):
            img, msk = encoded[k % len(encoded)]
            name = f"case{k // 40}_day0_slice_{k % 40:04d}.png"
            (root / "images" / name).write_bytes(img)
            (root / "masks" / name).write_bytes(msk)
        for label, kwargs in (("all masks decoded", {}), ("500-mask sample", {"mask_sample": 500})):
            start = time.perf_counter()
            report = validate_dataset(root, 4, **kwargs)
            elapsed = time.perf_counter() - start
            assert report.can_train, report.verdict
            rows.append({"mode": label, "files": 2 * args.pairs, "seconds": round(elapsed, 2),
                         "files_per_s": round(2 * args.pairs / elapsed), "masks_decoded": report.masks_checked})
            print(f"{label:>18}: {2 * args.pairs} files in {elapsed:.2f} s ({report.masks_checked} masks decoded)")
    result = {"benchmark": "validate_dataset on a flat folder", "cpu_model": cpu_model(),
              "cpu_count": os.cpu_count(), "image_size": args.size,
              "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "results": rows}
    write_results(args.out, result)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
