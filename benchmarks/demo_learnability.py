"""Is the demo dataset learnable? SegFormer-b0 from scratch, a CPU-sized budget of steps, val Dice.

    python benchmarks/demo_learnability.py [--size 128] [--epochs 20] [--batch 8] [--device cuda]

A stand-alone check of the demo generator (no albumentations, flips only, no Lightning) so it can
run anywhere torch + transformers are installed. It mimics what a few minutes of CPU training see:
~20 epochs of the default 240-slice demo at 128 px. Prints per-class and macro Dice on the
validation cases and writes ``benchmarks/results/demo_learnability.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from medseg_gui.core.data.decode import read_image, read_mask  # noqa: E402
from medseg_gui.core.data.demo import generate_demo  # noqa: E402
from medseg_gui.core.data.formats import index_dataset  # noqa: E402
from medseg_gui.core.data.normalize import to_model_input  # noqa: E402


def load(pairs):
    images = np.stack([read_image(p.image) for p in pairs])[:, None]
    masks = np.stack([read_mask(p.mask) for p in pairs])
    return torch.from_numpy(images), torch.from_numpy(masks)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=6e-4)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "demo_learnability.json")
    args = ap.parse_args()
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        idx = index_dataset(generate_demo(Path(tmp) / "demo", n=args.n, size=args.size))
        xt, yt = load(idx.train)
        xv, yv = load(idx.valid)
    dev = torch.device(args.device)
    cfg = SegformerConfig(num_labels=4, depths=[2, 2, 2, 2], hidden_sizes=[32, 64, 160, 256],
                          decoder_hidden_size=256)
    model = SegformerForSemanticSegmentation(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    steps = args.epochs * (len(xt) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    xt, yt, xv, yv = xt.to(dev), yt.to(dev), xv.to(dev), yv.to(dev)

    def logits_of(x):
        out = model(pixel_values=to_model_input(x)).logits
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)

    start = time.perf_counter()
    history = []
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xt), device=dev)
        for i in range(len(xt) // args.batch):
            b = perm[i * args.batch:(i + 1) * args.batch]
            x, y = xt[b], yt[b].long()
            if torch.rand(()) < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            if torch.rand(()) < 0.5:
                x, y = x.flip(-2), y.flip(-2)
            logits = logits_of(x)
            prob = logits.softmax(1)
            onehot = F.one_hot(y, 4).permute(0, 3, 1, 2).float()
            inter = (prob * onehot).sum((0, 2, 3))
            dice = (2 * inter + 1) / (prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1)
            loss = F.cross_entropy(logits, y) + (1 - dice.mean())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([logits_of(xv[i:i + 32]).argmax(1) for i in range(0, len(xv), 32)])
        d = [float(2 * ((pred == c) & (yv == c)).sum() / ((pred == c).sum() + (yv == c).sum())) for c in range(4)]
        history.append({"epoch": epoch + 1, "loss": round(loss.item(), 4), "dice": [round(v, 4) for v in d],
                        "macro_dice": round(float(np.mean(d)), 4), "macro_dice_fg": round(float(np.mean(d[1:])), 4)})
        print(history[-1], flush=True)
    result = {"device": str(dev), "size": args.size, "n": args.n, "epochs": args.epochs, "batch": args.batch,
              "train": len(xt), "valid": len(xv), "seconds": round(time.perf_counter() - start, 1),
              "model": "segformer-b0 from scratch", "final": history[-1], "history": history}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
