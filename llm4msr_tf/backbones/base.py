"""The backbone contract and the registry of backbones by name.

A backbone is a `tf.keras.layers.Layer` with

    call(features, scenario_id, training=None) -> logit

``features`` float32 [B, D] (the flattened feature embeddings, after the user-level meta
layer when LLM4MSR is on), ``scenario_id`` int [B] in 0..S-1, ``logit`` float32 [B, 1].
Its constructor takes ``num_scenarios`` plus its own keyword hyper-parameters, and
``get_config`` round-trips. Subclass `Backbone`, register it with
``@register("name")`` (and ``tf.keras.utils.register_keras_serializable`` for saving), and
`LLM4MSR` / ``llm4msr train`` can use it by name.
"""
from typing import Any, Callable, Dict, List, Type

import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
import tensorflow as tf


_REGISTRY: Dict[str, Type["Backbone"]] = {}


class Backbone(tf.keras.layers.Layer):
    """Base class of multi-scenario backbones: (features [B, D], scenario_id [B]) -> logit [B, 1]."""

    def __init__(self, num_scenarios: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if int(num_scenarios) < 1:
            raise ValueError(f"num_scenarios must be >= 1, got {num_scenarios}")
        self.num_scenarios = int(num_scenarios)

    def call(self, features: tf.Tensor, scenario_id: tf.Tensor, training: Any = None) -> tf.Tensor:
        """Forward pass (shapes in the class docstring)."""
        raise NotImplementedError

    def select(self, stacked: tf.Tensor, scenario_id: tf.Tensor) -> tf.Tensor:
        """Pick each example's own scenario slice from per-scenario outputs [B, S, k] -> [B, k]."""
        sid = tf.cast(tf.reshape(scenario_id, [-1]), tf.int32)
        return tf.gather(stacked, sid, axis=1, batch_dims=1)

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(num_scenarios=self.num_scenarios)
        return cfg


def register(name: str) -> Callable[[Type[Backbone]], Type[Backbone]]:
    """Class decorator: make a backbone available by `name` (e.g. to ``llm4msr train --backbone``).

    Args:
        name: the registry name.

    Returns:
        The decorator; it registers the class and returns it unchanged.
    """

    def deco(cls: Type[Backbone]) -> Type[Backbone]:
        if not (isinstance(cls, type) and issubclass(cls, tf.keras.layers.Layer)):
            raise TypeError(f"backbone {name!r} must be a tf.keras.layers.Layer subclass")
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> List[str]:
    """Registered backbone names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Type[Backbone]:
    """The backbone class registered as `name`.

    Args:
        name: a registry name (see `available`).

    Returns:
        The class.

    Raises:
        ValueError: unknown name; the message lists the registered ones.
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown backbone {name!r}; available backbones: {', '.join(available())} "
            "(register your own with llm4msr_tf.backbones.register)")
    return _REGISTRY[name]


def check_hyperparameters(name: str, params: Dict[str, Any]) -> None:
    """Refuse hyper-parameters that cannot build a network, by the naming convention of the backbones.

    ``num_*`` are integers >= 0 (``num_experts``, ``num_levels`` >= 1), ``*_dim`` integers >= 1, ``*_units`` lists of integers >= 1, ``dropout``
    lies in [0, 1), ``momentum`` in [0, 1] and ``epsilon`` is > 0. (A negative expert count used
    to build an empty layer list and fail later with an unrelated error.)

    Raises:
        ValueError: naming the backbone, the parameter and its value.
    """
    def bad(key: str, value: Any, want: str) -> ValueError:
        return ValueError(f"backbone {name!r}: {key}={value!r} is invalid, {key} must be {want} "
                          "(--backbone-params)")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")

    for key, value in params.items():
        if key.startswith("num_") or key.endswith("_dim"):
            low = 0 if key.startswith("num_") and key not in ("num_experts", "num_levels") else 1
            if not (is_int(value) and value >= low):
                raise bad(key, value, f"an integer >= {low}")
        elif key.endswith("_units"):
            vals = [value] if is_int(value) else value
            if not (isinstance(vals, (list, tuple)) and all(is_int(v) and v >= 1 for v in vals)):
                raise bad(key, value, "a list of integers >= 1")
        elif key == "dropout" and not (is_num(value) and 0 <= value < 1):
            raise bad(key, value, "a number in [0, 1)")
        elif key == "momentum" and not (is_num(value) and 0 <= value <= 1):
            raise bad(key, value, "a number in [0, 1]")
        elif key == "epsilon" and not (is_num(value) and value > 0):
            raise bad(key, value, "a number > 0")


def create(name: str, num_scenarios: int, **params: Any) -> Backbone:
    """Instantiate the backbone `name` with its hyper-parameters.

    Args:
        name: a registry name.
        num_scenarios: S, the number of scenarios.
        **params: the backbone's own hyper-parameters.

    Returns:
        The backbone layer.

    Raises:
        ValueError: unknown name. TypeError: parameters the backbone does not take.
    """
    cls = get(name)
    check_hyperparameters(name, params)
    try:
        return cls(num_scenarios=num_scenarios, **params)
    except TypeError as e:
        raise TypeError(f"backbone {name!r}: bad hyper-parameters {params} ({e})") from e
