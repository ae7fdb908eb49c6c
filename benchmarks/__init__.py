"""Benchmarks of llm4msr_tf: training throughput vs torch-rechub, quality with seeds, memory.

Run them with `llm4msr bench [NAME ...]` or `python -m benchmarks.<name>` from the repository
root; each writes JSON (with the exact command and machine info), a PNG and a Markdown table
under `benchmarks/results/`, and `benchmarks.report` refreshes README's Performance section.
"""
