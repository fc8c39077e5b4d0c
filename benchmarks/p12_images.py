"""P12: a due step with 8 RGB 256x256 float images, as the training thread sees it (the
hook's PNG encoding happens in the writer's thread), beside torch's
``SummaryWriter.add_images``, which converts and encodes them in the caller."""

from __future__ import annotations

import tempfile

import torch

import summary_hook as sh
from benchmarks.harness import Result, median_times


def measure(quick: bool, device: str) -> Result:
    from torch.utils.tensorboard import SummaryWriter

    images = torch.rand(8, 3, 256, 256, generator=torch.Generator().manual_seed(0)).to(device)
    op = sh.image("samples", lambda: images, max_outputs=8, collections=[])
    with tempfile.TemporaryDirectory() as tmp:
        writer = sh.FileWriter(f"{tmp}/ours", max_queue=1000)
        hook = sh.SummarySaverHook(save_steps=1, summary_writer=writer, summary_op=op)
        theirs = SummaryWriter(f"{tmp}/torch", max_queue=1000)
        session = sh.MonitoredSession(hooks=[hook])
        step = [0]

        def ours() -> None:
            session.run(lambda: None)

        def torch_images() -> None:
            step[0] += 1
            theirs.add_images("samples", images, step[0])

        times = median_times({"summary_hook": ours, "torch": torch_images}, 5 if quick else 15)
        session.close()
        writer.close()
        theirs.close()
    speedup = times["torch"] / times["summary_hook"]
    return Result(
        "P12",
        f"due step with 8 RGB 256x256 images ({device}): time in the training thread",
        times["summary_hook"] * 1e3,
        "ms",
        "report, beside add_images",
        None,
        {
            "summary_hook_ms": times["summary_hook"] * 1e3,
            "torch_add_images_ms": times["torch"] * 1e3,
        },
        f"{speedup:.1f}x faster than add_images ({times['torch'] * 1e3:.1f} ms), which "
        "encodes in the caller; ours encodes in the writer's thread",
    )
