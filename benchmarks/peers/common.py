"""Shared by the peer benchmark scripts: the fixture, the metric, the experiments'
constants, timing, memory and the JSON line each script prints.

Imports only torch and the standard library, so every tool's venv can use it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

import torch

# Path-patching sweep: senders are every head of layers 0..9; receivers' queries.
SENDER_LAYERS = range(10)
RECEIVERS = ((10, 7), (11, 10))
EXPERIMENTS = ("act_patch_heads", "path_patch_q", "scrub")


def parser(doc: str, methods: dict | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", help="directory written by make_model.py")
    p.add_argument("--experiment", choices=EXPERIMENTS, required=True)
    p.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median reported)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    if methods:
        p.add_argument("--method", choices=sorted(methods), default=next(iter(methods)),
                       help="; ".join(f"{k}: {v}" for k, v in methods.items()))
    return p


def load_batch(model_dir: str) -> dict:
    return torch.load(os.path.join(model_dir, "batch.pt"))


def load_hf(model_dir: str):
    """The fixture as an HF GPT2LMHeadModel, eager attention (what TransformerLens forces too)."""
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval()


def logit_diff(logits: torch.Tensor, answer: torch.Tensor, distractor: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of logit[answer] - logit[distractor] at the last position.

    ``logits`` is (G * B, T, V) for G patched variants of the same B examples, stacked
    variant-major; returns (G,).
    """
    batch = answer.shape[0]
    rows = torch.arange(logits.shape[0])
    repeats = logits.shape[0] // batch
    # Reads only the logits it uses (each row's answer and distractor at the last position), as the
    # README's metrics do: causal_hypotheses' sweeps then compute those alone; the values are the same.
    diff = logits[rows, -1, answer.repeat(repeats)].float() - logits[rows, -1, distractor.repeat(repeats)].float()
    return diff.view(-1, batch).mean(dim=1)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (VmHWM: peak RSS, VmRSS: current), in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def measure(fn, repeats: int):
    """One warm-up call, then ``repeats`` timed calls. Returns (last result, median s, times, memory dict)."""
    rss_before = _status_mb("VmRSS")
    # Read before the reset: on Linux ru_maxrss follows the kernel's mark, which the reset clears.
    loading_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reset = _reset_peak_rss()
    result = fn()  # warm-up
    times, cpu_times = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    memory = {
        # ru_maxrss: peak resident set of the whole process (model loading included), KiB on Linux.
        "peak_rss_mb": round(max(loading_peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024, 1),
        # VmHWM after resetting it (clear_refs=5) just before the experiment: peak RSS while
        # the experiment ran, which includes the resident model weights.
        "experiment_peak_rss_mb": round(_status_mb("VmHWM"), 1) if reset and _status_mb("VmHWM") is not None else None,
        # Resident set just before the warm-up (model and fixture loaded).
        "rss_before_experiment_mb": round(rss_before, 1) if rss_before is not None else None,
        # CPU seconds of this process per timed call (median): steadier than wall time on a shared machine.
        "cpu_median_seconds": round(statistics.median(cpu_times), 4) if cpu_times else None,
    }
    return result, (statistics.median(times) if times else None), times, memory


def emit(tool: str, experiment: str, values, seconds, times, memory, repeats, **extra) -> None:
    record = {
        "tool": tool,
        "experiment": experiment,
        "values": values.tolist() if isinstance(values, torch.Tensor) else values,
        "median_seconds": None if seconds is None else round(seconds, 4),
        "times": None if times is None else [round(t, 4) for t in times],
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        **(memory or {"peak_rss_mb": None}),
        **extra,
    }
    print(json.dumps(record))


def skip(tool: str, experiment: str, reason: str, repeats: int) -> None:
    emit(tool, experiment, None, None, None, None, repeats, skipped=reason)


def start(doc: str, tool: str, methods: dict | None = None, no_scrub: str | None = None):
    """Parse the command line and set the thread count; returns (args, method).

    ``methods``: {experiment: {method: description}}; the method is the one asked for if
    the experiment has it, else the experiment's first. ``no_scrub``: why the tool has no
    scrubbing run; then a skip line is printed for "scrub" and None returned.
    """
    choices = {k: v for per in (methods or {}).values() for k, v in per.items()}
    args = parser(doc, choices or None).parse_args()
    torch.set_num_threads(args.threads)
    if args.experiment == "scrub" and no_scrub:
        skip(tool, args.experiment, no_scrub, args.repeats)
        return None
    per = (methods or {}).get(args.experiment)
    method = (args.method if args.method in per else next(iter(per))) if per else None
    return args, method
