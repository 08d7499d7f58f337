"""The engine at about 1B parameters: a random Llama-shaped model against its own HF forward.

    PYTHONPATH=. python benchmarks/large_llama.py [--device cpu|cuda] [--dtype float32|bfloat16]
        [--repeats 3] [--sender-heads 4] [--model-dir DIR] [--threads N]

Shape (transformers LlamaConfig): hidden 2048, 16 layers, 32 query heads sharing 8 key/value
heads, intermediate 5632, vocab 32000, untied unembedding: 0.85e9 parameters, 3.4 GB in
float32. Weights are HF's own initialisation (normal, std 0.02) from seed 0, written once to
``--model-dir`` (safetensors) so that every experiment's process loads the same weights fast.
Batch 8 x 32 random token ids (seed 0). Experiments, each in its own process (so that its peak
RSS is its own: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` through loading, and the kernel's
VmHWM reset just before the experiment; the larger is the process's peak), timed ``--repeats`` times after one warm-up
(median), each timed call on a fresh ``Engine`` (empty activation cache), every call as a user
makes it, with the defaults:

* ``hf``: the HF forward of the clean batch (``model(clean)``, no grad);
* ``all_clean``: ``engine.run([clean], lambda path: 0)``, every position's logits;
* ``one_head``: ``activation_patch(engine, clean, corrupt, ["a12.h3"], positions=[-1])``, every
  position's logits as the HF forward gives them;
* ``sweep``: ``path_patch_sweep(engine, clean, corrupt, ["a14.h3.q"], metric, senders=...)``
  with senders the first ``--sender-heads`` heads of each of layers 10-13 (all 32: 128 senders)
  and metric the logit difference of two random tokens at the last position.

Prints one JSON line per experiment, then a table with each time over the HF forward's.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
import common  # noqa: E402  (timing and memory helpers shared with the peer benchmarks)

EXPERIMENTS = ("hf", "all_clean", "one_head", "sweep")
SHAPE = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
             intermediate_size=5632, vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False)
BATCH, SEQ = 8, 32
SENDER_LAYERS = range(10, 14)
RECEIVER = "a14.h3.q"
PATCHED_HEAD = "a12.h3"


def make_model(model_dir: str, dtype: torch.dtype) -> None:
    """Write the random model once (seed 0); later runs reuse it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if os.path.exists(os.path.join(model_dir, "config.json")):
        return
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE)).to(dtype)
    model.save_pretrained(model_dir)
    print(f"wrote {sum(p.numel() for p in model.parameters()) / 1e9:.2f}e9 parameters to {model_dir}", file=sys.stderr)


def batch():
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(0, SHAPE["vocab_size"], (BATCH, SEQ), generator=generator)
    corrupt = torch.randint(0, SHAPE["vocab_size"], (BATCH, SEQ), generator=generator)
    answer = torch.randint(0, SHAPE["vocab_size"], (BATCH,), generator=generator)
    distractor = torch.randint(0, SHAPE["vocab_size"], (BATCH,), generator=generator)
    return clean, corrupt, answer, distractor


def worker(args) -> None:
    """One experiment in this process; prints its JSON line."""
    from transformers import AutoModelForCausalLM

    from causal_hypotheses import Engine, activation_patch, path_patch_sweep

    dtype = getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype).to(args.device).eval()
    clean, corrupt, answer, distractor = batch()  # task tensors stay on the CPU; the engine moves tokens
    rows = torch.arange(BATCH)
    senders = [f"a{layer}.h{head}" for layer in SENDER_LAYERS for head in range(args.sender_heads)]

    def metric(logits):  # logits on the model's device; the value comes back to the CPU
        logits = logits.float().cpu()
        return logits[rows, -1, answer] - logits[rows, -1, distractor]

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def hf():
        with torch.no_grad():
            out = model(clean.to(args.device)).logits
        sync()
        return out

    def all_clean():
        out = Engine.from_hf(model).run([clean], lambda path: 0).logits
        sync()
        return out

    def one_head():
        out = activation_patch(Engine.from_hf(model), clean, corrupt, [PATCHED_HEAD], positions=[-1])
        sync()
        return out

    def sweep():
        return path_patch_sweep(Engine.from_hf(model), clean, corrupt, [RECEIVER], metric, senders=senders)

    fn = {"hf": hf, "all_clean": all_clean, "one_head": one_head, "sweep": sweep}[args.worker]
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    # ru_maxrss before common.measure resets the kernel's mark: the peak through loading.
    loading_peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result, seconds, times, memory = common.measure(fn, args.repeats)
    # After that reset ru_maxrss reads the peak since the reset only; the process's is the larger of the two.
    memory["loading_peak_rss_mb"] = loading_peak
    memory["peak_rss_mb"] = max(loading_peak, memory["peak_rss_mb"])
    extra = {}
    if args.device.startswith("cuda"):
        extra["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if args.worker == "sweep":
        values = result.to_numpy().ravel()
        values = values[values == values]  # the heads that send
        summary = {"senders": len(senders), "metric_min": float(values.min()), "metric_max": float(values.max())}
    else:
        summary = {"logits_shape": list(result.shape)}
    print(json.dumps({"experiment": args.worker, "device": args.device, "dtype": args.dtype,
                      "median_seconds": round(seconds, 4), "times": [round(t, 4) for t in times],
                      "repeats": args.repeats, "threads": torch.get_num_threads(), **memory, **extra, **summary}),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median)")
    parser.add_argument("--sender-heads", type=int, default=4, help="senders: heads 0..N-1 of each of layers 10-13 (32: all)")
    parser.add_argument("--model-dir", default=None, help="where the random model is written once (default /tmp/large-llama-DTYPE)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS))
    parser.add_argument("--worker", choices=EXPERIMENTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.model_dir = args.model_dir or f"/tmp/large-llama-{args.dtype}"
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device; use --device cpu")
    if args.worker:
        worker(args)
        return

    import causal_hypotheses

    make_model(args.model_dir, getattr(torch, args.dtype))
    print(f"Llama-shaped, 0.85e9 parameters ({args.dtype}, {args.device}), batch {BATCH} x {SEQ}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"causal_hypotheses from {os.path.dirname(causal_hypotheses.__file__)}", flush=True)
    records = {}
    for experiment in args.only:
        started = time.perf_counter()
        command = [sys.executable, os.path.abspath(__file__), "--worker", experiment, "--device", args.device,
                   "--dtype", args.dtype, "--repeats", str(args.repeats), "--sender-heads", str(args.sender_heads),
                   "--model-dir", args.model_dir, "--threads", str(args.threads)]
        out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
        line = [x for x in out.splitlines() if x.startswith("{")][-1]
        print(line, flush=True)
        records[experiment] = json.loads(line)
        print(f"  ({experiment}: {time.perf_counter() - started:.0f} s with loading)", file=sys.stderr, flush=True)
    base = records.get("hf", {}).get("median_seconds")
    print(f"\n{'experiment':12s} {'median s':>9s} {'x HF':>6s} {'peak RSS MB':>12s} {'during MB':>10s}")
    for name, r in records.items():
        ratio = f"{r['median_seconds'] / base:6.2f}" if base else "     -"
        print(f"{name:12s} {r['median_seconds']:9.3f} {ratio} {r['peak_rss_mb']:12.0f} {r['experiment_peak_rss_mb'] or 0:10.0f}")


if __name__ == "__main__":
    main()
