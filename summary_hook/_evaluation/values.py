"""What a summary's function may return, checked before anything is counted or copied:
each kind's accepted values, and for any other an error that names the kind and the tag
and shows what came instead.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from tensorboard.compat.proto import types_pb2
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

from summary_hook._ops.taps import Counted

__all__ = [
    "MISSING",
    "NON_FINITE",
    "Absent",
    "array_value",
    "histogram_input",
    "norm_inputs",
    "scalar_value",
    "text_tensor",
]


class Absent:
    """A value that its op's summary leaves out (see :data:`MISSING`, :data:`NON_FINITE`)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: What an optional value that is absent gives (a frozen parameter's gradient, the
#: output of a module that did not run).
MISSING = Absent("MISSING")
#: What a histogram of NaN or infinities gives when its leaf leaves such histograms out
#: (``Leaf.skips_non_finite``, ``sh.watch``'s).
NON_FINITE = Absent("NON_FINITE")

_NONE_HINT = (
    "; a parameter's .grad is None until a backward pass reaches it (a frozen layer, "
    "a parameter outside the loss, or a step before the first backward)"
)


def scalar_value(tag: str, value: Any) -> float | torch.Tensor:
    """A Python float, or a one-element real tensor left on its device."""
    if isinstance(value, torch.Tensor):
        _check_real_tensor("scalar", tag, value)
        if value.numel() != 1:
            raise ValueError(
                f"scalar {tag!r} must have exactly one element, got a tensor of shape "
                f"{tuple(value.shape)}"
            )
        return value.detach()
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"scalar {tag!r} must be real, got a numpy {value.dtype} value")
        if value.size != 1:
            raise ValueError(
                f"scalar {tag!r} must have exactly one element, got an array of shape {value.shape}"
            )
        return float(value.reshape(()))
    if isinstance(value, numbers.Real):
        return float(value)
    if value is None:
        raise TypeError(f"scalar {tag!r}: its function returned None{_NONE_HINT}")
    if isinstance(value, Mapping):
        raise _mapping_error("scalar", tag, value)
    raise TypeError(
        f"scalar {tag!r} must be a real number or a one-element tensor, got {value!r} "
        f"of type {type(value).__name__}"
    )


def histogram_input(tag: str, value: Any) -> torch.Tensor | Counted:
    """The values a histogram counts: a real tensor as it is (the same object, which
    tells a norm of that tensor that it is counted already), an array or a list of
    numbers as a CPU tensor, or statistics a tap counted."""
    if isinstance(value, Counted):
        return value
    if value is None:
        raise TypeError(f"histogram {tag!r}: its function returned None{_NONE_HINT}")
    return array_value("histogram", tag, value)


def norm_inputs(tag: str, value: Any, optional: bool) -> list[Any] | None:
    """The values whose norm a norm op writes (one, or each of a list: a global norm),
    each then checked as a histogram's; None when there are none and the op is
    optional, as a frozen layer's gradients."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    present = [v for v in values if v is not None]
    if not present and optional:
        return None
    if len(present) != len(values) and not optional:
        raise TypeError(f"norm {tag!r}: its function returned None{_NONE_HINT}")
    return present


def array_value(kind: str, tag: str, value: Any) -> torch.Tensor:
    """``value`` as a real tensor that holds values, for a ``kind`` op (a histogram, an
    image, an audio clip) that checks its dtype and shape itself: a tensor as it is, on
    its device; an array or a list of numbers as a CPU tensor."""
    if isinstance(value, torch.Tensor):
        _check_real_tensor(kind, tag, value)
        return value
    if value is None:
        raise TypeError(f"{kind} {tag!r}: its function returned None")
    if isinstance(value, Mapping):
        raise _mapping_error(kind, tag, value)
    try:
        array = np.asarray(value)
    except Exception as error:
        raise TypeError(f"{kind} {tag!r}: cannot read {value!r} as an array") from error
    if array.dtype.kind not in "biuf":
        raise TypeError(
            f"{kind} {tag!r} must hold real numbers, got {value!r} (dtype {array.dtype})"
        )
    return torch.from_numpy(np.ascontiguousarray(array))


def text_tensor(tag: str, value: Any) -> TensorProto:
    """The string ``TensorProto`` of a text summary: a ``str`` (shape ``[]``), or a list or
    a 1-D or 2-D array of them (a 2-D one is shown as a table).

    Raises:
        TypeError: If ``value`` holds anything but strings, naming the tag.
        ValueError: If it has more than two dimensions, naming the tag.
    """
    if isinstance(value, (str, bytes)):
        return TensorProto(dtype=types_pb2.DT_STRING, string_val=[_utf8(value)])
    if value is None:
        raise TypeError(f"text {tag!r}: its function returned None")
    if isinstance(value, Mapping):
        raise _mapping_error("text", tag, value)
    try:
        array = np.asarray(value, dtype=object)
    except Exception as error:
        raise TypeError(f"text {tag!r}: cannot read {value!r} as strings") from error
    if array.ndim > 2:
        raise ValueError(
            f"text {tag!r} must be a string or a 1-D or 2-D array of them, got shape {array.shape}"
        )
    items = array.reshape(-1).tolist()
    if not all(isinstance(item, (str, bytes)) for item in items):
        raise TypeError(f"text {tag!r} must hold strings, got {value!r}")
    shape = TensorShapeProto(dim=[TensorShapeProto.Dim(size=n) for n in array.shape])
    return TensorProto(
        dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=[_utf8(i) for i in items]
    )


def _utf8(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8")


def _check_real_tensor(kind: str, tag: str, value: torch.Tensor) -> None:
    if value.layout != torch.strided:
        raise TypeError(
            f"{kind} {tag!r} got a {value.layout} tensor of shape {tuple(value.shape)}; "
            "summaries take dense tensors: return its .to_dense() to count every element, "
            "zeros included, or its stored values (.coalesce().values() for sparse COO)"
        )
    if value.is_complex():
        raise TypeError(f"{kind} {tag!r} must be real, got a {value.dtype} tensor")
    if value.device.type == "meta":
        raise ValueError(f"{kind} {tag!r} is a tensor on the meta device, which holds no values")


def _mapping_error(kind: str, tag: str, value: Mapping[Any, Any]) -> TypeError:
    keys = ", ".join(repr(key) for key in list(value)[:5])
    return TypeError(
        f"{kind} {tag!r} got a dict (keys {keys}); return one of its values, such as "
        "out['loss']: under Lightning, a one-argument function gets the batch's outputs, "
        "what training_step returned as a dict with 'loss', even when it returned a tensor"
    )
