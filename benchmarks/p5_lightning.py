"""P5: what SummarySaver adds to a Lightning step, beside self.log with a TensorBoardLogger
and beside a callback whose hooks do nothing."""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from typing import Any

import torch

import summary_hook as sh
from benchmarks.harness import Result


def p5_lightning(repeats: int, steps: int, root: str) -> Result:
    import logging

    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader, TensorDataset

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    data = TensorDataset(torch.randn(steps * 4, 8), torch.randn(steps * 4, 1))

    class Model(L.LightningModule):
        def __init__(self, mode: str) -> None:
            super().__init__()
            self.net = torch.nn.Linear(8, 1)
            self.mode = mode
            if mode.startswith("hook"):
                for i in range(10):
                    sh.scalar(f"m/{i}", lambda out, i=i: out["loss"] * i)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            if self.mode == "self.log":
                for i in range(10):
                    self.log(f"m/{i}", loss * i)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class StepClock(L.Callback):
        """Times the steps alone: from batch ``warmup`` to the end of training, first
        in the callback list, so set-up and tear-down (opening and closing files,
        Lightning's own) are not spread over the steps."""

        warmup = min(10, steps // 2)

        def __init__(self) -> None:
            self.start = self.stop = 0.0

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, index: int) -> None:
            if index == self.warmup:
                self.start = time.perf_counter()

        def on_train_end(self, trainer: Any, module: Any) -> None:
            self.stop = time.perf_counter()

    class EmptyCallback(L.Callback):
        """What Lightning charges for calling any callback's hooks on every step."""

        def on_train_batch_start(self, *args: Any) -> None:
            pass

        def on_train_batch_end(self, *args: Any) -> None:
            pass

    def fit(mode: str) -> float:
        sh.clear_collection()
        tmp = tempfile.mkdtemp(dir=root)
        clock = StepClock()
        callbacks: list[L.Callback] = [clock]
        logger: Any = False
        if mode == "hook(save_steps=1)":
            callbacks.append(sh.SummarySaver(save_steps=1, output_dir=tmp))
        elif mode == "hook(save_steps=100)":
            callbacks.append(sh.SummarySaver(save_steps=100, output_dir=tmp))
        elif mode == "empty callback":
            callbacks.append(EmptyCallback())
        elif mode == "self.log":
            logger = TensorBoardLogger(tmp)
        trainer = L.Trainer(
            max_steps=steps,
            accelerator="cpu",
            logger=logger,
            log_every_n_steps=1,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=callbacks,
        )
        trainer.fit(Model(mode), DataLoader(data, batch_size=4))
        sh.SummaryWriterCache.clear()
        return (clock.stop - clock.start) / (steps - clock.warmup)

    modes = ["none", "empty callback", "hook(save_steps=1)", "self.log", "hook(save_steps=100)"]
    samples: dict[str, list[float]] = {m: [] for m in modes}
    fit("none")  # warm up
    for _ in range(repeats):
        for mode in modes:  # interleaved, so drift hits every mode alike
            samples[mode].append(fit(mode))
    per_step = {m: statistics.median(v) for m, v in samples.items()}
    noise = statistics.pstdev(samples["none"]) * 1e6
    added = {m: (per_step[m] - per_step["none"]) * 1e6 for m in modes}
    ratio = (
        added["hook(save_steps=1)"] / added["self.log"] if added["self.log"] > 0 else float("inf")
    )
    # Lightning calls every hook of every callback on every step; what any callback
    # costs is Lightning's, so the hook's own part is measured against that.
    beyond_callback = added["hook(save_steps=100)"] - added["empty callback"]
    quiet = abs(beyond_callback) <= max(2 * noise, 0.02 * per_step["none"] * 1e6)
    return Result(
        "P5",
        "Lightning: per-step cost added, hook ÷ self.log+TensorBoardLogger",
        ratio,
        "ratio",
        "≤ 1/3; save_steps=100 within noise of no logging",
        ratio <= 1 / 3 and quiet,
        {
            "per_step_us": {m: v * 1e6 for m, v in per_step.items()},
            "added_us": added,
            "save_steps_100_beyond_an_empty_callback_us": beyond_callback,
            "noise_us": noise,
            "steps": steps,
        },
        f"+{added['hook(save_steps=1)']:.0f} µs vs +{added['self.log']:.0f} µs a step; "
        f"save_steps=100 +{added['hook(save_steps=100)']:.1f} µs, an empty callback "
        f"+{added['empty callback']:.1f} µs, noise {noise:.1f} µs",
    )


def measure(quick: bool, device: str) -> Result:
    with tempfile.TemporaryDirectory() as root, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's hints about the tiny setup
        return p5_lightning(1 if quick else 5, steps=20 if quick else 1000, root=root)
