"""Compile this project's pipeline for Vertex AI Pipelines / Kubeflow Pipelines v2.

``python pipeline/kubeflow_v2_runner.py [OUTPUT.json]`` writes the pipeline spec (default
`configs.PIPELINE_DEFINITION_FILE`); nothing runs. Compiling uploads the module file as a wheel
under the GCS pipeline root (credentials needed). Submit it with::

    python -c "from google.cloud import aiplatform as ai; ai.init(project='P', location='R'); \\
        ai.PipelineJob(display_name='llm4msr', template_path='llm4msr_pipeline.json').submit()"

``--print-config`` shows the settings as JSON and exits.
"""
import sys

import configs

from llm4msr_tf.tfx.runner import compile_kubeflow
from llm4msr_tf.utils.logging_utils import setup_logging


def main(argv: list) -> int:
    """Compile (or with --print-config, show) the Vertex / Kubeflow v2 pipeline."""
    cfg = configs.vertex_config()
    if "--print-config" in argv:
        return configs.print_config(cfg)
    setup_logging()
    outputs = [a for a in argv if not a.startswith("-")]
    print(f"wrote {compile_kubeflow(cfg, outputs[0] if outputs else configs.PIPELINE_DEFINITION_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
