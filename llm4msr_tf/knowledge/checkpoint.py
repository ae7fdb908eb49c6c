"""Checkpoints of the knowledge job: every finished LLM batch is kept, so a killed run resumes it.

The job's output is built in a temp directory and swapped in only at the end, so a run killed
after hours would otherwise lose every vector it computed. Each Beam batch the model handler
finishes is written as one small gzip TFRecord file (``prompt_sha256``, ``vector``, ``text``,
the record schema of `llm4msr_tf.knowledge.store`) into a checkpoint directory beside the
output, ``.<out>.llm4msr-ckpt/`` (temp file + rename, so a file is complete or absent). The
next run with the same LLM settings reads those files like reusable old vectors and sends only
the remaining prompts to the LLM; a finished run deletes the directory. Settings that change
what a vector means (`llm4msr_tf.knowledge.job.REUSE_FIELDS`) are recorded in the directory: a
run with other settings starts a fresh checkpoint. The directory must be on a file system the
workers share (the same requirement as ``--out``).
"""
import glob
import hashlib
import json
import logging
import os
import uuid
from typing import Any, Dict, Optional, Sequence, Tuple

from llm4msr_tf.utils.io import (ARTIFACT_MARKER, UserInputError, remove_tree_marker_last, respect_umask,
                                 artifact_kind, temp_tag, write_marker)

log = logging.getLogger(__name__)

KIND = "knowledge-checkpoint"
SETTINGS_FILENAME = "settings.json"
BATCH_PREFIX = "batch-"
BATCH_SUFFIX = ".tfrecord.gz"


def checkpoint_dir(out: str) -> str:
    """The checkpoint directory of KNOWLEDGE_DIR `out`: ``.<name>.llm4msr-ckpt`` beside it."""
    out = os.path.abspath(out)
    return os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.llm4msr-ckpt")


def batch_files(directory: str) -> list:
    """The finished batch files of a checkpoint directory, sorted."""
    return sorted(glob.glob(os.path.join(directory, f"{BATCH_PREFIX}*{BATCH_SUFFIX}")))


def open_checkpoint(out: str, settings: Dict[str, Any]) -> Tuple[str, Optional[str]]:
    """Create or reuse the checkpoint directory of `out` for a run with `settings`.

    Args:
        out: the KNOWLEDGE_DIR being written.
        settings: what a vector depends on (LLM, pooling, max length, generate); a checkpoint
            made with other settings is discarded.

    Returns:
        ``(directory, file pattern of finished batches or None when there are none)``.
    """
    d = checkpoint_dir(out)
    if os.path.lexists(d):
        if not os.path.isdir(d) or artifact_kind(d) != KIND:
            raise UserInputError(f"{d} exists but is not a knowledge checkpoint written by llm4msr; "
                                 "move it away and re-run")
        try:
            with open(os.path.join(d, SETTINGS_FILENAME), encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = None
        if old != settings:
            log.info("discarding the knowledge checkpoint %s: made with settings %s", d, old)
            remove_tree_marker_last(d, ARTIFACT_MARKER)
    if not os.path.isdir(d):
        os.makedirs(d)
        respect_umask(d, True)
        write_marker(d, KIND)
        with open(os.path.join(d, SETTINGS_FILENAME), "w", encoding="utf-8") as f:
            json.dump(settings, f, sort_keys=True)
    files = batch_files(d)
    if files:
        log.info("resuming from %d finished batch file(s) in %s", len(files), d)
    return d, (os.path.join(d, f"{BATCH_PREFIX}*{BATCH_SUFFIX}") if files else None)


def write_batch(directory: str, prompts: Sequence[str], encoded: Sequence[Any]) -> str:
    """Write one finished batch (prompt texts and their `Encoded` results) atomically; returns the file."""
    import tensorflow as tf

    from llm4msr_tf.data.prompt_format import prompt_sha256
    from llm4msr_tf.knowledge.store import KnowledgeRecord, record_to_example

    shas = [prompt_sha256(p) for p in prompts]
    digest = hashlib.sha256("".join(shas).encode("ascii")).hexdigest()[:16]
    name = f"{BATCH_PREFIX}{digest}-{uuid.uuid4().hex[:8]}{BATCH_SUFFIX}"
    final = os.path.join(directory, name)
    tmp = os.path.join(directory, f".{name}.tmp-{temp_tag()}")
    with tf.io.TFRecordWriter(tmp, options="GZIP") as w:
        for sha, enc in zip(shas, encoded):
            w.write(record_to_example(KnowledgeRecord("", "", enc.vector, enc.text or "", sha)).SerializeToString())
    tf.io.gfile.rename(tmp, final, overwrite=True)
    return final


def clear(out: str) -> None:
    """Delete the checkpoint of `out` (after the run that used it committed its output)."""
    d = checkpoint_dir(out)
    if os.path.isdir(d) and artifact_kind(d) == KIND:
        remove_tree_marker_last(d, ARTIFACT_MARKER)
