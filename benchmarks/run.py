"""Benchmarks: summary_hook beside torch.utils.tensorboard, tensorboardX and a raw baseline.

Each measurement is a module here (``p1_scalars`` ... ``p12_images``) with its own
set-up and clean-up; memory (P6), import time (P8) and the two ranks of P10 run in
processes of their own.
Contenders of a measurement take turns, repeat by repeat, so that ratios compare like
with like on a shared, noisy machine; each reports the median of its repeats.

    python benchmarks/run.py                  # full run: table, and benchmarks/results.json
    python benchmarks/run.py --only P1,P3     # some measurements
    python benchmarks/run.py --quick          # a fast smoke run (writes no JSON unless --json)
    python benchmarks/run.py --device cuda    # tensors on a GPU (P1, P2, P4, P9 and P13)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # ``benchmarks.*`` when run as a script

import torch  # noqa: E402

from benchmarks.harness import format_results, machine  # noqa: E402

MEASUREMENTS = {
    "P1": "p1_scalars",
    "P2": "p2_histogram",
    "P3": "p3_non_due",
    "P4": "p4_transfers",
    "P5": "p5_lightning",
    "P6": "p6_memory",
    "P7": "p7_payload",
    "P8": "p8_import",
    "P9": "p9_model_step",
    "P10": "p10_distributed",
    "P11": "p11_remote",
    "P12": "p12_images",
    "P13": "p13_many_tensors",
    "P14": "p14_watched_non_due",
}


def parse_only(text: str) -> list[str]:
    ids = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [i for i in ids if i not in MEASUREMENTS]
    if unknown or not ids:
        raise argparse.ArgumentTypeError(
            f"--only takes ids from {', '.join(MEASUREMENTS)}, got {text!r}"
        )
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    parser.add_argument("--device", default="cpu", help="device for P1, P2, P4, P9 and P13 tensors")
    parser.add_argument("--only", type=parse_only, help="comma-separated ids, e.g. P1,P3")
    parser.add_argument(
        "--json",
        help="where to write the numbers (default: benchmarks/results.json for a full "
        "run of every measurement; none for --quick or --only)",
    )
    args = parser.parse_args(argv)
    ids = args.only or list(MEASUREMENTS)
    path = args.json
    if path is None and not args.quick and args.only is None:
        path = os.path.join(HERE, "results.json")
    torch.manual_seed(0)
    results = []
    for id_ in ids:
        module = importlib.import_module(f"benchmarks.{MEASUREMENTS[id_]}")
        results.append(module.measure(args.quick, args.device))
    print(format_results(results))
    if path is not None:
        report = {
            "date": time.strftime("%Y-%m-%d"),
            "quick": args.quick,
            "device": args.device,
            "machine": machine(),
            "results": [dataclasses.asdict(r) for r in results],
        }
        with open(path, "w") as out:
            json.dump(report, out, indent=2)
        print(f"\nnumbers written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
