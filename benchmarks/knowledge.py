"""Knowledge-stage throughput: prompts/s per LLM and batch size, Beam job vs naive loop, FLOP rate.

Usage (after `llm4msr prepare --dataset movielens --source .../ml-100k --out DATA_DIR`)::

    python benchmarks/knowledge.py --data DATA_DIR [--llms gemma3-270m,minilm]
        [--batch-sizes 1,4,16,32] [--sweep-prompts 128] [--naive-prompts 32] [--beam-prompts 943]
        [--variants fp32,compile,bf16]

Writes benchmarks/results/knowledge.json (+ .md) with the exact command. The achieved
floating-point rate counts 2 x non-embedding parameters x real (non-padding) tokens per second,
compared with a large fp32 `torch.matmul` timed in the same process with the same threads, for
the forward pass alone (the batch-size sweep) and end to end (the Beam job: in the LLM, and wall
time including Beam start-up, model load and any compile). Each variant is a way to run the same
LLM (`--precision`, `--compile` of `llm4msr knowledge`): fp32 (the CPU default), compile (fp32 with
torch.compile) and bf16 (bf16 matmuls under autocast; its fraction of the *fp32* rate can pass 1).
"""
import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import llm4msr_tf  # noqa: E402,F401  (Keras 2 pin)
from llm4msr_tf.knowledge.config import EncoderConfig, KnowledgeConfig  # noqa: E402
from llm4msr_tf.data.prompt_format import read_prompts  # noqa: E402
from llm4msr_tf.testing import write_prompt_texts  # noqa: E402
from llm4msr_tf.utils.io import write_json  # noqa: E402

log = logging.getLogger("bench.knowledge")
RESULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "knowledge.json")


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    """Measured fp32 matmul rate of this machine (GFLOP/s) with torch's current threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    with torch.inference_mode():
        for _ in range(2):
            torch.matmul(a, b)
        t = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        dt = time.perf_counter() - t
    return 2 * n ** 3 * reps / dt / 1e9


def naive_loop(enc, prompts):
    """What a first script does: one prompt at a time through the full causal LM (with its LM
    head), hidden states requested, last token taken; for encoders, one prompt at a time."""
    import torch
    import transformers

    if enc.spec.causal:
        model = transformers.AutoModelForCausalLM.from_pretrained(enc.model_dir, dtype=torch.float32).eval()
    else:
        model = enc.base
    tok = enc.tokenizer
    t = time.perf_counter()
    with torch.no_grad():
        for p in prompts:
            x = tok(p, return_tensors="pt", truncation=True, max_length=enc.config.max_length)
            if enc.spec.causal:
                h = model(**x, output_hidden_states=True).hidden_states[-1][0, -1]
            else:
                h = model(**x).last_hidden_state[0].mean(0)
    dt = time.perf_counter() - t
    del h
    return len(prompts) / dt


VARIANTS = {"fp32": {"precision": "fp32"}, "compile": {"precision": "fp32", "compile": True},
            "bf16": {"precision": "bf16"}}


def bench_llm(spec, texts, args, gflops, variant="fp32", naive=True):
    """Sweep batch sizes for one LLM run one way (`VARIANTS`); returns its result dict."""
    from llm4msr_tf.knowledge.encoders import TextEncoder

    t = time.perf_counter()
    enc = TextEncoder(EncoderConfig(llm=spec, threads=args.threads, **VARIANTS[variant]))
    load_s = time.perf_counter() - t
    params = enc.non_embedding_params()
    sweep_texts = texts[: args.sweep_prompts]
    ids, trunc = enc.tokenize(sweep_texts)
    n_tokens = sum(len(r) for r in ids)
    t = time.perf_counter()
    for bs in sorted(set(args.batch_sizes)):  # warm-up (and, compiled, the one-off compile)
        enc.encode(sweep_texts[:bs], batch_size=bs)
    warm_s = time.perf_counter() - t
    rows = []
    for bs in args.batch_sizes:
        # The machine is shared: time the matmul reference right next to each point.
        local = matmul_gflops(1536, 5)
        t = time.perf_counter()
        enc.encode(sweep_texts, batch_size=bs)
        dt = time.perf_counter() - t
        tok_s = n_tokens / dt
        achieved = 2 * params * tok_s / 1e9
        rows.append({
            "batch_size": bs, "prompts": len(sweep_texts), "seconds": round(dt, 3),
            "prompts_per_s": round(len(sweep_texts) / dt, 2), "tokens_per_s": round(tok_s, 1),
            "achieved_gflops": round(achieved, 1), "matmul_gflops_just_before": round(local, 1),
            "fraction_of_matmul": round(achieved / local, 3),
        })
        log.info("%s bs=%d: %.2f prompts/s, %.0f tokens/s, %.0f GFLOP/s (%.0f%% of matmul %.0f)",
                 spec, bs, rows[-1]["prompts_per_s"], tok_s, achieved, 100 * achieved / local, local)
    best = max(rows, key=lambda r: r["prompts_per_s"])
    out = {
        "llm": spec, "variant": variant, "settings": VARIANTS[variant], "dim": enc.dim, "pooling": enc.pooling,
        "non_embedding_params": params, "load_seconds": round(load_s, 2), "warmup_seconds": round(warm_s, 2),
        "mean_tokens_per_prompt": round(n_tokens / len(ids), 1),
        "truncated_prompts": sum(trunc), "sweep": rows, "best": best,
    }
    if naive:
        naive_texts = texts[: args.naive_prompts]
        rate = naive_loop(enc, naive_texts)
        log.info("%s naive loop: %.2f prompts/s", spec, rate)
        out["naive_loop"] = {"prompts": len(naive_texts), "prompts_per_s": round(rate, 3),
                             "what": "one prompt at a time, " + (
                                 "full causal LM with LM head, output_hidden_states, last token"
                                 if enc.spec.causal else "encoder, mean of last hidden layer")}
        out["speedup_best_batched_vs_naive"] = round(best["prompts_per_s"] / rate, 2)
    return out


def bench_beam(spec, prompts, batch_size, args, variant="fp32", params=0, gflops=0.0):
    """End-to-end Beam job (DirectRunner) on `prompts`; wall time includes Beam + model load.

    With `params` (non-embedding) and `gflops` (the fp32 matmul rate just measured), also the
    fraction of that rate reached in the LLM and over the whole wall time.
    """
    from llm4msr_tf.knowledge.job import run

    tmp = tempfile.mkdtemp(prefix="bench-knowledge-")
    try:
        users = {p.key: p.prompt for p in prompts if p.key_type == "user"}
        scen = {p.key: p.prompt for p in prompts if p.key_type == "scenario"}
        data = write_prompt_texts(os.path.join(tmp, "data"), scen, users)
        cfg = KnowledgeConfig(data=data, out=os.path.join(tmp, "k"), llm=spec, batch_size=batch_size,
                              threads=args.threads, **VARIANTS[variant])
        t = time.perf_counter()
        m = run(cfg)
        wall = time.perf_counter() - t
        t = time.perf_counter()
        m2 = run(cfg)  # incremental re-run: everything reused
        rerun = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {
        "llm": spec, "variant": variant, "batch_size": batch_size, "prompts": len(prompts),
        "wall_seconds": round(wall, 2), "prompts_per_s_wall": round(len(prompts) / wall, 3),
        "prompts_per_s_in_llm": m["encoded_prompts_per_second"], "forward_batches": m["forward_batches"],
        "tokens": m["tokens"], "encode_seconds": m["encode_seconds"],
        "rerun_wall_seconds": round(rerun, 2), "rerun_reused": m2["reused"], "rerun_encoded": m2["encoded_prompts"],
    }
    if params and gflops and m["tokens"]:
        flop = 2.0 * params * m["tokens"]
        out["matmul_gflops_just_before"] = round(gflops, 1)
        out["fraction_of_matmul_in_llm"] = round(flop / max(m["encode_seconds"], 1e-9) / 1e9 / gflops, 3)
        out["fraction_of_matmul_wall"] = round(flop / wall / 1e9 / gflops, 3)
    return out


def main(argv=None):
    """Run the benchmark and write the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="prepared DATA_DIR (ML-100K: 943 user prompts)")
    ap.add_argument("--llms", default="gemma3-270m,minilm")
    ap.add_argument("--batch-sizes", default="1,4,16,32")
    ap.add_argument("--sweep-prompts", type=int, default=128, help="user prompts per batch-size point")
    ap.add_argument("--naive-prompts", type=int, default=32)
    ap.add_argument("--beam-prompts", type=int, default=943, help="user prompts in the Beam job run")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=RESULT)
    ap.add_argument("--note", default="", help="free text stored with the result (e.g. contention)")
    ap.add_argument("--variants", default="fp32,compile,bf16", help=f"ways to run each LLM: {','.join(VARIANTS)}")
    args = ap.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad or not args.variants:
        ap.error(f"--variants {bad or '(none)'}: choose from {list(VARIANTS)}")
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    from llm4msr_tf.knowledge.encoders import _available_cores

    torch.set_num_threads(args.threads or _available_cores())
    prompts = read_prompts(args.data)
    users = [p for p in prompts if p.key_type == "user"]
    texts = [p.prompt for p in users]
    gflops = matmul_gflops()
    log.info("fp32 matmul: %.1f GFLOP/s with %d threads", gflops, torch.get_num_threads())
    result = {
        "command": "python " + " ".join([os.path.relpath(__file__, os.getcwd())] + list(argv or sys.argv[1:])),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "cuda": torch.cuda.is_available()},
        "note": args.note,
        "user_prompts_available": len(users),
        "matmul_fp32_gflops": round(gflops, 1),
        "llms": [],
        "beam_job": [],
    }
    for spec in args.llms.split(","):
        for i, variant in enumerate(args.variants):
            r = bench_llm(spec, texts, args, gflops, variant, naive=i == 0)
            result["llms"].append(r)
            write_json(args.out, result)
            beam_prompts = users[: args.beam_prompts]
            local = matmul_gflops(1536, 5)
            b = bench_beam(spec, beam_prompts, r["best"]["batch_size"], args, variant, r["non_embedding_params"], local)
            naive = next((x["naive_loop"]["prompts_per_s"] for x in result["llms"]
                          if x["llm"] == spec and "naive_loop" in x), None)
            if naive:
                b["speedup_vs_naive_loop_wall"] = round(b["prompts_per_s_wall"] / naive, 2)
            log.info("%s %s Beam job: %s", spec, variant, b)
            result["beam_job"].append(b)
            write_json(args.out, result)
    result["matmul_fp32_gflops_end"] = round(matmul_gflops(), 1)  # contention drifts; both are kept
    write_json(args.out, result)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(markdown(result))
    print(markdown(result))


def markdown(result):
    """The forward and end-to-end fractions of the fp32 matmul rate per LLM and variant."""
    lines = [f"### Knowledge job throughput (fp32 matmul {result['matmul_fp32_gflops']} GFLOP/s at start, "
             f"{result.get('matmul_fp32_gflops_end', '-')} at end)", "",
             "| LLM | variant | batch | forward prompts/s | forward / fp32 matmul | Beam prompts/s in LLM | "
             "in LLM / matmul | Beam prompts/s wall | wall / matmul | load + warm-up s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["llms"]:
        b = next((x for x in result["beam_job"] if x["llm"] == r["llm"] and x.get("variant") == r.get("variant")), {})
        lines.append(f"| {r['llm']} | {r.get('variant', 'fp32')} | {r['best']['batch_size']} | {r['best']['prompts_per_s']} | "
                     f"{r['best']['fraction_of_matmul']:.2f} | {b.get('prompts_per_s_in_llm', '-')} | "
                     f"{b.get('fraction_of_matmul_in_llm', '-')} | {b.get('prompts_per_s_wall', '-')} | "
                     f"{b.get('fraction_of_matmul_wall', '-')} | {r['load_seconds'] + r.get('warmup_seconds', 0):.1f} |")
    lines += ["", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
