"""Train a SegFormer-b0 on the built-in demo dataset and save it as a bundle (for the viewer screenshot).

A plain loop, not the engine's session: the screenshot only needs a model that segments the demo's
organs, made quickly on whatever machine is at hand (a GPU takes a few minutes; CPU works, slowly).

    python benchmarks/train_demo_model.py OUT_BUNDLE [--size 256] [--steps 3000] [--n 240]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    files = sorted((root / split / "images").glob("*.png"))
    images = np.stack([np.asarray(Image.open(f)) for f in files])
    masks = np.stack([np.asarray(Image.open(root / split / "masks" / f.name)) for f in files])
    return images, masks


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from transformers import SegformerForSemanticSegmentation

    from medseg_gui.core import config as cfg
    from medseg_gui.core.engine.bundle import save_bundle
    from medseg_gui.core.data.demo import CLASS_NAMES, generate_demo
    from medseg_gui.core.data.normalize import to_model_input
    from medseg_gui.core.engine.model import scratch_config
    from medseg_gui.core.imaging.seg_metrics import class_scores

    device = "cuda" if torch.cuda.is_available() else "cpu"
    root = generate_demo(Path(tempfile.mkdtemp()) / "demo", n=args.n, size=args.size)
    ti, tm = load_split(root, "train")
    vi, vm = load_split(root, "valid")
    print(f"train {len(ti)} valid {len(vi)} size {args.size} on {device}", flush=True)
    config = cfg.RunConfig()
    cfg.set_num_classes(config, len(CLASS_NAMES), list(CLASS_NAMES))
    config.dataset.image_size = args.size
    config.training.variant = "b0"
    torch.manual_seed(0)
    id2label = dict(enumerate(CLASS_NAMES))
    model = SegformerForSemanticSegmentation(scratch_config("b0", len(CLASS_NAMES), id2label)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=6e-4, total_steps=args.steps, pct_start=0.05)
    images = torch.from_numpy(ti).to(device)
    masks = torch.from_numpy(tm).long().to(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    t0 = time.time()
    model.train()
    for step in range(args.steps):
        idx = torch.randint(0, len(images), (args.batch,), generator=g).to(device)
        x, y = images[idx][:, None], masks[idx]
        if torch.rand(1, generator=g).item() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(pixel_values=to_model_input(x)).logits
        logits = F.interpolate(logits.float(), size=y.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
    model.eval()
    with torch.inference_mode():
        preds = []
        for i in range(0, len(vi), 16):
            x = torch.from_numpy(vi[i:i + 16]).to(device)[:, None]
            lg = model(pixel_values=to_model_input(x)).logits
            preds.append(F.interpolate(lg, size=x.shape[-2:], mode="bilinear").argmax(1).cpu().numpy())
    s = class_scores(np.concatenate(preds), vm, len(CLASS_NAMES))
    print("valid dice", {n: round(float(d), 3) for n, d in zip(CLASS_NAMES, s.dice)}, flush=True)
    save_bundle(model.cpu(), config, args.out, in_channels_hint=1)
    print(f"saved {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
