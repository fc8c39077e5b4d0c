"""A Hugging Face user's script: a tiny GPT-2 built from a config (nothing downloaded),
trained by ``transformers.Trainer`` with gradient accumulation and a
``SummarySaverCallback``, in a fresh process or under ``torchrun`` on CPU processes.

Usage: python huggingface_run.py OUT        (or: torchrun --nproc_per_node 2 ... OUT)
Writes the run under OUT/trainer, and OUT/grads-<rank>.json: each optimizer step's
squared norm of one gradient as the optimizer used it, and how often each summary
function ran, for the test to compare with what was written.
"""

import json
import os
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

import summary_hook as sh
from summary_hook.huggingface import SummarySaverCallback

OUT = sys.argv[1]
RANK = int(os.environ.get("RANK", "0"))
PARAMETER = "transformer.h.0.mlp.c_fc.weight"


class Tokens(torch.utils.data.Dataset):
    def __init__(self, count):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 64, (count, 16), generator=generator)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


class RecordGradients(TrainerCallback):
    """What the optimizer used, step by step: read before the summary callback's turn."""

    def __init__(self, model):
        self.model = model
        self.squares = {}

    def on_optimizer_step(self, args, state, control, **kwargs):
        grad = self.model.get_parameter(PARAMETER).grad
        self.squares[state.global_step + 1] = float(grad.double().pow(2).sum())


torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2))
calls = {"loss": 0}


def loss(out):
    calls["loss"] += 1
    return out["loss"]


sh.scalar("summary/model_loss", loss)
sh.watch(model, include=r"h\.0\.mlp", norms=True)
recorder = RecordGradients(model)
args = TrainingArguments(
    output_dir=os.path.join(OUT, "trainer"),
    max_steps=7,
    per_device_train_batch_size=2,
    gradient_accumulation_steps=3,
    logging_steps=2,
    learning_rate=1e-3,
    save_strategy="no",
    use_cpu=True,
    ddp_backend="gloo" if "RANK" in os.environ else None,
    dataloader_num_workers=0,
    disable_tqdm=True,
)
trainer = Trainer(
    model=model,
    args=args,
    train_dataset=Tokens(96),
    callbacks=[recorder, SummarySaverCallback(save_steps=3)],
)
trainer.train()
with open(os.path.join(OUT, f"grads-{RANK}.json"), "w") as f:
    json.dump({"squares": recorder.squares, "calls": calls}, f)
