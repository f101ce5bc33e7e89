"""The speed card: images/s, ms per step, peak VRAM and the time an epoch and the run will take,
beside the recommendation. Before a benchmark has run on this card it shows the bandwidth-scaled
estimate, labelled as such; "Run benchmark" measures real steps on the user's data (in a Task)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from medseg_gui.core import config as cfg
from medseg_gui.core.tools.benchmark import BenchmarkResult
from medseg_gui.core.words import format_duration, plural
from medseg_gui.gui import style
from medseg_gui.gui.state import AppState
from medseg_gui.gui.workers import Task

Benchmarker = Callable[..., BenchmarkResult]  # run_benchmark(config, steps=, progress=, stop_event=)
KnownSpeed = Callable[..., BenchmarkResult | None]  # known_speed(config, gpu, train_images, val_images)


def default_benchmarker(config: cfg.RunConfig, **kwargs: Any) -> BenchmarkResult:
    from medseg_gui.core.tools.benchmark import run_benchmark

    return run_benchmark(config, **kwargs)


def default_known(config: cfg.RunConfig, gpu: Any, train_images: int | None, val_images: int | None):
    from medseg_gui.core.tools.benchmark import known_speed

    return known_speed(config, gpu, train_images, val_images)


PRECISION_WORDS = {"32": "32-bit precision", "16-mixed": "16-bit mixed precision",
                   "bf16-mixed": "bf16 mixed precision", "64": "64-bit precision"}


def precision_words(precision: str) -> str:
    """"32" alone reads as a mystery number next to the batch size; say what it is."""
    return PRECISION_WORDS.get(str(precision), f"precision {precision}")


def dataset_sizes(state: AppState) -> tuple[int | None, int | None]:
    """Train/valid sizes the state knows (the data summary); valid guessed from the split share if needed."""
    summary = state.dataset_summary
    train = getattr(summary, "train_images", None) if summary is not None else None
    if not train:
        return None, None
    share = state.config.dataset.val_fraction
    return int(train), int(round(train * share / max(1e-6, 1 - share)))


class SpeedCard(QFrame):
    def __init__(self, state: AppState, benchmarker: Benchmarker | None = None, known: KnownSpeed | None = None,
                 steps: int = 20, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.benchmarker = benchmarker or default_benchmarker
        self.known = known or default_known
        self.steps = steps
        self.result: BenchmarkResult | None = None
        self.job: Task | None = None
        self._key: tuple | None = None
        self.setProperty("card", True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        head = QHBoxLayout()
        title = QLabel("Speed and time")
        title.setProperty("role", "cardTitle")
        title.setFont(style.scaled_font(self.font(), 1.15, bold=True))
        head.addWidget(title)
        self.badge = QLabel("")
        head.addWidget(self.badge)
        head.addStretch(1)
        layout.addLayout(head)
        self.figures = QLabel("No figures yet.")
        self.figures.setWordWrap(True)
        layout.addWidget(self.figures)
        self.basis = QLabel("")
        self.basis.setWordWrap(True)
        self.basis.setProperty("role", "muted")
        layout.addWidget(self.basis)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run benchmark")
        self.run_button.setToolTip(f"Time {steps} real training steps of the current configuration on your data")
        self.run_button.clicked.connect(self.run)
        row.addWidget(self.run_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.cancel_button)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        row.addWidget(self.progress, 1)
        row.addStretch(0)  # the button keeps its size while the bar is hidden
        layout.addLayout(row)
        state.config_changed.connect(lambda _c: self.refresh())
        state.snapshot_changed.connect(lambda _s: self.refresh())
        self.refresh()

    def _gpu(self) -> Any:
        snap = self.state.snapshot
        if snap is None or not snap.gpus or self.state.config.training.accelerator == "cpu":
            return None
        from medseg_gui.core.gpu_identity import GpuSelectionError, training_gpu

        tr = self.state.config.training
        try:  # the card the run will train on (training.gpus), as the session picks it
            return training_gpu(snap, tr.gpus, tr.devices)
        except GpuSelectionError:  # the configured card is missing: the pre-flight checklist says so
            return None

    def refresh(self, force: bool = False) -> None:
        """Show the cached measurement for this card + config, or the estimate (only when either changed)."""
        if self.job is not None and self.job.is_running():
            return
        gpu = self._gpu()
        train, val = dataset_sizes(self.state)
        key = (str(self.state.config.to_dict()), None if gpu is None else gpu.name, train)
        if key == self._key and not force:
            return
        self._key = key
        self.show_result(self.known(self.state.config, gpu, train, val))

    def show_result(self, result: BenchmarkResult | None) -> None:
        self.result = result
        if result is None:
            self.badge.setText("")
            self.figures.setText("No measurement yet" + ("" if self._gpu() is not None else " (no GPU to estimate "
                                 "from)") + ". Run the benchmark to time this configuration on your data.")
            self.basis.setText("")
            return
        measured = result.kind == "measured"
        fg, bg = (style.OK_TEXT, style.OK_BG) if measured else (style.WARN_TEXT, style.WARN_BG)
        self.badge.setText("measured" if measured else "estimate")
        self.badge.setStyleSheet(f"color:{fg}; background:{bg}; border-radius:3px; padding:1px 6px")
        lines = [f"<b>{result.images_per_s:.1f}</b> images/s · <b>{result.ms_per_step:.0f}</b> ms per step"
                 f" (batch {result.batch_size}, {result.image_size} px, {precision_words(result.precision)})"]
        if result.peak_vram_gb is not None:
            vram = f"Peak VRAM {result.peak_vram_gb:.2f} GB"
            if result.device_used_gb is not None:
                vram += f" ({result.device_used_gb:.2f} GB on the card)"
            lines.append(vram)
        if result.time is not None:
            t = result.time
            lines.append(f"Per epoch <b>{format_duration(t.epoch_s)}</b> · whole run ({plural(t.epochs, 'epoch')}) "
                         f"<b>{format_duration(t.run_s)}</b>")
        else:
            lines.append("Time per epoch: choose a dataset (or run the benchmark) to know its size.")
        if result.bottleneck and measured:
            lines.append(f"Bottleneck: {result.bottleneck}")
        self.figures.setText("<br>".join(lines))
        self.basis.setText(("On " + result.device + ". ") + result.basis)

    def run(self) -> None:
        if self.job is not None and self.job.is_running():
            return
        config = self.state.config.copy()
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.cancel_button.setVisible(True)
        self.run_button.setEnabled(False)
        self.basis.setText("Benchmarking: building the model and the data loader…")
        job = Task(lambda progress, stop: self.benchmarker(config, steps=self.steps, progress=progress,
                                                              stop_event=stop), "benchmark", self)
        job.progressed.connect(self._progressed)
        job.succeeded.connect(self._measured)
        job.failed.connect(lambda message, detail: self.basis.setText(f"The benchmark failed: {message}"))
        job.cancelled.connect(lambda: self.basis.setText("Benchmark cancelled."))
        job.ended.connect(self._ended)
        self.job = job
        job.start()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def set_enabled_for_training(self, training: bool) -> None:
        """A benchmark beside a running training run would measure neither: disable it meanwhile."""
        self.run_button.setEnabled(not training and not (self.job is not None and self.job.is_running()))
        self.run_button.setToolTip("Not while training is running" if training else
                                   f"Time {self.steps} real training steps of the current configuration")

    def _progressed(self, done: int, total: int) -> None:
        """The bar follows the timed steps; once they are done, validation is timed (no count): busy."""
        if done >= total:
            self.progress.setRange(0, 0)
            self.basis.setText("Benchmarking: timing a few validation batches…")
            return
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.basis.setText(f"Benchmarking: training step {done} of {total}…")

    def _measured(self, result: BenchmarkResult) -> None:
        self._key = None
        self.show_result(result)

    def _ended(self) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.run_button.setEnabled(True)
