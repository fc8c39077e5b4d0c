"""``summary-hook``: the demo job and a reader for any TensorBoard log directory.

summary-hook demo [--loop lightning|plain] [--steps N] [--save-steps N | --save-secs S]
                  [--output-dir DIR] [--no-plot]
summary-hook show LOGDIR [--plot OUT.png]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="summary-hook", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a small model and save summaries")
    demo.add_argument("--loop", choices=["lightning", "plain"], default="lightning")
    demo.add_argument("--steps", type=_positive_int, default=300, help="optimizer steps (300)")
    schedule = demo.add_mutually_exclusive_group()
    schedule.add_argument("--save-steps", type=_positive_int, help="save every N steps (10)")
    schedule.add_argument("--save-secs", type=_positive_float, help="save every S seconds")
    demo.add_argument("--output-dir", default=os.path.join("runs", "demo"))
    demo.add_argument("--no-plot", action="store_true", help="do not write summaries.png")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    show = commands.add_parser("show", help="print what a TensorBoard log directory holds")
    show.add_argument("logdir")
    show.add_argument("--plot", metavar="OUT.png", help="also draw the curves into a PNG")
    return parser


def _show(logdir: str, plot_path: str | None) -> None:
    from summary_hook.readback import format_table, plot, summarize

    print(format_table(summarize(logdir)))
    if plot_path:
        print(f"\nplot: {plot(logdir, plot_path)}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from summary_hook._demo import DemoConfig, run_demo

            config = DemoConfig(
                output_dir=args.output_dir,
                steps=args.steps,
                save_steps=None if args.save_secs else (args.save_steps or 10),
                save_secs=args.save_secs,
                loop=args.loop,
                progress=not args.no_progress,
            )
            run_demo(config)
            print(f"\nSummaries written to {os.path.abspath(config.output_dir)}\n")
            _show(
                config.output_dir,
                None if args.no_plot else os.path.join(config.output_dir, "summaries.png"),
            )
            command = f"tensorboard --logdir {shlex.quote(config.output_dir)}"
            print(f"\nOpen them in TensorBoard:\n  {command}")
        else:
            _show(args.logdir, args.plot)
    except (FileNotFoundError, ValueError) as error:
        print(f"summary-hook: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
