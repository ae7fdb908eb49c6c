"""TFX stage: the LLM4MSR pipeline's components, trainer module, runners and run results.

- `constants`: pipeline / component / model names shared by the factory, runners, CLI, tests;
- `config`: `PipelineConfig` (holds the `TrainConfig` and `ModelConfig` the Trainer uses);
- `components`: `create_pipeline` (ExampleGen .. Pusher) and the Evaluator's `eval_config`;
- `trainer`: the module file (``preprocessing_fn``, ``run_fn``) in a package of its own;
- `runner`: `run_local` (LocalDagRunner) and `compile_kubeflow` (Vertex / Kubeflow v2 JSON);
- `results`: a run read back from ML Metadata and TFMA (`PipelineResult`).

The runnable project a team copies is the repository's ``pipeline/`` folder, which only calls
these. Importing this package loads neither TFX nor TensorFlow.
"""
from llm4msr_tf.utils.lazy import lazy_getattr

_NAMES = {
    "PipelineConfig": "llm4msr_tf.tfx.config",
    "MODULE_FILE": "llm4msr_tf.tfx.trainer",
    **dict.fromkeys(("create_pipeline", "eval_config"), "llm4msr_tf.tfx.components"),
    **dict.fromkeys(("run_local", "compile_kubeflow", "build"), "llm4msr_tf.tfx.runner"),
    **dict.fromkeys(("PipelineResult", "read_result", "slice_metrics", "validation_failures"),
                    "llm4msr_tf.tfx.results"),
}

__all__ = sorted(_NAMES)
__getattr__ = lazy_getattr(__name__, _NAMES)
