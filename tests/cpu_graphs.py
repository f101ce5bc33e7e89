"""A CPU stand-in for the whole-step CUDA graphs, for tests and benchmark dry runs without a GPU.

Why: the graphed step's bookkeeping (warm-up, capture at a cycle's start, the micro and last graphs
of an accumulation cycle, static buffers, the loss written into a static tensor) must be testable
where no CUDA exists. Warm-up runs on the one CPU stream; "capture" records each graph as a closure
that reruns the captured step on the static buffers and writes its loss into the static loss tensor,
which is what a CUDA graph does minus the GPU. ``replays`` counts the replays of each graph.
"""

from __future__ import annotations

import torch

from medseg_gui.core.engine import step_graph


class CpuGraphs(step_graph.WholeStepGraph):
    def _side_stream_step(self, images, masks, last=True):
        return self._plain_step(images, masks, last)

    def _capture(self, images, masks, last=True):
        static = (images.clone(), masks.clone())
        self.replays = {"micro": 0, "last": 0}

        def recorder(kind):
            holder = torch.zeros(())

            class Replay:
                def replay(inner):
                    holder.copy_(self._plain_step(*static, last=kind == "last"))
                    self.replays[kind] += 1

            return Replay(), holder

        self.graph, self._static_loss = recorder("last")
        if self.accumulate > 1:
            self.micro_graph, self._micro_loss = recorder("micro")
        self._static = static
        graph, loss = (self.graph, self._static_loss) if last else (self.micro_graph, self._micro_loss)
        graph.replay()
        return loss
