"""Serving stage: a trained model -> TF Serving SavedModel, its config files, and clients.

One module per idea:

- `signatures`: the serving API (``serving_default``, ``predict_raw``) and its parse spec;
- `warmup`: PredictionLog warmup records from real examples;
- `export`: `export_saved_model` / `export_versioned` (atomic, TF Serving / Pusher layout);
- `versions`: ``BASE/<model_name>/<version>/`` directories, `find_saved_model`;
- `server_config`: ``models.config`` and batching parameter files;
- `client`: REST, gRPC and in-process clients with one interface;
- `scoring`: score a prepared split through any client (what ``llm4msr predict`` runs).

Every name below is importable from here; TensorFlow loads only when a function needs it.
"""
from llm4msr_tf.utils.lazy import lazy_getattr

_NAMES = {
    **dict.fromkeys(
        ("SERVING_SIGNATURE", "RAW_SIGNATURE", "EXAMPLES_INPUT", "OUTPUT_KEYS", "DEFAULT_MODEL_NAME",
         "ServingModule", "serving_feature_spec", "raw_input_signature", "model_extra_features"),
        "llm4msr_tf.serving.signatures"),
    **dict.fromkeys(
        ("WARMUP_DIRNAME", "WARMUP_FILENAME", "DEFAULT_WARMUP_BATCH_SIZES", "read_examples",
         "build_warmup_logs", "write_warmup", "read_warmup", "replay_warmup"),
        "llm4msr_tf.serving.warmup"),
    **dict.fromkeys(
        ("ExportConfig", "EXPORT_METADATA_FILENAME", "export_saved_model", "export_versioned",
         "saved_model_signatures", "load_export_metadata"),
        "llm4msr_tf.serving.export"),
    **dict.fromkeys(
        ("existing_versions", "next_version", "latest_version_dir", "find_saved_model"),
        "llm4msr_tf.serving.versions"),
    **dict.fromkeys(
        ("models_config_text", "parse_models_config", "write_models_config", "batching_parameters_text",
         "parse_batching_parameters", "write_serving_dir_config"),
        "llm4msr_tf.serving.server_config"),
    **dict.fromkeys(
        ("ServingError", "RestClient", "GrpcClient", "LocalClient", "make_client", "parse_host_port",
         "with_user_knowledge"),
        "llm4msr_tf.serving.client"),
    **dict.fromkeys(("PredictConfig", "predict_split"), "llm4msr_tf.serving.scoring"),
}

__all__ = sorted(_NAMES)
__getattr__ = lazy_getattr(__name__, _NAMES)
