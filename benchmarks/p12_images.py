"""P12: a due step with 8 RGB 256x256 float images, as the training thread sees it (the
hook's PNG encoding happens in the writer's thread, timed apart), beside torch's
``SummaryWriter.add_images``, which converts and encodes them in the caller. Each due
step is timed alone, its encoding finished before the next, as between the due steps of
a training run."""

from __future__ import annotations

import statistics
import tempfile
import time

import torch

import summary_hook as sh
from benchmarks.harness import Result


def measure(quick: bool, device: str) -> Result:
    from torch.utils.tensorboard import SummaryWriter

    images = torch.rand(8, 3, 256, 256, generator=torch.Generator().manual_seed(0)).to(device)
    op = sh.image("samples", lambda: images, max_outputs=8, collections=[])
    with tempfile.TemporaryDirectory() as tmp:
        writer = sh.FileWriter(f"{tmp}/ours", max_queue=1000)
        hook = sh.SummarySaverHook(save_steps=1, summary_writer=writer, summary_op=op)
        theirs = SummaryWriter(f"{tmp}/torch", max_queue=1000)
        session = sh.MonitoredSession(hooks=[hook])
        samples: dict[str, list[float]] = {"summary_hook": [], "torch": [], "encoding": []}
        for step in range(6 if quick else 16):  # each due step alone, as in training
            start = time.perf_counter()
            session.run(lambda: None)
            middle = time.perf_counter()
            writer.flush()  # the writer's thread encodes the PNGs: not the training thread's
            end = time.perf_counter()
            theirs.add_images("samples", images, step)
            done = time.perf_counter()
            theirs.flush()
            if step:  # the first of each warms up
                samples["summary_hook"].append(middle - start)
                samples["encoding"].append(end - middle)
                samples["torch"].append(done - end)
        times = {name: statistics.median(values) for name, values in samples.items()}
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
            "writer_thread_encoding_ms": times["encoding"] * 1e3,
            "torch_add_images_ms": times["torch"] * 1e3,
        },
        f"{speedup:.1f}x faster than add_images ({times['torch'] * 1e3:.1f} ms), which "
        "encodes in the caller; the writer's thread then encodes for "
        f"{times['encoding'] * 1e3:.1f} ms",
    )
