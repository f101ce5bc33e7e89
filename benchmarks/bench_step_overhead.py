"""Per-step host overhead of our training session (Lightning, our callbacks, the loader) against a
bare PyTorch loop, with a tiny SegFormer on the CPU so compute is small and the host work shows.

At the small batches the tiers use (2-16 images) the GPU step is launch-bound, so host work per step caps throughput.

    python benchmarks/bench_step_overhead.py     # prints ms/step, writes benchmarks/results/bench_step_overhead.json
"""
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
import torch
torch.set_num_threads(1)
from engine_helpers import tiny_config, FakeDataModule
import tempfile
from medseg_gui.core.engine.session import TrainingSession
from medseg_gui.core.engine.losses import dice_ce_loss, upsample_logits
from medseg_gui.core.engine.model import build_model
from medseg_gui.core.data.normalize import to_model_input
import lightning as L

tmp = Path(tempfile.mkdtemp())
steps = 200
cfg = tiny_config(tmp, epochs=1, batch_size=2, max_steps_per_epoch=steps)
cfg.dataset.image_size = 32
# bare loop
model = build_model(cfg)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
x8 = torch.randint(0, 255, (2, 1, 32, 32), dtype=torch.uint8); m = torch.randint(0, 3, (2, 32, 32))
for i in range(20):
    loss = dice_ce_loss(upsample_logits(model(pixel_values=to_model_input(x8)).logits, (32, 32)), m, 3); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
t = time.perf_counter()
for i in range(steps):
    loss = dice_ce_loss(upsample_logits(model(pixel_values=to_model_input(x8)).logits, (32, 32)), m, 3); loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
bare = (time.perf_counter() - t) / steps
class T(L.Callback):
    def __init__(s): s.t = []
    def on_train_batch_end(s, *a): s.t.append(time.perf_counter())
timer = T()
TrainingSession(cfg, lambda e: None, datamodule_factory=FakeDataModule(n_train=2 * steps, n_val=2, size=32), callbacks=[timer]).run()
ts = timer.t[20:]
sess = (ts[-1] - ts[0]) / (len(ts) - 1)
print(f"bare loop {bare*1000:.2f} ms/step; session {sess*1000:.2f} ms/step; host overhead {(sess-bare)*1000:.2f} ms/step")
out = ROOT / "benchmarks" / "results" / "bench_step_overhead.json"
out.write_text(json.dumps({"benchmark": "step_overhead", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                           "device": "cpu", "threads": 1, "model": "tiny SegFormer (tests/engine_helpers)",
                           "image_size": 32, "batch": 2, "steps": steps, "bare_ms_per_step": bare * 1000,
                           "session_ms_per_step": sess * 1000, "overhead_ms_per_step": (sess - bare) * 1000}, indent=2))
print(f"wrote {out}")
