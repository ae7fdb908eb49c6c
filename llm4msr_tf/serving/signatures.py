"""The serving API of an exported model: signature names, request parse spec, signature functions.

- ``serving_default(examples: string [B])`` parses serialized tf.Examples with the dataset's
  feature spec (label dropped), optionally applies a TFX Transform graph, runs the Keras model
  and returns ``{"probability", "logit"}`` float32 ``[B, 1]``;
- ``predict_raw(<feature>: [B] ...)`` takes the raw named feature tensors (``user_id`` string,
  ``item_id`` string, ``scenario_id`` int64, extras), i.e. the REST ``"inputs"`` JSON form, and
  returns the same outputs.

Keras signatures are served by TF Serving's Predict API (REST ``:predict``, gRPC ``Predict``).
A request whose tf.Example lacks a feature fails with ``InvalidArgumentError`` whose message
names the feature (``Feature: item_id (data type: string) is required but could not be
found``); a malformed serialized example fails with ``InvalidArgumentError`` ("Could not
parse example input"). Both are per-request errors: the loaded model keeps serving.
"""
from typing import Any, Dict, Optional

from llm4msr_tf.utils.io import UserInputError

SERVING_SIGNATURE = "serving_default"
RAW_SIGNATURE = "predict_raw"
EXAMPLES_INPUT = "examples"
OUTPUT_KEYS = ("probability", "logit")
DEFAULT_MODEL_NAME = "llm4msr"


def serving_feature_spec(spec: Any) -> Dict[str, Any]:
    """The parse spec of a serving request: the dataset's feature spec without the label.

    Every feature is a FixedLenFeature without a default, so a request that lacks one fails
    with an error naming it instead of silently scoring a default value. Knowledge vectors
    joined into the data are requested only if the model reads them (`model_extra_features`).
    """
    import tensorflow as tf

    fs = dict(spec.feature_spec(with_knowledge=False))
    fs.pop(spec.label, None)
    strict = {}
    for name, f in fs.items():
        if isinstance(f, tf.io.FixedLenFeature):
            strict[name] = tf.io.FixedLenFeature(f.shape, f.dtype)
        else:
            strict[name] = f
    return strict


def raw_input_signature(parse_spec: Dict[str, Any]) -> Dict[str, Any]:
    """TensorSpecs ``[None] + shape`` named after each feature: the inputs of `predict_raw`."""
    import tensorflow as tf

    return {
        name: tf.TensorSpec([None] + list(f.shape), f.dtype, name=name)
        for name, f in sorted(parse_spec.items())
    }


def _as_outputs(out: Any) -> Dict[str, Any]:
    """Normalise the model's output to {"probability", "logit"} float32 [B, 1]."""
    import tensorflow as tf

    if not isinstance(out, dict) or not all(k in out for k in OUTPUT_KEYS):
        raise UserInputError(
            "the model must return a dict with keys 'probability' and 'logit' (float32 [B, 1]); "
            f"got {type(out).__name__}"
            + (f" with keys {sorted(out)}" if isinstance(out, dict) else "")
        )
    return {k: tf.reshape(tf.cast(out[k], tf.float32), [-1, 1]) for k in OUTPUT_KEYS}


class ServingModule:
    """Holds the model (and the optional Transform layer) and builds both signature functions."""

    def __init__(self, model: Any, spec: Any, transform_output_dir: Optional[str] = None):
        import tensorflow as tf

        self.model = model
        self.spec = spec
        self.tft_layer = None
        if transform_output_dir:
            import tensorflow_transform as tft

            tft_output = tft.TFTransformOutput(transform_output_dir)
            # Transform was fit on raw features; the request carries raw features.
            raw = dict(tft_output.raw_feature_spec())
            raw.pop(spec.label, None)
            self.parse_spec = {
                n: tf.io.FixedLenFeature(f.shape, f.dtype) if isinstance(f, tf.io.FixedLenFeature) else f
                for n, f in raw.items()
            }
            self.tft_layer = tft_output.transform_features_layer()
        else:
            self.parse_spec = serving_feature_spec(spec)
        self.parse_spec.update(model_extra_features(model))
        self.raw_signature = raw_input_signature(self.parse_spec)

    def predict_features(self, features: Dict[str, Any]) -> Dict[str, Any]:
        """Run (Transform then) the model on parsed raw features; outputs float32 [B, 1]."""
        if self.tft_layer is not None:
            features = dict(self.tft_layer(features))
            features.pop(self.spec.label, None)
        return _as_outputs(self.model(features, training=False))

    def signatures(self) -> Dict[str, Any]:
        """Concrete functions for `serving_default` and `predict_raw`."""
        import tensorflow as tf

        parse_spec = self.parse_spec

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
        def serve_examples(examples):
            """serving_default: serialized tf.Examples -> probability, logit."""
            features = tf.io.parse_example(examples, parse_spec)
            return self.predict_features(features)

        @tf.function(input_signature=[self.raw_signature])
        def serve_raw(features):
            """predict_raw: named raw feature tensors -> probability, logit."""
            return self.predict_features(dict(features))

        return {
            SERVING_SIGNATURE: serve_examples.get_concrete_function(),
            RAW_SIGNATURE: serve_raw.get_concrete_function(),
        }


def model_extra_features(model: Any) -> Dict[str, Any]:
    """Request features the model needs beyond the dataset spec.

    An LLM4MSR model in user-knowledge "feature" mode reads the user's knowledge vector from
    the request (float32 [dim]) instead of its in-model table.
    """
    import tensorflow as tf

    lookup = getattr(model, "user_knowledge", None)
    if lookup is not None and getattr(lookup, "mode", None) == "feature":
        name = getattr(model, "user_knowledge_feature", "user_knowledge")
        return {name: tf.io.FixedLenFeature([int(lookup.dim)], tf.float32)}
    return {}
