"""Reading the prompts JSONL written by `llm4msr prepare` (DATA_DIR/prompts/{scenario,user}.jsonl).

One JSON object per line: ``{"key": str, "key_type": "scenario"|"user", "prompt": str,
"truncated": bool}``. Prompts are identified by the sha256 of their text, which is what
deduplication and incremental runs key on.
"""
import dataclasses
import hashlib
import json
import os
from typing import Dict, Iterator, List, Optional, Tuple

from llm4msr_tf.knowledge.store import KEY_TYPES
from llm4msr_tf.utils.io import UserInputError


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One prompt line: which scenario/user it describes and its text."""

    key_type: str
    key: str
    prompt: str
    truncated: bool = False

    @property
    def sha256(self) -> str:
        """Identity of the prompt text (dedupe / resume key)."""
        return prompt_sha256(self.prompt)


def prompt_sha256(text: str) -> str:
    """sha256 hex digest of a prompt's UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_files(data_dir: str) -> List[str]:
    """The prompt files of a prepared dataset (scenario first); clear error when there are none."""
    d = os.path.join(data_dir, "prompts")
    files = [os.path.join(d, f"{t}.jsonl") for t in KEY_TYPES if os.path.isfile(os.path.join(d, f"{t}.jsonl"))]
    if not files:
        if not os.path.isdir(data_dir):
            raise UserInputError(f"--data {data_dir} does not exist; run `llm4msr prepare` first")
        raise UserInputError(
            f"no prompts in {d} (expected scenario.jsonl and/or user.jsonl); "
            "run `llm4msr prepare` on this dataset first"
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
    return Prompt(obj["key_type"], str(obj["key"]), obj["prompt"], bool(obj.get("truncated", False)))


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


def read_prompts(data_dir: str) -> Tuple[List[Prompt], Dict[str, int]]:
    """All prompts of a dataset, validated: a key may appear twice only with the same prompt.

    Returns (unique prompts, stats) with stats counting lines, duplicate lines and prompts
    already truncated by `prepare`.
    """
    seen: Dict[Tuple[str, str], Prompt] = {}
    stats = {"lines": 0, "duplicate_lines": 0, "truncated_in_prepare": 0}
    for path in prompt_files(data_dir):
        for p in iter_prompt_file(path):
            stats["lines"] += 1
            old = seen.get((p.key_type, p.key))
            if old is not None:
                if old.prompt != p.prompt:
                    raise UserInputError(
                        f"{path}: {p.key_type} {p.key!r} appears twice with different prompts; "
                        "keep one line per key (re-run `llm4msr prepare`)"
                    )
                stats["duplicate_lines"] += 1
                continue
            seen[(p.key_type, p.key)] = p
            stats["truncated_in_prepare"] += int(p.truncated)
    prompts = list(seen.values())
    if not prompts:
        raise UserInputError(f"the prompt files in {data_dir}/prompts are empty; re-run `llm4msr prepare`")
    return prompts, stats
