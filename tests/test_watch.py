"""sh.watch: a whole model's weights, gradients and norms, checked against numpy."""

from __future__ import annotations

import pickle
import warnings
from typing import Any

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


def scaled_training(logdir: str, init_scale: float, steps: int) -> list[torch.Tensor]:
    """Train a Linear with float16 autocast and a GradScaler, ``sh.watch`` saving every
    step into ``logdir``: the weight's gradient the optimizer used (or skipped) at each
    step, after ``scaler.step`` unscaled it."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1000)
    op = sh.watch(model, collections=[])
    hook = sh.SummarySaverHook(save_steps=1, output_dir=logdir, summary_op=op)
    used = []

    def step(x: torch.Tensor) -> None:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = model(x).pow(2).mean()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        used.append(model.weight.grad.detach().clone())

    with sh.MonitoredSession(hooks=[hook]) as session:
        for i in range(steps):
            session.run(step, torch.randn(8, 4, generator=torch.Generator().manual_seed(i)))
    sh.SummaryWriterCache.get(logdir).flush()
    return used


def test_a_gradient_scalers_skipped_step_leaves_the_gradients_out_and_training_goes_on(tmp_path):
    # float16 autocast, a scale so large that the first steps overflow: the scaler skips
    # them, their gradients are inf or NaN. Their histograms are left out (one warning),
    # their norms written as they are; the weights, and the later steps, as usual.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        used = scaled_training(str(tmp_path), 2.0**40, 40)
    finite = [bool(grad.isfinite().all()) for grad in used]
    assert not finite[0] and finite[-1]  # overflowed at first, then the scale came down
    said = [str(w.message) for w in seen if "are left out" in str(w.message)]
    assert len(said) == 1, said
    assert said[0].startswith("2 histograms hold NaN or infinite values at this step"), said
    assert "'gradients/weight', 'gradients/bias' (a GradScaler's skipped step" in said[0]
    from tests.conftest import accumulator

    acc = accumulator(str(tmp_path))
    steps = [e.step for e in acc.Histograms("gradients/weight")]
    assert steps == [i + 1 for i, ok in enumerate(finite) if ok]
    assert [e.step for e in acc.Histograms("weights/weight")] == list(range(1, 41))
    norms = {e.step: e.value for e in acc.Scalars("gradient_norm/weight")}
    assert len(norms) == 40 and not np.isfinite(norms[1])  # the overflow, shown
    assert all(np.isfinite(norms[s]) for s in steps)


def test_a_histogram_of_nan_among_finite_ones_is_left_out_alone():
    torch.manual_seed(0)
    net = torch.nn.ParameterList(torch.nn.Parameter(torch.randn(5)) for _ in range(4))
    with torch.no_grad():
        net[2][1] = float("nan")  # a batch of four tensors, one of them NaN
    op = sh.watch(net, gradients=False, collections=[])
    with pytest.warns(
        UserWarning,
        match=r"^1 histograms hold NaN or infinite values at this step and are left out: 'weights/2'",
    ):
        written = values(op)
    for index in (0, 1, 3):
        array = net[index].detach().numpy()
        assert nonempty(written[f"weights/{index}"].histo) == numpy_histogram(array)
    assert "weights/2" not in written and np.isnan(written["weight_norm/2"].simple_value)
    with pytest.raises(ValueError, match=r"histogram 'mine' holds NaN or infinite values"):
        sh.evaluate(sh.histogram("mine", lambda: net[2], collections=[]))  # as TensorFlow


def test_float8_weights_are_summarized_as_their_float32_values():
    # float8 weights (kept for inference, or by low-precision training): torch's
    # reductions do not take them, so they are counted as the float32 values they are.
    net = torch.nn.Linear(8, 4)
    as_float32 = {n: p.detach().to(torch.float8_e4m3fn).float() for n, p in net.named_parameters()}
    for parameter in net.parameters():
        parameter.data = parameter.data.to(torch.float8_e4m3fn)
    written = {v.tag: v for v in sh.evaluate(sh.watch(net, gradients=False, collections=[])).value}
    for name, values in as_float32.items():
        array = values.numpy().reshape(-1)
        assert nonempty(written[f"weights/{name}"].histo) == numpy_histogram(array)
        norm = np.linalg.norm(array.astype(np.float64))
        assert written[f"weight_norm/{name}"].simple_value == pytest.approx(norm)


def test_complex_parameters_have_norms_and_count_in_the_global_norm_as_clipping_does():
    # A Fourier layer's complex weights: no histogram can count them, so they have none,
    # with a warning naming them; their norms are of their values' moduli, and their
    # gradients count in the global norm, which is what clip_grad_norm_ clips by.
    net = torch.nn.Module()
    net.spectrum = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))
    net.scale = torch.nn.Parameter(torch.randn(3))
    with pytest.warns(
        UserWarning, match=r"1 complex parameters have no histograms.*: 'spectrum'; "
    ):
        op = sh.watch(net, collections=[])
    (net.spectrum.abs().pow(2).sum() + net.scale.sum()).backward()
    written = {v.tag: v for v in sh.evaluate(op).value}
    assert list(written) == [
        "weight_norm/spectrum",
        "gradient_norm/spectrum",
        "weights/scale",
        "gradients/scale",
        "weight_norm/scale",
        "gradient_norm/scale",
        "global_norm/gradient_norm",
    ]
    spectrum = net.spectrum.detach().numpy().astype(np.complex128)
    gradient = net.spectrum.grad.numpy().astype(np.complex128)
    assert written["weight_norm/spectrum"].simple_value == pytest.approx(np.linalg.norm(spectrum))
    assert written["gradient_norm/spectrum"].simple_value == pytest.approx(np.linalg.norm(gradient))
    clipped = torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=1e9)
    assert written["global_norm/gradient_norm"].simple_value == pytest.approx(clipped.item())
    with pytest.warns(UserWarning, match=r"nothing of theirs is written"):
        weights_only = sh.watch(net, gradients=False, norms=False, collections=[])
    assert weights_only.tags == ("weights/scale",)


def test_a_weight_pruned_after_watch_is_the_masked_weight_and_its_gradient_is_left_out():
    from torch.nn.utils import prune

    net = model()
    op = sh.watch(net, collections=[])
    prune.l1_unstructured(net[0], "weight", amount=0.5)  # weight: weight_orig * mask
    backward(net)
    with pytest.warns(UserWarning, match=r"^2 summaries have no value .*'gradients/0.weight'"):
        written = values(op)  # (and torch's warning on reading a non-leaf's .grad: none)
    masked = net[0].weight.detach().numpy().reshape(-1)
    assert nonempty(written["weights/0.weight"].histo) == numpy_histogram(masked)
    assert written["weights/0.weight"].histo.num == masked.size and (masked == 0).sum() == 15
    assert "gradients/0.bias" in written


def test_a_sparse_gradient_is_summarized_by_the_rows_it_reached():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(10, 4, sparse=True), torch.nn.Linear(4, 1))
    op = sh.watch(net, collections=[])
    net(torch.tensor([1, 2, 2, 7])).pow(2).sum().backward()  # row 2 twice: uncoalesced
    assert net[0].weight.grad.layout == torch.sparse_coo
    written = values(op)
    dense = net[0].weight.grad.to_dense().numpy()
    reached = dense[[1, 2, 7]].reshape(-1)
    histo = written["gradients/0.weight"].histo
    assert nonempty(histo) == numpy_histogram(reached)
    assert (histo.num, histo.min, histo.max) == (12, reached.min(), reached.max())
    assert histo.sum == pytest.approx(reached.astype(np.float64).sum(), rel=1e-9)
    norm = np.linalg.norm(dense.astype(np.float64))
    assert written["gradient_norm/0.weight"].simple_value == pytest.approx(norm, rel=1e-6)
    others = [p.grad.numpy().reshape(-1) for p in net[1].parameters()]
    total = np.linalg.norm(np.concatenate([dense.reshape(-1), *others]).astype(np.float64))
    assert written["global_norm/gradient_norm"].simple_value == pytest.approx(total, rel=1e-6)


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
        (lambda: sh.watch(model(), weights=False, gradients=False), ValueError, r"without activations, leave nothing to summarize"),
        (lambda: sh.watch(model(), module_types=int), TypeError, r"module_types must be module classes, got <class 'int'>"),
        (lambda: sh.watch(model(), norms=1), TypeError, r"watch: norms must be a bool, got 1"),
        (lambda: sh.watch(model(), permanent="yes"), TypeError, r"watch: permanent must be a bool, got 'yes'"),
        (lambda: sh.watch(model(), reduce_activations=None), TypeError, r"watch: reduce_activations must be a bool, got None"),
    ],
)  # fmt: skip
def test_watch_raises_on_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_a_compiled_or_wrapped_model_has_the_models_own_tags(tmp_path):
    # torch.compile keeps the model as _orig_mod, DataParallel as module: a run's tags
    # are the same with or without them, and the filters match the names tags show.
    plain = sh.watch(model(), activations=torch.nn.ReLU, collections=[]).tags
    torch.compiler.reset()
    compiled = torch.compile(model(), backend="eager")
    for wrapped in (compiled, torch.nn.DataParallel(torch.compile(model(), backend="eager"))):
        assert sh.watch(wrapped, activations=torch.nn.ReLU, collections=[]).tags == plain

    class Net(torch.nn.Module):  # a submodule compiled in place
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.compile(model(), backend="eager")
            self.head = torch.nn.Linear(2, 1)

    net = Net()
    op = sh.watch(net, include=r"^body\.0\.", activations=r"^body(\.1)?$", collections=[])
    assert op.tags == (
        "weights/body.0.weight",
        "gradients/body.0.weight",
        "weight_norm/body.0.weight",
        "gradient_norm/body.0.weight",
        "weights/body.0.bias",
        "gradients/body.0.bias",
        "weight_norm/body.0.bias",
        "gradient_norm/body.0.bias",
        "global_norm/gradient_norm",
        "activations/body",  # the model, once: not also its compiled wrapper
        "activations/body.1",
        "zero_fraction/body.1",
    )
    x = torch.randn(3, 6)
    hook = sh.SummarySaverHook(save_steps=1, output_dir=str(tmp_path), summary_op=op)
    with sh.MonitoredSession(hooks=[hook]) as sess:
        sess.run(lambda: net.head(net.body(x)).sum().backward())
    sh.SummaryWriterCache.get(str(tmp_path)).flush()
    from tests.conftest import accumulator

    acc = accumulator(str(tmp_path))
    inner = net.body._orig_mod
    with torch.no_grad():
        expected = {
            "gradients/body.0.weight": inner[0].weight.grad,
            "activations/body.1": inner[1](inner[0](x)),
        }
    for tag, tensor in expected.items():
        (event,) = acc.Histograms(tag)
        assert nonempty(event.histogram_value) == numpy_histogram(tensor.numpy().reshape(-1))


def test_watch_reads_the_parameters_a_wrapper_put_in_place():
    # fully_shard and other wrappers replace parameters after the model is built.
    net = model()
    op = sh.watch(net, gradients=False, collections=[])
    net[0].weight = torch.nn.Parameter(torch.full((5, 6), 2.0))
    assert values(op)["weight_norm/0.weight"].simple_value == pytest.approx(2.0 * 30**0.5)


@pytest.mark.parametrize("evaluated", [False, True])
def test_a_watched_model_can_be_pickled_and_copied_with_its_op(evaluated):
    # ddp_spawn pickles the model and the default collection together; an evaluated op's
    # plan, which holds a lock, stays behind (pickling it raised).
    import copy

    net = model()
    op = sh.watch(net, collections=[])
    if evaluated:
        backward(net)
        values(op)
    for net2, op2 in (pickle.loads(pickle.dumps((net, op))), copy.deepcopy((net, op))):
        backward(net2)
        assert values(op2)["global_norm/gradient_norm"].simple_value > 0


def test_watching_another_model_under_the_same_prefix_warns_that_it_replaces_the_first():
    generator, critic = model(), torch.nn.Sequential(torch.nn.Linear(2, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sh.watch(generator)
        sh.watch(generator, include="weight")  # the same model: replaced, as a tag is
        sh.watch(torch.nn.DataParallel(generator))  # (the model it wraps)
        sh.watch(critic, prefix="critic/")
    assert len(sh.get_collection()) == 2
    message = r"sh.watch replaces its watch of another Sequential \(prefix='critic/'\).*give each its own prefix"
    with pytest.warns(UserWarning, match=message):
        sh.watch(model(), prefix="critic/")  # a GAN's two models alike: the first is lost
    assert len(sh.get_collection()) == 2


class CountedLookups(torch.nn.Module):
    """A model that counts the lookups of its submodules by name (its own attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.a, self.b = torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))

    def __getattr__(self, name: str) -> object:
        if name in ("a", "b"):
            self.__dict__["lookups"] += 1
        return super().__getattr__(name)


@pytest.mark.parametrize("merged", [False, True])
def test_a_due_step_looks_each_watched_weight_up_once(merged):
    # One lookup a parameter finds its weight, its gradient, their norms' and the global
    # norm's (five were made before); merged with another op, the same.
    net = CountedLookups()
    op = sh.watch(net, collections=[])
    if merged:
        op = sh.merge([sh.scalar("loss", lambda: 1.0, collections=[]), op])
    net(torch.randn(4, 3)).sum().backward()
    net.lookups = 0
    written = values(op)
    assert net.lookups == 4  # a.weight, a.bias, b.weight, b.bias
    assert written["gradient_norm/a.weight"].simple_value == pytest.approx(
        float(net.a.weight.grad.norm())
    )
    assert len(written) == 4 * 4 + 1 + merged


def test_a_watched_leaf_alone_gives_its_own_value():
    net = model()
    backward(net)
    op = sh.watch(net, collections=[])
    leaves = {leaf.tag: leaf for leaf in op.leaves}
    assert leaves["weights/0.weight"].fn() is net[0].weight
    assert leaves["gradients/3.bias"].fn() is net[3].bias.grad
    assert leaves["global_norm/gradient_norm"].fn()[0] is net[0].weight.grad


def test_a_source_of_several_leaves_must_give_one_value_each():
    from summary_hook._ops.summary_ops import Leaf, Part

    source = lambda: [1.0]  # noqa: E731 - two leaves, one value
    op = sh.SummaryOp(tuple(Leaf(f"s{i}", "scalar", Part(source, i, 2), False) for i in range(2)))
    with pytest.raises(sh.SummaryEvaluationError, match="'s0'.*gave 1 values for 2 summaries"):
        sh.evaluate(op)


def test_a_weight_set_to_none_after_watch_names_its_tag():
    net = model()
    op = sh.watch(net, collections=[])
    backward(net)
    net[3].weight = None
    with pytest.raises(TypeError, match=r"'weights/3\.weight': its function returned None"):
        sh.evaluate(op)


def test_a_layer_deleted_after_watch_is_named_and_watch_again_is_asked_for():
    # The weights are found together: the error names the one that is gone, not the
    # first tag, which would blame a parameter that is still there.
    net = model()
    op = sh.watch(net, collections=[])
    backward(net)
    del net[3]
    with pytest.raises(
        sh.SummaryEvaluationError,
        match=r"no parameter '3\.weight' any more .*call sh\.watch again",
    ):
        sh.evaluate(op)
    assert "weights/2.weight" in values(sh.watch(net, collections=[]))  # the model as it is


class Blocks(torch.nn.Module):
    """Two blocks of Linear and ReLU, the first of them checkpointed when asked."""

    def __init__(self, checkpointed: bool | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.relu1 = torch.nn.Linear(6, 5), torch.nn.ReLU()
        self.fc2, self.relu2 = torch.nn.Linear(5, 3), torch.nn.ReLU()
        self.checkpointed = checkpointed

    def first(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu1(self.fc1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointed is None:
            h = self.first(x)
        else:
            from torch.utils.checkpoint import checkpoint

            h = checkpoint(self.first, x, use_reentrant=self.checkpointed)
        return self.relu2(self.fc2(h))


def save_one_step(model: torch.nn.Module, op: sh.SummaryOp, logdir: str, x: torch.Tensor) -> dict:
    hook = sh.SummarySaverHook(save_steps=1, output_dir=logdir, summary_op=op)
    with sh.MonitoredSession(hooks=[hook]) as sess:
        sess.run(lambda: model(x).pow(2).sum().backward())
    sh.SummaryWriterCache.get(logdir).flush()
    from tests.conftest import accumulator

    acc = accumulator(logdir)
    histograms = {tag: acc.Histograms(tag)[0].histogram_value for tag in acc.Tags()["histograms"]}
    scalars = {tag: acc.Scalars(tag)[0].value for tag in acc.Tags()["scalars"]}
    return {**histograms, **scalars}


@pytest.mark.parametrize(
    ("checkpointed", "early_stop"),
    [(None, True), (False, True), (False, False), (True, True)],
    ids=["plain", "non-reentrant", "non-reentrant, no early stop", "reentrant"],
)
def test_activations_are_counted_once_each_as_numpy_does(tmp_path, checkpointed, early_stop):
    from torch.utils.checkpoint import set_checkpoint_early_stop

    model = Blocks(checkpointed)
    op = sh.watch(model, weights=False, gradients=False, activations=torch.nn.ReLU, collections=[])
    assert op.tags == (
        "activations/relu1",
        "zero_fraction/relu1",
        "activations/relu2",
        "zero_fraction/relu2",
    )
    x = torch.randn(
        7, 6, generator=torch.Generator().manual_seed(3), requires_grad=checkpointed is True
    )
    with set_checkpoint_early_stop(early_stop):
        written = save_one_step(model, op, str(tmp_path), x)
    with torch.no_grad():
        first = model.first(x)
        expected = {"relu1": first, "relu2": model.relu2(model.fc2(first))}
    for name, values in expected.items():
        array = values.numpy().reshape(-1)
        histo = written[f"activations/{name}"]
        assert nonempty(histo) == numpy_histogram(array), name  # each call once: no recomputation
        assert (histo.num, histo.min, histo.max) == (array.size, array.min(), array.max())
        assert written[f"zero_fraction/{name}"] == pytest.approx(float((array == 0).mean()))


def test_a_model_checkpointed_by_checkpoint_wrapper_has_its_own_tags(tmp_path):
    # apply_activation_checkpointing (the way FSDP's users checkpoint) puts a
    # CheckpointWrapper in place of each block: its _checkpoint_wrapped_module segment is
    # left out of tags, the wrapper is not tapped as well as its block, and each block's
    # output, recomputed in the backward pass, is counted once.
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        apply_activation_checkpointing,
    )

    plain = Blocks()
    op = sh.watch(plain, activations=torch.nn.Linear, collections=[])
    wrapped = Blocks()
    apply_activation_checkpointing(wrapped, check_fn=lambda m: isinstance(m, torch.nn.Linear))
    assert any("_checkpoint_wrapped_module" in n for n, _ in wrapped.named_parameters())
    wrapped_op = sh.watch(wrapped, activations=torch.nn.Linear, collections=[])
    assert wrapped_op.tags == op.tags
    assert "activations/fc1" in op.tags and "weights/fc1.weight" in op.tags
    x = torch.randn(7, 6, generator=torch.Generator().manual_seed(3))
    written = save_one_step(wrapped, wrapped_op, str(tmp_path / "wrapped"), x)
    expected = save_one_step(plain, op, str(tmp_path / "plain"), x)
    assert sorted(written) == sorted(expected)
    for tag, value in expected.items():
        if isinstance(value, float):
            assert written[tag] == pytest.approx(value, rel=1e-6), tag
        else:
            assert nonempty(written[tag]) == nonempty(value), tag
            assert written[tag].num == value.num, tag  # once each: not again in the backward


def test_activations_of_parametrized_layers_are_the_layers_outputs(tmp_path):
    # weight_norm and spectral_norm compute a layer's weight in modules under its
    # parametrizations: those are not layers (their outputs are weights), and a
    # parametrized Linear is still a module without children of its own.
    from torch.nn.utils.parametrizations import spectral_norm, weight_norm

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        weight_norm(torch.nn.Linear(4, 3)), torch.nn.ReLU(), spectral_norm(torch.nn.Linear(3, 2))
    )
    op = sh.watch(model, weights=False, gradients=False, activations=True, collections=[])
    assert op.tags == ("activations/0", "activations/1", "zero_fraction/1", "activations/2")
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    model.eval()  # (spectral_norm's power iteration then leaves its weight as it is)
    written = save_one_step(model, op, str(tmp_path), x)
    with torch.no_grad():
        first = model[0](x)
        expected = {"0": first, "2": model[2](model[1](first))}
    for name, values in expected.items():
        assert nonempty(written[f"activations/{name}"]) == numpy_histogram(
            values.numpy().reshape(-1)
        )


def test_activations_of_a_module_called_twice_count_both_calls(tmp_path):
    shared = torch.nn.ReLU()
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), shared, torch.nn.Linear(4, 4), shared)
    op = sh.watch(model, weights=False, gradients=False, activations=r"^1$", collections=[])
    written = save_one_step(model, op, str(tmp_path), torch.randn(3, 4))
    assert written["activations/1"].num == 2 * 3 * 4


class Recurrent(torch.nn.Module):
    """An LSTM, which returns its output with its states, under an encoder layer whose
    attention's out_proj never runs: the attention uses its weights directly."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = torch.nn.LSTM(4, 8, batch_first=True)
        self.encoder = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.lstm(x)[0])


def test_activations_of_every_module_skip_one_that_did_not_run_with_a_warning(tmp_path):
    model = Recurrent()
    op = sh.watch(model, weights=False, gradients=False, activations=True, collections=[])
    x = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(1))
    with pytest.warns(
        UserWarning, match=r"^1 summaries have no value .*'activations/encoder.self_attn.out_proj'"
    ):
        written = save_one_step(model, op, str(tmp_path), x)
    assert "activations/encoder.self_attn.out_proj" in op.tags  # chosen, but it never ran
    with torch.no_grad():
        output = model.lstm(x)[0].numpy().reshape(-1)  # the first tensor: not its states
    histo = written["activations/lstm"]
    assert nonempty(histo) == numpy_histogram(output)
    assert (histo.num, histo.min, histo.max) == (output.size, output.min(), output.max())
    assert written["activations/encoder.linear2"].num == 2 * 5 * 8


class Spectral(torch.nn.Module):
    """A layer whose output is complex, as a Fourier layer's is before it goes back."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.fft = torch.nn.Module()
        self.fft.forward = lambda x: torch.fft.rfft(x)  # type: ignore[method-assign]
        self.out = torch.nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fft(self.fc(x)).abs())


def test_a_module_whose_output_a_histogram_cannot_count_is_left_out(tmp_path):
    model = Spectral()
    op = sh.watch(model, weights=False, gradients=False, activations=True, collections=[])
    with pytest.warns(UserWarning, match=r"^1 summaries have no value .*'activations/fft'"):
        written = save_one_step(model, op, str(tmp_path / "all"), torch.randn(2, 8))
    assert written["activations/fc"].num == 16 and "activations/fft" not in written
    alone = sh.watch(model, weights=False, gradients=False, activations="fft", collections=[])
    with pytest.raises(
        sh.SummaryEvaluationError,
        match=r"returned a torch.complex64 tensor, which a histogram cannot count",
    ):
        save_one_step(model, alone, str(tmp_path / "alone"), torch.randn(2, 8))


def test_output_of_a_module_that_returns_a_tuple_is_its_first_tensor():
    lstm = torch.nn.LSTM(3, 2)
    tap = sh.output_of(lstm)
    op = sh.histogram("lstm", tap, collections=[])
    tap.arm()
    x = torch.randn(4, 1, 3)
    output, _ = lstm(x)
    assert sh.evaluate(op).value[0].histo.num == output.numel() == 8
    tap.release()


def test_output_of_a_module_whose_output_holds_no_tensor_says_so():
    class Sink(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> None:
            return None

    sink = Sink()
    tap = sh.output_of(sink)
    tap.arm()
    sink(torch.ones(2))
    with pytest.raises(
        sh.SummaryEvaluationError,
        match=r"captured nothing at this step: the module returned a NoneType, which holds no tensor",
    ):
        sh.evaluate(sh.histogram("sink", tap, collections=[]))
    tap.release()


def test_activations_keep_counts_not_outputs(tmp_path):
    # Every module's output dies with the step's graph: the taps hold 12 KB rows only.
    import gc
    import weakref

    model = Blocks()
    op = sh.watch(model, weights=False, gradients=False, activations=True, collections=[])
    outputs = []
    handles = [
        m.register_forward_hook(lambda m, a, out: outputs.append(weakref.ref(out)))
        for m in (model.fc1, model.relu1, model.fc2, model.relu2)
    ]
    written = save_one_step(model, op, str(tmp_path), torch.randn(2, 6))
    for handle in handles:
        handle.remove()
    gc.collect()
    assert len(outputs) == 4 and all(ref() is None for ref in outputs)
    assert written["activations/relu2"].num == 2 * 3


@pytest.mark.parametrize(
    ("activations", "error", "message"),
    [
        ("nothing", ValueError, r"activations='nothing' chooses no module of Blocks"),
        (3, TypeError, r"activations must be a regular expression, module classes or True, got 3"),
    ],
)
def test_watch_raises_on_bad_activations(activations, error, message):
    with pytest.raises(error, match=message):
        sh.watch(Blocks(), activations=activations, collections=[])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
# (Dynamo reads .grad of a tensor it wraps, and hides the warning that gives from display;
# the "error" filter of these tests would raise it instead.)
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
@pytest.mark.parametrize(
    ("backend", "checkpointed", "watched"),
    [
        ("counting", None, "model"),
        ("counting", False, "model"),
        ("counting", True, "model"),
        ("inductor", False, "model"),
        ("counting", None, "compiled"),  # sh.watch(torch.compile(model)): the same tags
    ],
)
def test_activations_of_a_compiled_model_are_counted_in_its_graph(
    tmp_path, backend, checkpointed, watched
):
    # Every due step's histograms and zero fractions equal eager's, each call of the
    # forward counted once (a checkpointed block's recomputation is not); two graphs (due
    # steps and the others), no graph break, no recompile; and the graphs give out the
    # histograms' rows, never the activations themselves.
    from torch.fx.node import map_arg

    from summary_hook._evaluation.histogram import BUCKET_LIMITS as limits
    from summary_hook._evaluation.histogram import STATS

    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return torch._inductor.compile(gm, example_inputs) if backend == "inductor" else gm

    model = Blocks(checkpointed)
    compiled = torch.compile(model, backend=counting)
    op = sh.watch(
        compiled if watched == "compiled" else model,
        weights=False,
        gradients=False,
        activations=True,
        collections=[],
    )
    hook = sh.SummarySaverHook(save_steps=2, output_dir=str(tmp_path), summary_op=op)
    batches = [
        torch.randn(4, 6, generator=torch.Generator().manual_seed(i)).requires_grad_(
            checkpointed is True  # (reentrant checkpointing needs an input that does)
        )
        for i in range(6)
    ]
    with sh.MonitoredSession(hooks=[hook]) as sess:
        for x in batches:
            sess.run(lambda x=x: compiled(x).pow(2).sum().backward())
    sh.SummaryWriterCache.get(str(tmp_path)).flush()
    from tests.conftest import accumulator

    acc = accumulator(str(tmp_path))
    fractions = acc.Scalars("zero_fraction/relu1")
    for name, expected_of in (("fc1", lambda x: model.fc1(x)), ("relu1", model.first)):
        written = acc.Histograms(f"activations/{name}")
        assert [e.step for e in written] == [1, 3, 5]
        for event, fraction in zip(written, fractions, strict=True):
            with torch.no_grad():
                expected = expected_of(batches[event.step - 1]).numpy().reshape(-1)
            assert nonempty(event.histogram_value) == numpy_histogram(expected), name
            if name == "relu1":
                assert fraction.value == pytest.approx((expected == 0).mean())
    assert len(graphs) == 2
    shapes = []
    for gm in graphs:
        (output,) = [node for node in gm.graph.nodes if node.op == "output"]
        map_arg(output.args, lambda n: shapes.append(tuple(n.meta["example_value"].shape)))
    assert set(shapes) == {(), (4, 3), (STATS + len(limits),)}  # (the sum, the model's output)


def graph_keeper() -> tuple[list[torch.fx.GraphModule], Any]:
    """A ``torch.compile`` backend that keeps every graph it is given and runs it as it
    is, and the list it keeps them in."""
    graphs: list[torch.fx.GraphModule] = []

    def counting(gm: torch.fx.GraphModule, example_inputs: Any) -> torch.fx.GraphModule:
        graphs.append(gm)
        return gm

    return graphs, counting


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_a_compiled_model_the_compiler_gives_up_on_has_eagers_activations(tmp_path):
    # Dynamo does not trace an LSTM: the model runs eagerly, the taps' hooks in frames of
    # their own. Their histograms equal eager's, and the counting of a hook that runs
    # eagerly there is not compiled too (its gathers and dots were, in graphs of their own).
    graphs, counting = graph_keeper()

    def written(compiled: bool, logdir: str) -> dict:
        torch.compiler.reset()
        model = Recurrent()
        forward = torch.compile(model, backend=counting) if compiled else model
        op = sh.watch(model, weights=False, gradients=False, activations=True, collections=[])
        hook = sh.SummarySaverHook(save_steps=2, output_dir=logdir, summary_op=op)
        with sh.MonitoredSession(hooks=[hook]) as sess, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (out_proj never runs: said once, tested above)
            for i in range(4):
                x = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(i))
                sess.run(lambda x=x: forward(x).pow(2).sum().backward())
        sh.SummaryWriterCache.get(logdir).flush()
        from tests.conftest import accumulator

        acc = accumulator(logdir)
        return {
            tag: [(e.step, e.histogram_value) for e in acc.Histograms(tag)]
            for tag in acc.Tags()["histograms"]
        }

    eager = written(False, str(tmp_path / "eager"))
    assert len(eager) == 8 and [step for step, _ in eager["activations/lstm"]] == [1, 3]
    compiled = written(True, str(tmp_path / "compiled"))
    assert compiled.keys() == eager.keys()
    for tag, events in eager.items():
        for (step, histo), (compiled_step, compiled_histo) in zip(
            events, compiled[tag], strict=True
        ):
            assert step == compiled_step and nonempty(histo) == nonempty(compiled_histo), tag
            assert histo.num == compiled_histo.num, tag
    targets = {
        getattr(node.target, "__name__", "")
        for gm in graphs
        for node in gm.graph.nodes
        if node.op == "call_function"
    }
    assert not targets & {"index_select", "dot", "bincount"}, targets


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_a_model_compiled_and_run_before_its_first_due_step_needs_permanent_taps(tmp_path):
    # A warm-up call, or Lightning's sanity check: the graph traced then has no taps, and
    # a compiled graph keeps only the hooks it was traced with.
    graphs, counting = graph_keeper()

    def due_steps(permanent: bool, logdir: str) -> list[torch.Tensor]:
        torch.compiler.reset()  # (its graphs would serve the next model of the class)
        model = Blocks()
        compiled = torch.compile(model, backend=counting)
        op = sh.watch(
            model, weights=False, gradients=False, activations=True, permanent=permanent,
            collections=[],
        )  # fmt: skip
        compiled(torch.randn(4, 6))  # before the first due step
        batches = [torch.randn(4, 6, generator=torch.Generator().manual_seed(i)) for i in range(4)]
        hook = sh.SummarySaverHook(save_steps=2, output_dir=logdir, summary_op=op)
        with sh.MonitoredSession(hooks=[hook]) as sess:
            for x in batches:
                sess.run(lambda x=x: compiled(x).pow(2).sum().backward())
        sh.SummaryWriterCache.get(logdir).flush()
        return batches

    with pytest.raises(
        sh.SummaryEvaluationError,
        match=r"ran before its first due step \(pass permanent=True to sh.watch\)",
    ):
        due_steps(False, str(tmp_path / "not"))
    graphs.clear()
    batches = due_steps(True, str(tmp_path / "permanent"))
    from tests.conftest import accumulator

    written = accumulator(str(tmp_path / "permanent")).Histograms("activations/relu1")
    assert [e.step for e in written] == [1, 3]
    model = Blocks()  # (the same seed: the same weights)
    for event in written:
        with torch.no_grad():
            expected = model.first(batches[event.step - 1]).numpy().reshape(-1)
        assert nonempty(event.histogram_value) == numpy_histogram(expected)
    assert len(graphs) == 2  # the taps' flag down, then up: no graph break, no recompile


@pytest.mark.parametrize("taps", ["watch", "output_of"])
def test_a_due_forward_holds_one_activation_at_a_time(tmp_path, taps):
    # A due step's peak with sh.watch's activations: the rows (12 KB a module) and the
    # activation being counted, none kept until the step ends (a deep model's would be
    # gigabytes). sh.output_of, whose op needs the outputs themselves, keeps each: the
    # check sees the difference.
    import weakref

    layers = [m for _ in range(8) for m in (torch.nn.Linear(16, 16), torch.nn.ReLU())]
    model = torch.nn.Sequential(*layers)
    if taps == "watch":
        op = sh.watch(model, weights=False, gradients=False, activations=True, collections=[])
    else:
        op = sh.merge(
            [sh.histogram(f"a/{i}", sh.output_of(m), collections=[]) for i, m in enumerate(model)]
        )
    refs: list[weakref.ref] = []  # to each output's memory, which a detached alias shares

    def keep_ref(module, args, out):
        refs.append(weakref.ref(out.untyped_storage()))

    handles = [m.register_forward_hook(keep_ref) for m in model]
    alive = []

    def step(x):
        with torch.no_grad():  # nothing kept for a backward pass: only what taps keep
            out = model(x)
        alive.append(sum(ref() is not None for ref in refs))
        return out

    hook = sh.SummarySaverHook(save_steps=1, output_dir=str(tmp_path), summary_op=op)
    with sh.MonitoredSession(hooks=[hook]) as session:
        session.run(step, torch.randn(4, 16))
    for handle in handles:
        handle.remove()
    assert alive == ([1] if taps == "watch" else [16])  # the model's output; or all 16


@pytest.mark.parametrize("how", ["watch", "output_of"])
def test_an_op_registered_again_leaves_one_permanent_hook_on_the_module(tmp_path, how):
    # A notebook cell run again: the replaced op's permanent hooks are let go of.
    model = Blocks()

    def register() -> sh.SummaryOp:
        if how == "watch":
            return sh.watch(model, weights=False, activations=torch.nn.ReLU, permanent=True)
        return sh.histogram("act/relu1", sh.output_of(model.relu1, permanent=True))

    try:
        for _ in range(3):
            op = register()
        assert len(model.relu1._forward_hooks) == 1
        assert len(model._forward_hooks) == (1 if how == "watch" else 0)  # the backward scope
        hook = sh.SummarySaverHook(save_steps=1, output_dir=str(tmp_path), summary_op=op)
        with sh.MonitoredSession(hooks=[hook]) as session:
            session.run(lambda: model(torch.randn(4, 6)).sum().backward())
        assert len(model.relu1._forward_hooks) == 1  # the live op's, still installed
    finally:
        sh.clear_collection()


def test_a_plain_loop_with_a_gradient_scaler_writes_the_unscaled_gradients(tmp_path):
    # float16 autocast and GradScaler: what the optimizer used, after scaler.step unscaled
    # it, not the scaled gradients backward() left (1,024 times larger here).
    used = [float(grad.double().norm()) for grad in scaled_training(str(tmp_path), 1024.0, 3)]
    from tests.conftest import accumulator

    written = [e.value for e in accumulator(str(tmp_path)).Scalars("gradient_norm/weight")]
    assert written == pytest.approx(used, rel=1e-6)
    assert all(0 < norm < 100 for norm in written), written  # unscaled
