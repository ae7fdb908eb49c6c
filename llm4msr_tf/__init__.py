"""llm4msr_tf: LLM4MSR (Wang et al., CIKM 2024) for TensorFlow/Keras, TFX and TF Serving.

Three names train a model: a backbone (`backbones`), `LLM4MSR` (built by `build_model` from a
`ModelConfig`) and the knowledge loader (`load_knowledge`)::

    import llm4msr_tf as msr

    spec = msr.DatasetSpec.load("DATA_DIR")                      # from `llm4msr prepare`
    model = msr.build_model(spec, msr.ModelConfig(backbone="mmoe"),
                            knowledge=msr.load_knowledge("KNOWLEDGE_DIR"))
    msr.fit(model, spec, msr.TrainConfig(epochs=10))             # early stopping on eval AUC
    msr.evaluate(model, spec, msr.make_dataset(spec, "test", 4096))
    msr.export_saved_model(model, spec, "serving/llm4msr/1")     # for TF Serving

These names load lazily: ``import llm4msr_tf`` itself imports no TensorFlow. It pins
``tf.keras`` to Keras 2 (``tf_keras``): TFX 1.16, TensorFlow Transform and TensorFlow
Recommenders 0.7.7 only work with Keras 2, and ``tensorflow_transform`` flips
``TF_USE_LEGACY_KERAS`` itself on import; setting it here, once, before TensorFlow is imported
avoids a process with mixed Keras versions.
"""
import os as _os
import sys as _sys

__version__ = "0.1.0"


def _keras_flavour(tf_module) -> str:
    """``unresolved`` while ``tf.keras`` is still TensorFlow's lazy loader, else ``2`` or ``3``.

    Reading only ``_tfll_*`` attributes (and the module ``__dict__``) never resolves the loader.
    """
    keras_mod = vars(tf_module).get("keras")
    if keras_mod is None:
        return "unresolved"
    if type(keras_mod).__name__ == "KerasLazyLoader":
        if not keras_mod._tfll_initialized:
            return "unresolved"
        return "2" if vars(keras_mod).get("_tfll_keras_version") in ("tf_keras", "keras_2") else "3"
    name = getattr(keras_mod, "__name__", "")
    return "2" if name.startswith("tf_keras") or name.startswith("keras.api._v2") else "3"


def _pin_keras2() -> None:
    """Make tf.keras resolve to Keras 2 (tf_keras), or fail clearly if it is too late.

    TensorFlow picks the Keras flavour when ``tf.keras`` is first *used*, not when TensorFlow is
    imported. So a process that imported TensorFlow first (a Beam SDK worker unpickling a
    ``ProtoCoder(tf.train.Example)`` before our DoFns, a TFX executor) is still fine as long as
    nothing touched ``tf.keras`` yet: the flag is set now and ``tf.keras`` becomes Keras 2, the
    same thing ``tensorflow_transform`` does on import. Only a ``tf.keras`` already resolved to
    Keras 3 is an error.
    """
    if "tensorflow" in _sys.modules and _keras_flavour(_sys.modules["tensorflow"]) == "3":
        raise ImportError(
            "llm4msr_tf needs tf.keras to be Keras 2, but TensorFlow was already imported "
            "with Keras 3. Fix: import llm4msr_tf before tensorflow, or set "
            "TF_USE_LEGACY_KERAS=1 in the environment before starting Python."
        )
    _os.environ["TF_USE_LEGACY_KERAS"] = "1"
    # TensorFlow's C++ start-up chatter (CUDA plugin registration, CPU features) hides our
    # progress output; users can still ask for it by setting the variable themselves.
    # Level 3 also hides the harmless "Unable to register cuFFT/cuDNN factory" lines that the
    # CUDA build prints on every start; Python exceptions still carry TensorFlow's messages.
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _quiet_known_warnings() -> None:
    """Hide warnings that every run prints and no user can act on (logged once per process)."""
    import warnings

    # google-api-core (pulled in by TFX/Beam) warns on every import that Python 3.10 is old;
    # TFX 1.16 requires Python < 3.11, so there is nothing to do about it.
    warnings.filterwarnings("ignore", message=".*non-supported Python version.*", category=FutureWarning)


_pin_keras2()
_quiet_known_warnings()

# After the pin: nothing above may import TensorFlow, and nothing below does until used.
from llm4msr_tf.utils.lazy import lazy_getattr as _lazy_getattr  # noqa: E402

_PUBLIC = {
    "LLM4MSR": "llm4msr_tf.models.llm4msr",
    "ModelConfig": "llm4msr_tf.models.config",
    "TrainConfig": "llm4msr_tf.models.config",
    **dict.fromkeys(("build_model", "load_model", "save_model"), "llm4msr_tf.models.build"),
    "load_knowledge": "llm4msr_tf.knowledge.store:load",
    "backbones": "llm4msr_tf.backbones",
    **dict.fromkeys(("fit", "evaluate", "make_dataset"), "llm4msr_tf.training"),
    "DatasetSpec": "llm4msr_tf.data.spec",
    "export_saved_model": "llm4msr_tf.serving.export",
}
__all__ = sorted(_PUBLIC)
__getattr__ = _lazy_getattr(__name__, _PUBLIC)
