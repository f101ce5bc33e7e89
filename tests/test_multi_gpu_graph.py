"""Several GPUs, graphed step: our flat-bucket gradient average must be DDP's maths.

Two processes on gloo (CPU) run the real step code (WholeStepGraph._plain_step with a
FlatGradBucket, the path the CUDA graph captures) beside torch's DistributedDataParallel on the same
weights and data, and compare gradients and weights after each step. The same comparison with the
step captured as a CUDA graph and NCCL needs two GPUs (run on the lent 2-GPU machine).
"""

from __future__ import annotations

import os

import pytest

from spawn_ranks import spawn_ranks

from medseg_gui.core.planning import speed
def _model(seed: int, device: str):
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.GELU(),
                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 6 * 6, 4)).to(device)
    if device == "cuda":
        model.to(memory_format=torch.channels_last)  # strided weights: the grad views must match them
    return model


def _batches(rank: int, steps: int, device: str, batch: int = 4):
    import torch

    gen = torch.Generator().manual_seed(100 + rank)  # every rank its own data, as the sampler shards it
    return [(torch.randn(batch, 3, 6, 6, generator=gen).to(device),
             torch.randint(0, 4, (batch,), generator=gen).to(device)) for _ in range(steps)]


def _compare_with_ddp(rank: int, world: int, init_file: str, backend: str, graphed: bool) -> None:
    import torch
    import torch.distributed as dist

    device = "cuda" if backend == "nccl" else "cpu"
    if device == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        # one bucket reduced after the backward; buckets of ~100 bytes reduced from the hooks
        for bucket_mb in (None, 1e-4):
            _one_comparison(rank, device, graphed, bucket_mb)
    finally:
        dist.destroy_process_group()


def _one_comparison(rank: int, device: str, graphed: bool, bucket_mb: float | None) -> None:
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from medseg_gui.core.engine import step_graph
    from medseg_gui.core.engine.grad_sync import FlatGradBucket, broadcast_module_states

    # different initial weights per rank: both sides must start from rank 0's
    reference = _model(seed=rank, device=device)
    ddp = DistributedDataParallel(reference, device_ids=[rank] if device == "cuda" else None)
    ours = _model(seed=rank, device=device)  # rank 1 starts elsewhere until the broadcast
    broadcast_module_states(ours)
    for a, b in zip(reference.parameters(), ours.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    ref_opt = step_graph.graph_optimizer(reference.parameters(), 1e-2, 0.01, torch.device(device))
    our_opt = step_graph.graph_optimizer(ours.parameters(), 1e-2, 0.01, torch.device(device))
    step_graph.init_optimizer_state(our_opt)  # as the warm-up does: must not undo the grad views
    bucket = FlatGradBucket(ours.parameters(), bucket_mb=bucket_mb)
    assert bucket.numel == sum(p.numel() for p in ours.parameters())
    assert (len(bucket.buckets) == 1) == (bucket_mb is None)

    def loss_fn(module):
        return lambda x, y: torch.nn.functional.cross_entropy(module(x), y)

    graph = step_graph.WholeStepGraph(loss_fn(ours), our_opt, grad_sync=bucket,
                                      warmup_steps=step_graph.WARMUP_STEPS if graphed else 10**6)
    for x, y in _batches(rank, 6, device):
        ref_opt.zero_grad(set_to_none=True)
        ref_loss = loss_fn(ddp)(x, y)
        ref_loss.backward()
        if graphed:
            our_loss = graph.step(x, y)
            torch.cuda.synchronize()
        else:
            our_loss = graph._plain_step(x, y)  # the very code the CUDA graph captures
            # several buckets: the backward's hooks launched every one (overlap); one bucket: none
            assert bucket.launched_in_backward == (len(bucket.buckets) if bucket_mb else 0)
            for p, view in zip(ours.parameters(), bucket.views):
                assert p.grad is view  # gradients live in the one flat buffer
            for a, b in zip(reference.parameters(), ours.parameters()):
                torch.testing.assert_close(b.grad, a.grad, rtol=1e-6, atol=1e-7)
        ref_opt.step()
        torch.testing.assert_close(our_loss, ref_loss.detach(), rtol=1e-5, atol=1e-6)
        for a, b in zip(reference.parameters(), ours.parameters()):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    if graphed:
        assert graph.captured and graph.failed is None, graph.failed
        graph.release()  # before the process group: NCCL will not destroy a communicator a graph holds
    bucket.close()


@pytest.mark.slow
def test_flat_bucket_gradients_equal_ddp_on_two_gloo_processes(tmp_path):
    spawn_ranks(_compare_with_ddp, 2, 2, str(tmp_path / "rendezvous"), "gloo", False)


@pytest.mark.skipif("__import__('torch').cuda.device_count() < 2", reason="needs two CUDA GPUs")
def test_captured_step_with_nccl_all_reduce_trains_like_ddp(tmp_path):
    """The whole step, all-reduce included, captured as one CUDA graph on each of two GPUs."""
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    spawn_ranks(_compare_with_ddp, 2, 2, str(tmp_path / "rendezvous"), "nccl", True)


def test_several_gpus_keep_the_graph_under_ddp_and_name_other_strategies():
    plan = speed.plan_cuda_graphs("auto", on_cuda=True, devices=2)
    assert plan.enabled and "across 2 GPUs" in plan.reason
    assert speed.plan_cuda_graphs("auto", on_cuda=True, devices=8, strategy="ddp").enabled
    fsdp = speed.plan_cuda_graphs("auto", on_cuda=True, devices=2, strategy="fsdp")
    assert not fsdp.enabled and "'fsdp' strategy" in fsdp.reason
    # one process: the strategy does not matter (nothing to average)
    assert speed.plan_cuda_graphs("auto", on_cuda=True, devices=1, strategy="fsdp").enabled
    assert "across" not in speed.plan_cuda_graphs("auto", on_cuda=True).reason


@pytest.mark.slow  # imports lightning
def test_graph_strategy_does_not_wrap_in_ddp_and_says_it_owns_the_average():
    from lightning.pytorch.strategies import DDPStrategy

    from medseg_gui.core.engine.grad_sync import graph_ddp_strategy, owns_gradient_sync

    strategy = graph_ddp_strategy()
    assert isinstance(strategy, DDPStrategy) and owns_gradient_sync(strategy)
    assert not owns_gradient_sync(DDPStrategy())

    # --num-nodes reaches it through Lightning like the plain "ddp" string (nothing is launched here)
    import lightning as L

    trainer = L.Trainer(accelerator="cpu", devices=2, num_nodes=3, strategy=graph_ddp_strategy(), logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    assert owns_gradient_sync(trainer.strategy) and trainer.strategy.num_nodes == 3 and trainer.world_size == 6
