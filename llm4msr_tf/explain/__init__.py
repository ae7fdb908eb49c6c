"""Interpretability views of LLM4MSR: what the knowledge says, and what it changes in each prediction.

- `scenario_map`: the LLM's scenario similarity (after the model's centring) beside the data's
  own scenario relations (user / item overlap, correlation of positive rates) with their rank
  correlation; `user_map` runs the same check over user pairs.
- `changes`: per example, the logit with and without each knowledge level (`LLM4MSR.decompose`),
  aggregated per scenario and user segment: share moved, toward the label, AUC of the moved subset.
- `card`: one user's prompt, generated text, nearest users by knowledge, per-scenario effect
  and top items with and without knowledge; unknown users get a card that says so.
- `run`: `run_explain` (what ``llm4msr explain`` runs) and `markdown_sections` (the demo report).

    from llm4msr_tf.explain import ExplainConfig, run_explain
    run_explain(ExplainConfig(model="runs/llm4msr", out="explain_out"))
"""
from llm4msr_tf.explain.config import ExplainConfig
from llm4msr_tf.utils.lazy import lazy_getattr

_LAZY = {
    "run_explain": "llm4msr_tf.explain.run",
    "markdown_sections": "llm4msr_tf.explain.run",
    "user_card": "llm4msr_tf.explain.card",
    "knowledge_changes": "llm4msr_tf.explain.changes",
    "decompose_dataset": "llm4msr_tf.explain.changes",
    "data_relations": "llm4msr_tf.explain.scenario_map",
    "scenario_map": "llm4msr_tf.explain.scenario_map",
    "user_map": "llm4msr_tf.explain.scenario_map",
}

__all__ = ["ExplainConfig", *_LAZY]
__getattr__ = lazy_getattr(__name__, _LAZY)
