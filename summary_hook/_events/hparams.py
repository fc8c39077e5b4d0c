"""Hyperparameters in a run's own event file, as TensorBoard's HParams dashboard reads them.

TensorBoard's hparams plugin reads three summaries, each an empty tensor whose metadata
carries an ``HParamsPluginData`` proto: ``_hparams_/experiment`` (the hyperparameters'
names and types, and the metrics' tags), ``_hparams_/session_start_info`` (this run's
values) and ``_hparams_/session_end_info`` (its status). A metric is a scalar tag of the
session's own run, so no placeholder metric and no extra run directory are needed, as
torch's ``add_hparams`` makes one.

TensorBoard keeps the first metadata of a tag in a run, and takes the experiment of the
first run that has one: the runs of a sweep that share their hyperparameters' names and
their metrics show together.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Iterable, Mapping
from typing import Any

from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.compat.proto.types_pb2 import DT_FLOAT
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

__all__ = [
    "Hparams",
    "SessionHparams",
    "checked_hparams",
    "checked_metrics",
    "flattened",
    "session_end",
    "session_start",
    "shown",
]

#: A hyperparameter's value: what TensorBoard's dashboard shows.
Hparams = dict[str, bool | float | str]

_PLUGIN = "hparams"
_EXPERIMENT_TAG = "_hparams_/experiment"
_SESSION_START_TAG = "_hparams_/session_start_info"
_SESSION_END_TAG = "_hparams_/session_end_info"
# The value of every hparams summary: TensorBoard's own, an empty float tensor.
_NULL_TENSOR = TensorProto(
    dtype=DT_FLOAT, tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=0)])
)


def checked_hparams(hparams: Any, argument: str = "hparams") -> Hparams:
    """``hparams`` as a dict of str to bool, float or str; numpy scalars become numbers.

    Raises:
        TypeError: If it is not a mapping with str keys and such values, naming the key
            and showing the value.
        ValueError: If a key is empty.
    """
    if not isinstance(hparams, Mapping):
        raise TypeError(
            f"{argument} must be a dict of names to numbers, strings or booleans, got "
            f"{hparams!r} of type {type(hparams).__name__}"
        )
    checked: Hparams = {}
    for name, value in hparams.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"{argument}: each name must be a non-empty str, got {name!r}")
        checked[name] = _value(argument, name, value)
    return checked


def _value(argument: str, name: str, value: Any) -> bool | float | str:
    if isinstance(value, (bool, str)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy or 0-d tensor
        value = value.item()
        if isinstance(value, bool):
            return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise TypeError(
        f"{argument}[{name!r}] must be a number, a string or a boolean, got {value!r} of "
        f"type {type(value).__name__}"
    )


def checked_metrics(metrics: Any, argument: str = "hparam_metrics") -> tuple[str, ...]:
    """The scalar tags to show beside the hyperparameters: a str or an iterable of them.

    Raises:
        TypeError: If it holds anything but non-empty strings, showing the value.
    """
    tags = (metrics,) if isinstance(metrics, str) else metrics
    if not isinstance(tags, Iterable):
        raise TypeError(f"{argument} must be a scalar tag or a list of them, got {metrics!r}")
    tags = tuple(tags)
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"{argument} must hold scalar tags (non-empty str), got {tag!r}")
    return tags


def session_start(
    hparams: Hparams, metrics: Iterable[str], start_time: float | None = None
) -> Summary:
    """The experiment (names, types, metrics) and this run's session start, one summary."""
    started = time.time() if start_time is None else start_time
    experiment = api_pb2.Experiment(
        time_created_secs=started,
        hparam_infos=[api_pb2.HParamInfo(name=name, type=_type(v)) for name, v in hparams.items()],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metrics],
    )
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=started)
    for name, value in hparams.items():
        if isinstance(value, bool):
            start.hparams[name].bool_value = value
        elif isinstance(value, str):
            start.hparams[name].string_value = value
        else:
            start.hparams[name].number_value = value
    summary = Summary()
    _add(summary, _EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))
    _add(summary, _SESSION_START_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start))
    return summary


def session_end(failed: bool = False, end_time: float | None = None) -> Summary:
    """This run's session end: its status, and when."""
    status = api_pb2.STATUS_FAILURE if failed else api_pb2.STATUS_SUCCESS
    ended = time.time() if end_time is None else end_time
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=ended)
    summary = Summary()
    _add(summary, _SESSION_END_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))
    return summary


def _type(value: bool | float | str) -> Any:
    """The ``api_pb2.DataType`` of a value."""
    if isinstance(value, bool):
        return api_pb2.DATA_TYPE_BOOL
    if isinstance(value, str):
        return api_pb2.DATA_TYPE_STRING
    return api_pb2.DATA_TYPE_FLOAT64


def _add(summary: Summary, tag: str, data: plugin_data_pb2.HParamsPluginData) -> None:
    data.version = 0
    plugin_data = SummaryMetadata.PluginData(plugin_name=_PLUGIN, content=data.SerializeToString())
    value = summary.value.add(tag=tag)
    value.metadata.plugin_data.CopyFrom(plugin_data)
    value.tensor.CopyFrom(_NULL_TENSOR)


def flattened(hparams: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings flattened with ``/``, as Lightning's loggers flatten them."""
    flat: dict[str, Any] = {}
    for name, value in hparams.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flattened(value, f"{key}/"))
        else:
            flat[key] = value
    return flat


def shown(value: Any) -> bool | float | str:
    """A value of another tool's hyperparameters (a Lightning module's) as the dashboard
    can show it: numbers, strings and booleans as they are, anything else as its str, as
    Lightning's loggers show it."""
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Real) and math.isfinite(float(value)):
        return float(value)
    return str(value)


class SessionHparams:
    """A run's hyperparameters, written once at its start and once at its end.

    Args:
        hparams: The values (checked with :func:`checked_hparams`).
        metrics: The scalar tags to show beside them; None: the scalar tags of the ops
            given to :meth:`start`.
    """

    def __init__(self, hparams: Hparams, metrics: tuple[str, ...] | None) -> None:
        self.hparams = hparams
        self.metrics = metrics
        self.writer: Any = None  # where the start went, and the end goes
        self.ended = False

    @property
    def started(self) -> bool:
        return self.writer is not None

    def start(self, writer: Any, default_metrics: Iterable[str], step: int = 0) -> None:
        """Write the experiment and the session's start to ``writer``, the first time only."""
        if self.writer is not None:
            return
        self.writer = writer
        metrics = self.metrics if self.metrics is not None else tuple(default_metrics)
        writer.add_summary(session_start(self.hparams, metrics), step)

    def end(self, step: int, failed: bool = False) -> None:
        """Write the session's end and its status where it started, once."""
        if self.writer is not None and not self.ended:
            self.ended = True
            self.writer.add_summary(session_end(failed), step)
