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
    try:
        return cls(num_scenarios=num_scenarios, **params)
    except (TypeError, ValueError) as e:
        # Backbones raise TypeError/ValueError naming the parameter; keep the type, add which backbone.
        raise type(e)(f"backbone {name!r}: bad hyper-parameters {params} ({e}); fix backbone_params "
                      "(--backbone-params or the --model-config file)") from e
