"""P11: writing to an object store (a real S3 API on loopback: moto's server, s3fs as the
client), beside torch's ``SummaryWriter`` writing to the same server. Bytes sent to the
server (through a counting proxy, headers included) and time per flush, over 10, 100 and
1,000 flushes of one scalar each: ours uploads each flush's bytes once; torch's, through
TensorBoard's S3 writer, uploads the whole file again at every flush."""

from __future__ import annotations

import time

from tensorboard.compat.proto.summary_pb2 import Summary

import summary_hook as sh
from benchmarks.harness import Result
from benchmarks.s3 import CountingProxy, S3Server, s3_environment


def _ours(url: str, flushes: int) -> None:
    writer = sh.FileWriter(url)
    for step in range(flushes):
        writer.add_summary(Summary(value=[Summary.Value(tag="x", simple_value=step)]), step)
        writer.flush()
    writer.close()


def _torch(url: str, flushes: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(url)
    for step in range(flushes):
        writer.add_scalar("x", step, step)
        writer.flush()
    writer.close()


def measure(quick: bool, device: str) -> Result:
    counts = (10, 100) if quick else (10, 100, 1000)
    server = S3Server()
    # TensorBoard's S3 writer reads its endpoint once, at import: one proxy for the run.
    proxy = CountingProxy(server.port)
    rows: dict[str, dict[str, dict[str, float]]] = {"summary_hook": {}, "torch": {}}
    try:
        with s3_environment(proxy.url):
            server.make_bucket("bench")
            for flushes in counts:
                for name, write in (("summary_hook", _ours), ("torch", _torch)):
                    proxy.sent = 0
                    start = time.perf_counter()
                    write(f"s3://bench/{name}-{flushes}", flushes)
                    seconds = time.perf_counter() - start
                    rows[name][str(flushes)] = {
                        "bytes_sent": proxy.sent,
                        "bytes_per_flush": proxy.sent / flushes,
                        "ms_per_flush": seconds / flushes * 1e3,
                    }
    finally:
        proxy.close()
        server.stop()
    first, last = str(counts[0]), str(counts[-1])
    growth = {
        name: rows[name][last]["bytes_per_flush"] / rows[name][first]["bytes_per_flush"]
        for name in rows
    }
    ours, theirs = rows["summary_hook"][last], rows["torch"][last]
    return Result(
        "P11",
        f"object store (S3 API on loopback): {', '.join(map(str, counts))} flushes",
        ours["bytes_per_flush"],
        "bytes/flush",
        "linear: bytes per flush do not grow with the run (within 1.5x from the fewest "
        "flushes to the most)",
        growth["summary_hook"] < 1.5,
        {"by_writer": rows, "bytes_per_flush_growth": growth},
        f"at {last} flushes: {ours['bytes_sent']:,.0f} bytes sent "
        f"({ours['ms_per_flush']:.1f} ms/flush) against torch's {theirs['bytes_sent']:,.0f} "
        f"({theirs['ms_per_flush']:.1f} ms/flush); bytes per flush grew "
        f"{growth['summary_hook']:.2f}x for ours, {growth['torch']:.1f}x for torch's",
    )
