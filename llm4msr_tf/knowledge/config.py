"""`KnowledgeConfig`: every flag of `llm4msr knowledge`, with defaults that run."""
import dataclasses
from typing import Optional

DEFAULT_LLM = "gemma3-270m"


@dataclasses.dataclass
class EncoderConfig:
    """How prompts become vectors: which LLM, pooling, truncation, generation, device."""

    llm: str = dataclasses.field(
        default=DEFAULT_LLM,
        metadata={"help": "LLM spec: gemma3-270m | minilm | hf:DIR | gguf:FILE | st:DIR (local files only)"},
    )
    pooling: str = dataclasses.field(
        default="auto",
        metadata={
            "choices": ["auto", "last", "mean"],
            "help": "pool the last hidden layer over tokens: last non-padding token or masked mean; "
            "auto = last for causal LMs (the paper's final hidden state), mean for sentence encoders",
        },
    )
    max_length: int = dataclasses.field(
        default=512, metadata={"help": "prompt tokens kept (longer prompts are truncated and counted)"}
    )
    generate: int = dataclasses.field(
        default=0,
        metadata={"help": "greedy-generate up to N tokens of explanation first (causal LMs); the text "
                  "is stored and the vector pools prompt + generated tokens"},
    )
    batch_size: int = dataclasses.field(default=16, metadata={"help": "prompts per forward pass"})
    device: str = dataclasses.field(
        default="auto", metadata={"help": "auto (cuda when present, else cpu) | cpu | cuda | cuda:N"}
    )
    threads: int = dataclasses.field(
        default=0, metadata={"help": "torch CPU threads; 0 = every core this process may use"}
    )
    precision: str = dataclasses.field(
        default="auto",
        metadata={"choices": ["auto", "fp32", "bf16"],
                  "help": "LLM arithmetic: auto = fp32 on CPU, bf16 weights on GPU; bf16 on a CPU runs the "
                  "matmuls in bf16 (autocast; ~2x on CPUs with AMX/AVX512-BF16, vectors within ~1%% of "
                  "fp32); part of a vector's identity (a changed --precision recomputes)"},
    )
    compile: bool = dataclasses.field(
        default=False,
        metadata={"help": "torch.compile the LLM's forward pass (fuses its element-wise work: ~1.3x on CPU "
                  "after a one-off compile of ~40-80 s per worker; worth it for thousands of prompts)"},
    )
    trust_remote_code: bool = dataclasses.field(
        default=False, metadata={"help": "allow custom model code in an hf:DIR (e.g. ChatGLM2)"}
    )
    cache_dir: Optional[str] = dataclasses.field(
        default=None,
        metadata={"help": "GGUF->safetensors cache (default $LLM4MSR_CACHE or ~/.cache/llm4msr_tf)"},
    )


@dataclasses.dataclass
class KnowledgeConfig(EncoderConfig):
    """Config of the knowledge Beam job: inputs, output, encoder and Beam batching."""

    data: str = dataclasses.field(default="", metadata={"help": "DATA_DIR written by `llm4msr prepare` (reads DATA_DIR/prompts/*.jsonl)"})
    out: str = dataclasses.field(default="", metadata={"help": "KNOWLEDGE_DIR to write (an existing one is updated incrementally)"})
    reuse: bool = dataclasses.field(
        default=True,
        metadata={"help": "reuse vectors already in --out whose prompt hash matches (same LLM settings)"},
    )
    sort_window: int = dataclasses.field(
        default=16,
        metadata={"help": "Beam hands the model up to batch_size*sort_window prompts at once; they are "
                  "sorted by token length before batching, so little compute is spent on padding"},
    )
    num_shards: int = dataclasses.field(default=1, metadata={"help": "output TFRecord shards (0 = let the runner decide)"})
    share_model_across_processes: bool = dataclasses.field(
        default=False,
        metadata={"help": "one model copy per machine shared by all worker processes (Beam "
                  "MultiProcessShared) instead of one per process; use with many workers per machine"},
    )
    runner: str = dataclasses.field(
        default="DirectRunner",
        metadata={"help": "Beam runner (DirectRunner, DataflowRunner, FlinkRunner, SparkRunner, ...); "
                  "other Beam pipeline options may follow on the command line"},
    )
    direct_num_workers: int = dataclasses.field(
        default=1, metadata={"help": "DirectRunner workers (>1 runs them in separate processes)"}
    )
