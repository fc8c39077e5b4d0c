"""Summary ops: tags, collections, merging, and the values a function may return."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

import summary_hook as sh


def value_of(op, output=None):
    return sh.evaluate(op, output).value[0]


def test_clean_tag_replaces_invalid_characters_with_a_warning():
    with pytest.warns(UserWarning, match="Summary name 'a b:c' is illegal; using 'a_b_c' instead."):
        op = sh.scalar("a b:c", lambda: 1.0)
    assert op.tags == ("a_b_c",)


def test_clean_tag_strips_leading_slashes():
    with pytest.warns(UserWarning, match="illegal"):
        assert sh.scalar("/x/y", lambda: 1.0).tags == ("x/y",)


def test_raises_when_tag_is_empty():
    with pytest.raises(ValueError, match="summary name must not be empty, got ''"):
        sh.scalar("", lambda: 1.0)


def test_raises_when_tag_is_not_a_string():
    with pytest.raises(TypeError, match="summary name must be a str, got 3"):
        sh.scalar(3, lambda: 1.0)


def test_raises_when_fn_is_not_callable():
    with pytest.raises(TypeError, match="summary 'x': fn must be callable, got 1.0"):
        sh.scalar("x", 1.0)


def test_raises_when_fn_needs_two_arguments():
    with pytest.raises(TypeError, match="requires 2"):
        sh.scalar("x", lambda a, b: a)


def test_registering_a_tag_again_replaces_the_earlier_op():
    sh.scalar("loss", lambda: 1.0)
    sh.scalar("other", lambda: 3.0)
    sh.scalar("loss", lambda: 2.0)  # a notebook cell run twice
    merged = sh.merge_all()
    assert merged.tags == ("loss", "other")
    assert [v.simple_value for v in sh.evaluate(merged).value] == [2.0, 3.0]


def test_collections_argument_controls_registration():
    sh.scalar("a", lambda: 1.0, collections=[])
    sh.scalar("b", lambda: 1.0, collections=["mine"])
    assert sh.merge_all() is None
    assert sh.merge_all("mine").tags == ("b",)


def test_one_collection_name_is_taken_as_a_name_not_as_its_letters():
    # TensorFlow's add_to_collections takes a str as one key.
    sh.scalar("a", lambda: 1.0, collections="mine")
    sh.watch(torch.nn.Linear(2, 1), collections="mine")
    assert sh.merge_all("mine").tags[0] == "a"
    assert "weights/weight" in sh.merge_all("mine").tags
    assert sh.merge_all("m") is None


def test_merge_raises_on_duplicate_tag():
    a = sh.scalar("a", lambda: 1.0, collections=[])
    with pytest.raises(ValueError, match="duplicate tag 'a' in merged summary"):
        sh.merge([a, sh.merge([a])])


def test_merge_raises_on_non_op():
    with pytest.raises(TypeError, match="merge takes summary ops, got 'x' of type str"):
        sh.merge(["x"])


def test_merge_raises_when_empty():
    with pytest.raises(ValueError, match="at least one summary op"):
        sh.merge([None])


def test_one_arg_function_receives_step_output_and_zero_arg_reads_state():
    weight = torch.tensor(4.0)
    ops = sh.merge([sh.scalar("loss", lambda out: out["loss"]), sh.scalar("w", lambda: weight)])
    summary = sh.evaluate(ops, {"loss": torch.tensor(0.5)})
    assert [(v.tag, v.simple_value) for v in summary.value] == [("loss", 0.5), ("w", 4.0)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3.0),
        (True, 1.0),
        (2.5, 2.5),
        (np.float32(1.5), 1.5),
        (np.int64(7), 7.0),
        (np.array([[2.0]]), 2.0),
        (torch.tensor(1.25), 1.25),
        (torch.tensor([1.25]), 1.25),
        (torch.tensor([[3]], dtype=torch.int64), 3.0),
        (torch.tensor(True), 1.0),
        (torch.tensor(1.5, dtype=torch.bfloat16), 1.5),
        (torch.tensor(1.5, dtype=torch.float16), 1.5),
        (torch.tensor(2.0, requires_grad=True) * 2, 4.0),
    ],
)
def test_scalar_accepts_real_numbers_and_one_element_tensors(value, expected):
    assert value_of(sh.scalar("x", lambda: value, collections=[])).simple_value == expected


@pytest.mark.parametrize("special", [math.nan, math.inf, -math.inf])
def test_scalar_writes_nan_and_inf_as_they_are(special):
    written = value_of(sh.scalar("x", lambda: torch.tensor(special), collections=[])).simple_value
    assert (math.isnan(written) and math.isnan(special)) or written == special


def test_scalars_from_mixed_shapes_and_dtypes_keep_their_order():
    values = [torch.tensor(1.0), torch.tensor([2]), 3.0, torch.tensor([[4.0]], dtype=torch.float64)]
    op = sh.merge([sh.scalar(f"s{i}", lambda v=v: v, collections=[]) for i, v in enumerate(values)])
    assert [v.simple_value for v in sh.evaluate(op).value] == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (None, TypeError, r"scalar 'x': its function returned None; "),
        ("1.0", TypeError, r"got '1.0' of type str"),
        (1 + 2j, TypeError, r"got \(1\+2j\) of type complex"),
        (torch.tensor(1 + 2j), TypeError, r"scalar 'x' must be real, got a torch.complex64 tensor"),
        (np.complex64(1), TypeError, r"scalar 'x' must be real, got a numpy complex64 value"),
        (
            torch.ones(2, 3),
            ValueError,
            r"scalar 'x' must have exactly one element, got a tensor of shape \(2, 3\)",
        ),
        (torch.ones(0), ValueError, r"shape \(0,\)"),
        (np.ones(3), ValueError, r"got an array of shape \(3,\)"),
        (torch.empty(1, device="meta"), ValueError, r"scalar 'x' is a tensor on the meta device"),
    ],
)
def test_scalar_rejects_bad_values_naming_the_tag(value, error, message):
    with pytest.raises(error, match=message):
        sh.evaluate(sh.scalar("x", lambda: value, collections=[]))


def test_function_that_raises_reaches_the_user_with_the_tag():
    def broken():
        raise KeyError("grad")

    with pytest.raises(
        sh.SummaryEvaluationError, match=r"summary 'grads/w': its function raised KeyError: 'grad'"
    ) as info:
        sh.evaluate(sh.scalar("grads/w", broken, collections=[]))
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.tag == "grads/w"


def test_shared_function_runs_once_per_evaluation():
    calls = []
    leaf = sh.scalar("x", lambda: calls.append(1) or 1.0, collections=[])
    sh.evaluate({"a": [leaf], "b": sh.merge([leaf])})
    assert len(calls) == 1


def test_evaluate_rejects_non_op_fetches():
    with pytest.raises(TypeError, match="fetches must be summary ops.*got 3 of type int"):
        sh.evaluate([3])


def test_functions_run_without_grad_and_grad_mode_is_restored():
    weight = torch.ones(4, requires_grad=True)
    seen = []
    norm = sh.scalar("w", lambda: seen.append(torch.is_grad_enabled()) or weight.norm(), [])
    broken = sh.scalar("b", lambda: seen.append(torch.is_grad_enabled()) or 1 / 0, [])
    assert sh.evaluate(norm).value[0].simple_value == 2.0
    with pytest.raises(sh.SummaryEvaluationError):
        sh.evaluate(broken)
    with torch.no_grad():  # a caller's own no_grad is left as it was
        sh.evaluate(norm)
        assert not torch.is_grad_enabled()
    assert seen == [False, False, False]
    assert torch.is_grad_enabled()


def test_threads_evaluating_one_op_each_get_their_own_values():
    local = threading.local()
    op = sh.merge([sh.scalar(f"s/{i}", lambda i=i: local.base + i, []) for i in range(20)])
    start = threading.Barrier(4)
    wrong = []

    def evaluate_many(base: float) -> None:
        local.base = base
        start.wait()
        for _ in range(2000):
            values = [v.simple_value for v in sh.evaluate(op).value]
            if values != [base + i for i in range(20)]:
                wrong.append(values)

    threads = [threading.Thread(target=evaluate_many, args=(1000.0 * t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


@pytest.mark.parametrize("takes_output", [False, True], ids=["no-output", "with-output"])
def test_error_names_the_function_that_raised_among_many(takes_output):
    def broken_without_output():
        raise KeyError("grad")

    def broken_with_output(out):
        raise KeyError("grad")

    broken = broken_with_output if takes_output else broken_without_output
    first = (lambda out: 1.0) if takes_output else (lambda: 1.0)
    ops = [sh.scalar(f"s/{i}", first, []) for i in range(3)]
    ops += [sh.scalar("s/bad", broken, [])]
    ops += [sh.scalar(f"t/{i}", lambda: 2.0, []) for i in range(5)]
    with pytest.raises(sh.SummaryEvaluationError, match="summary 's/bad'") as info:
        sh.evaluate(sh.merge(ops), output=0.5)
    assert info.value.tag == "s/bad"
