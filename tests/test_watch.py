"""sh.watch: a whole model's weights, gradients and norms, checked against numpy."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

import summary_hook as sh
from summary_hook._evaluation.histogram import BUCKET_LIMITS


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.LayerNorm(5), torch.nn.Linear(5, 2)
    )


def backward(net: torch.nn.Module) -> None:
    net(torch.randn(8, 6, generator=torch.Generator().manual_seed(1))).pow(2).sum().backward()


def values(op: sh.SummaryOp) -> dict[str, object]:
    return {v.tag: v for v in sh.evaluate(op).value}


def numpy_histogram(array: np.ndarray) -> dict[float, float]:
    """TensorFlow's buckets of ``array``: bucket i holds limits[i-1] <= x < limits[i]."""
    index = np.searchsorted(np.asarray(BUCKET_LIMITS), array.astype(np.float64), side="right")
    limits, counts = np.unique(index, return_counts=True)
    return {BUCKET_LIMITS[i]: float(c) for i, c in zip(limits, counts, strict=True)}


def nonempty(histo) -> dict[float, float]:
    return {limit: n for limit, n in zip(histo.bucket_limit, histo.bucket, strict=True) if n}


def test_watch_summarizes_every_weight_and_gradient_as_numpy_does():
    net = model()
    op = sh.watch(net, collections=[])
    backward(net)
    written = values(op)
    grads = []
    for name, parameter in net.named_parameters():
        for group, tensor in (("weights", parameter), ("gradients", parameter.grad)):
            array = tensor.detach().numpy().reshape(-1)
            histo = written[f"{group}/{name}"].histo
            assert nonempty(histo) == numpy_histogram(array), (group, name)
            assert (histo.num, histo.min, histo.max) == (array.size, array.min(), array.max())
            assert histo.sum == pytest.approx(array.astype(np.float64).sum(), rel=1e-9, abs=1e-12)
        assert written[f"weight_norm/{name}"].simple_value == pytest.approx(
            np.linalg.norm(parameter.detach().numpy().astype(np.float64)), rel=1e-6
        )
        grad = parameter.grad.numpy().astype(np.float64)
        assert written[f"gradient_norm/{name}"].simple_value == pytest.approx(
            np.linalg.norm(grad), rel=1e-6
        )
        grads.append(grad.reshape(-1))
    total = np.linalg.norm(np.concatenate(grads))
    assert written["global_norm/gradient_norm"].simple_value == pytest.approx(total, rel=1e-6)
    clipped = torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=1e9)
    assert clipped.item() == pytest.approx(total, rel=1e-6)


def test_watch_registers_one_op_in_the_default_collection_and_a_second_call_replaces_it():
    net = model()
    first = sh.watch(net)
    second = sh.watch(net, include="weight")
    assert sh.get_collection() == [second] and first is not second
    assert all(".weight" in tag or tag == "global_norm/gradient_norm" for tag in second.tags)
    assert sh.Scaffold().summary_op is None  # (finalized by the session)
    other = sh.watch(model(), prefix="target/")
    assert sh.get_collection() == [second, other]
    assert other.tags[0] == "target/weights/0.weight"


def test_gradients_that_are_none_are_left_out_with_one_warning():
    net = model()
    net[0].requires_grad_(False)  # a frozen layer
    op = sh.watch(net, collections=[])
    with pytest.warns(UserWarning, match=r"13 summaries have no value .*'gradients/0.weight'"):
        written = values(op)  # no backward yet: every gradient is None
    assert not any(tag.startswith(("gradients/", "gradient_norm/", "global")) for tag in written)
    backward(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the frozen layer's gradients were said already
        written = values(op)
    assert "gradients/3.weight" in written and "gradients/0.weight" not in written
    assert written["global_norm/gradient_norm"].simple_value > 0


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"include": r"\.weight$"}, ["0.weight", "2.weight", "3.weight"]),
        ({"exclude": r"^[23]\."}, ["0.weight", "0.bias"]),
        ({"module_types": torch.nn.LayerNorm}, ["2.weight", "2.bias"]),
        ({"module_types": (torch.nn.Linear,), "include": "bias"}, ["0.bias", "3.bias"]),
    ],
)
def test_watch_filters_by_name_and_by_module_type(kwargs, expected):
    op = sh.watch(model(), weights=True, gradients=False, norms=False, collections=[], **kwargs)
    assert [tag.removeprefix("weights/") for tag in op.tags] == expected


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: sh.watch("model"), TypeError, r"watch takes a torch.nn.Module, got 'model'"),
        (lambda: sh.watch(model(), include="("), ValueError, r"watch: include='\(' is not a regular expression"),
        (lambda: sh.watch(model(), include="nothing"), ValueError, r"no parameter of Sequential is left by include='nothing'"),
        (lambda: sh.watch(model(), weights=False, gradients=False), ValueError, r"leave nothing to summarize"),
        (lambda: sh.watch(model(), module_types=int), TypeError, r"module_types must be module classes, got <class 'int'>"),
        (lambda: sh.watch(model(), norms=1), TypeError, r"watch: norms must be a bool, got 1"),
    ],
)  # fmt: skip
def test_watch_raises_on_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_watch_reads_the_parameters_a_wrapper_put_in_place():
    # fully_shard and other wrappers replace parameters after the model is built.
    net = model()
    op = sh.watch(net, gradients=False, collections=[])
    net[0].weight = torch.nn.Parameter(torch.full((5, 6), 2.0))
    assert values(op)["weight_norm/0.weight"].simple_value == pytest.approx(2.0 * 30**0.5)


def test_a_watched_model_can_be_pickled_with_its_op():
    # ddp_spawn pickles the model and the default collection together.
    net = model()
    op = sh.watch(net, collections=[])
    net2, op2 = pickle.loads(pickle.dumps((net, op)))
    backward(net2)
    assert values(op2)["global_norm/gradient_norm"].simple_value > 0
