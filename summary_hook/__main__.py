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
from collections.abc import Callable
from typing import Any

from summary_hook._hooks.timer import checked_seconds, checked_steps

__all__ = ["main"]


def _period(name: str, parse: type[int] | type[float]) -> Callable[[str], Any]:
    """An argparse type for ``--<name>``: parsed, then checked as the API checks ``name``,
    so that both accept the same values and say the same thing of the rest."""
    check = checked_steps if parse is int else checked_seconds
    kind = "a positive integer" if parse is int else "a positive number of seconds"

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {kind}, got {text!r}") from None
        try:
            return check(name, value)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="summary-hook", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a small model and save summaries")
    demo.add_argument("--loop", choices=["lightning", "plain"], default="lightning")
    demo.add_argument(
        "--steps", type=_period("steps", int), default=300, help="optimizer steps (300)"
    )
    schedule = demo.add_mutually_exclusive_group()
    schedule.add_argument(
        "--save-steps", type=_period("save_steps", int), help="save every N steps (10)"
    )
    schedule.add_argument(
        "--save-secs", type=_period("save_secs", float), help="save every S seconds"
    )
    demo.add_argument("--output-dir", default=os.path.join("runs", "demo"))
    demo.add_argument("--no-plot", action="store_true", help="do not write summaries.png")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    show = commands.add_parser("show", help="print what a TensorBoard log directory holds")
    show.add_argument("logdir")
    show.add_argument("--plot", metavar="OUT.png", help="also draw the curves into a PNG")
    return parser


def _show(logdir: str, plot_path: str | None) -> bool:
    """Print what ``logdir`` holds, and plot it into ``plot_path``; False when the plot
    could not be drawn for want of matplotlib (said on standard error)."""
    from summary_hook.readback import format_table, plot, summarize

    print(format_table(summarize(logdir)))
    if plot_path:
        try:
            print(f"\nplot: {plot(logdir, plot_path)}")
        except ImportError as error:
            print(f"summary-hook: no plot: {error}", file=sys.stderr)
            return False
    return True


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
            )  # the demo's plot is a bonus: without matplotlib the run still succeeded
            command = f"tensorboard --logdir {shlex.quote(config.output_dir)}"
            print(f"\nOpen them in TensorBoard:\n  {command}")
        elif not _show(args.logdir, args.plot):
            return 1  # the plot asked for was not drawn
    except (FileNotFoundError, ValueError) as error:
        print(f"summary-hook: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
