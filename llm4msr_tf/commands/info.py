"""`llm4msr info`: report the environment (versions, Keras flavour, devices) as JSON."""
import argparse
import json
import sys


def register(sub: "argparse._SubParsersAction") -> None:
    """Add the `info` subcommand."""
    p = sub.add_parser("info", help="print versions of the pinned stack and the Keras flavour")
    p.set_defaults(func=run)


def environment_info() -> dict:
    """Versions of the stack as imported in this process (TensorFlow, Keras, TFX, Beam, torch)."""
    import importlib.metadata as md

    import llm4msr_tf  # noqa: F401  (pins Keras 2 before TensorFlow loads)
    import tensorflow as tf

    info = {
        "python": sys.version.split()[0],
        "llm4msr_tf": llm4msr_tf.__version__,
        "tensorflow": tf.__version__,
        # tf.keras is a module alias; Keras 2 resolves to tf_keras.api._v2.keras.
        "tf.keras": keras_flavour(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
    }
    for pkg in ("tfx", "tf-keras", "tensorflow-recommenders", "apache-beam", "torch", "transformers"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = None
    return info


def keras_flavour() -> str:
    """'keras2 (tf_keras X.Y.Z)' when tf.keras is tf_keras, else 'keras3 (keras X.Y.Z)'."""
    import tensorflow as tf

    name = getattr(tf.keras, "__name__", "")
    if name.startswith("tf_keras"):
        import tf_keras

        return f"keras2 (tf_keras {tf_keras.__version__})"
    import keras

    return f"keras3 (keras {keras.__version__})"


def run(args: argparse.Namespace) -> int:
    """Print `environment_info()` as JSON."""
    print(json.dumps(environment_info(), indent=2))
    return 0
