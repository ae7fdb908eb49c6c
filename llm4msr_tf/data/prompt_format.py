"""The prompts format: ``DATA_DIR/prompts/{scenario,user}.jsonl``, one `Prompt` per line.

One JSON object per line: ``{"key": str, "key_type": "scenario"|"user", "prompt": str,
"truncated": bool}``. `llm4msr prepare` writes it (`write_prompts`), the knowledge job reads
it (`read_prompts`). Prompts are identified by the sha256 of their text, which is what
deduplication and incremental knowledge runs key on.
"""
import dataclasses
import hashlib
import json
import os
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from llm4msr_tf.utils.io import UserInputError, write_text

KEY_TYPES = ("scenario", "user")
PROMPTS_DIRNAME = "prompts"


def prompt_sha256(text: str) -> str:
    """sha256 hex digest of a prompt's UTF-8 text (its identity for dedupe and resume)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One prompt record: which scenario or user it describes, its text, and whether it was cut."""

    key: str
    key_type: str
    prompt: str
    truncated: bool = False

    @property
    def sha256(self) -> str:
        """Identity of the prompt text (dedupe / resume key)."""
        return prompt_sha256(self.prompt)

    def to_dict(self) -> Dict[str, object]:
        """The JSONL record."""
        return dataclasses.asdict(self)


def prompt_path(data_dir: str, key_type: str) -> str:
    """Path of ``DATA_DIR/prompts/<key_type>.jsonl``."""
    if key_type not in KEY_TYPES:
        raise ValueError(f"key_type must be one of {list(KEY_TYPES)}, got {key_type!r}")
    return os.path.join(data_dir, PROMPTS_DIRNAME, f"{key_type}.jsonl")


def write_prompts(data_dir: str, prompts: Iterable[Prompt]) -> Dict[str, str]:
    """Write every key type's prompt file of DATA_DIR (atomically each, an empty file for none).

    Args:
        data_dir: the prepared dataset directory (``prompts/`` is created in it).
        prompts: the records; each goes to the file of its ``key_type``.

    Returns:
        key type -> path written.
    """
    by_type: Dict[str, List[str]] = {t: [] for t in KEY_TYPES}
    for p in prompts:
        if p.key_type not in by_type:
            raise ValueError(f"prompt {p.key!r}: key_type must be one of {list(KEY_TYPES)}, got {p.key_type!r}")
        by_type[p.key_type].append(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")
    return {t: write_text(prompt_path(data_dir, t), "".join(lines)) for t, lines in by_type.items()}


def prompt_files(data_dir: str) -> List[str]:
    """The prompt files of a prepared dataset (scenario first); clear error when there are none."""
    files = [prompt_path(data_dir, t) for t in KEY_TYPES if os.path.isfile(prompt_path(data_dir, t))]
    if not files:
        if not os.path.isdir(data_dir):
            raise UserInputError(f"--data {data_dir} does not exist; run `llm4msr prepare` first")
        raise UserInputError(
            f"no prompts in {os.path.join(data_dir, PROMPTS_DIRNAME)} (expected scenario.jsonl and/or "
            "user.jsonl); run `llm4msr prepare` on this dataset first"
        )
    return files


def parse_prompt_line(line: str, source: str = "<prompts>", lineno: Optional[int] = None) -> Optional[Prompt]:
    """Parse one JSONL line into a `Prompt` (None for a blank line); errors name file and line."""
    where = f"{source}:{lineno}" if lineno is not None else source
    line = line.strip()
    if not line:
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserInputError(f"{where}: not valid JSON ({e}); fix the line or re-run `llm4msr prepare`") from e
    if not isinstance(obj, dict):
        raise UserInputError(f"{where}: expected a JSON object with key, key_type, prompt")
    missing = [f for f in ("key", "key_type", "prompt") if f not in obj]
    if missing:
        raise UserInputError(f"{where}: missing field(s) {missing}; each line needs key, key_type, prompt")
    if obj["key_type"] not in KEY_TYPES:
        raise UserInputError(f"{where}: key_type {obj['key_type']!r} is not one of {list(KEY_TYPES)}")
    if not isinstance(obj["prompt"], str) or not obj["prompt"].strip():
        raise UserInputError(f"{where}: empty prompt for {obj['key_type']} {obj['key']!r}")
    return Prompt(key=str(obj["key"]), key_type=obj["key_type"], prompt=obj["prompt"],
                  truncated=bool(obj.get("truncated", False)))


def iter_prompt_file(path: str) -> Iterator[Prompt]:
    """Every prompt in one JSONL file, with file:line errors."""
    expected = os.path.basename(path).split(".")[0]
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            p = parse_prompt_line(line, path, i)
            if p is None:
                continue
            if expected in KEY_TYPES and p.key_type != expected:
                raise UserInputError(f"{path}:{i}: key_type {p.key_type!r} in the {expected} prompt file")
            yield p


def read_prompts(data_dir: str, key_type: Optional[str] = None) -> List[Prompt]:
    """The prompts of a prepared dataset, validated line by line, in file order.

    Args:
        data_dir: a directory holding ``prompts/*.jsonl`` (written by ``llm4msr prepare``).
        key_type: ``"scenario"`` or ``"user"`` for one file; None for both (scenario first).

    Returns:
        One `Prompt` per key: a key may appear twice only with the same prompt (the repeat is
        dropped); two different prompts for one key are an error.
    """
    files = [prompt_path(data_dir, key_type)] if key_type else prompt_files(data_dir)
    seen: Dict[Tuple[str, str], Prompt] = {}
    for path in files:
        if not os.path.isfile(path):
            raise UserInputError(f"{path} does not exist; run `llm4msr prepare` on this dataset first")
        for p in iter_prompt_file(path):
            old = seen.get((p.key_type, p.key))
            if old is not None and old.prompt != p.prompt:
                raise UserInputError(
                    f"{path}: {p.key_type} {p.key!r} appears twice with different prompts; "
                    "keep one line per key (re-run `llm4msr prepare`)"
                )
            seen.setdefault((p.key_type, p.key), p)
    if key_type is None and not seen:
        raise UserInputError(f"the prompt files in {data_dir}/prompts are empty; re-run `llm4msr prepare`")
    return list(seen.values())
