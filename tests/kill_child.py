"""A plain training loop that tests/test_hard_kill.py kills with SIGKILL at random moments.

It prints "flushed N" after each explicit flush, so the parent knows what must survive.
Usage: python tests/kill_child.py LOGDIR
"""

from __future__ import annotations

import sys

import torch

import summary_hook as sh


def main(logdir: str) -> None:
    writer = sh.FileWriter(logdir, flush_secs=0.02)  # a small flush_secs tightens the loss bound
    loss = sh.scalar("loss", lambda out: out, collections=[])
    weights = sh.histogram("weights", lambda: torch.randn(2000), collections=[])
    summary_op = sh.merge([loss, weights])
    hook = sh.SummarySaverHook(save_steps=1, summary_writer=writer, summary_op=summary_op)
    with sh.MonitoredSession(hooks=[hook]) as sess:
        print("ready", flush=True)
        while True:
            sess.run(lambda: float(sess.global_step + 1))  # the loss value is the step
            if sess.global_step % 25 == 0:
                writer.flush()
                print(f"flushed {sess.global_step}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
