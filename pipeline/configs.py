"""Settings of this TFX project: edit the values (or set the environment variables) for your data.

Both runners build their `llm4msr_tf.tfx.PipelineConfig` here. Training and model settings are
the library's own `TrainConfig` / `ModelConfig` (the ones `llm4msr train` uses), so the
Trainer trains exactly like the fast path: same loop, same early stopping on the eval AUC.
"""
import dataclasses
import json
import os

from llm4msr_tf.config import to_dict
from llm4msr_tf.tfx.config import PipelineConfig

PIPELINE_NAME = os.environ.get("LLM4MSR_PIPELINE_NAME", "llm4msr")

# Inputs: a DATA_DIR from `llm4msr prepare` and a KNOWLEDGE_DIR from `llm4msr knowledge`
# (local paths for the local runner, gs:// URIs on Vertex). An empty KNOWLEDGE_DIR trains
# the bare backbone.
DATA_DIR = os.environ.get("LLM4MSR_DATA_DIR", "data")
KNOWLEDGE_DIR = os.environ.get("LLM4MSR_KNOWLEDGE_DIR", "knowledge")

# Model and training (any ModelConfig / TrainConfig field can be set the same way).
BACKBONE = os.environ.get("LLM4MSR_BACKBONE", "mmoe")
EPOCHS = int(os.environ.get("LLM4MSR_EPOCHS", "3"))

# Local runs.
LOCAL_ROOT = os.environ.get("LLM4MSR_LOCAL_ROOT", "pipeline_out")

# Vertex AI Pipelines / Kubeflow Pipelines v2: the bucket for the pipeline root and the
# pushed models, the image holding this package (built from gcr.io/tfx-oss-public/tfx:1.16.0
# with `pip install .`), and Dataflow for the Beam components.
GOOGLE_CLOUD_PROJECT = os.environ.get("GOOGLE_CLOUD_PROJECT", "my-project")
GOOGLE_CLOUD_REGION = os.environ.get("GOOGLE_CLOUD_REGION", "us-central1")
GCS_BUCKET = os.environ.get("LLM4MSR_GCS_BUCKET", "my-bucket")
IMAGE = os.environ.get("LLM4MSR_IMAGE", f"{GOOGLE_CLOUD_REGION}-docker.pkg.dev/{GOOGLE_CLOUD_PROJECT}/llm4msr/tfx:1")
PIPELINE_DEFINITION_FILE = f"{PIPELINE_NAME}_pipeline.json"
DATAFLOW_BEAM_ARGS = (f"--runner=DataflowRunner --project={GOOGLE_CLOUD_PROJECT} --region={GOOGLE_CLOUD_REGION} "
                      f"--temp_location=gs://{GCS_BUCKET}/tmp")


def _config(data: str, knowledge: str, root: str, serving: str, **fields: object) -> PipelineConfig:
    base = PipelineConfig()
    train = dataclasses.replace(base.train, data=data, knowledge=knowledge or None, epochs=EPOCHS)
    model = dataclasses.replace(base.model, backbone=BACKBONE, use_knowledge=bool(knowledge))
    return dataclasses.replace(base, train=train, model=model, pipeline_name=PIPELINE_NAME,
                               pipeline_root=root, serving_dir=serving, **fields)


def print_config(cfg: PipelineConfig) -> int:
    """Show a config as JSON (the runners' ``--print-config``); returns exit code 0."""
    print(json.dumps(to_dict(cfg), indent=2, sort_keys=True))
    return 0


def local_config() -> PipelineConfig:
    """The pipeline on this machine: LocalDagRunner, MLMD in SQLite under the local root."""
    return _config(DATA_DIR, KNOWLEDGE_DIR, os.path.join(LOCAL_ROOT, "root"), os.path.join(LOCAL_ROOT, "serving"))


def vertex_config() -> PipelineConfig:
    """The pipeline on Vertex AI / Kubeflow v2: GCS root, Dataflow for Beam, the project image."""
    return _config(DATA_DIR, KNOWLEDGE_DIR, f"gs://{GCS_BUCKET}/{PIPELINE_NAME}/root",
                   f"gs://{GCS_BUCKET}/{PIPELINE_NAME}/serving", image=IMAGE, beam_args=DATAFLOW_BEAM_ARGS)
