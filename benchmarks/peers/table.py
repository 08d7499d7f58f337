"""The README's performance table, as markdown, from the JSON lines of one ``run_all.sh`` run.

    python benchmarks/peers/table.py RESULT_FILE...

Columns: causal_hypotheses with the call as a user writes it (``default``) and tuned by hand
(``tuned``: ``logit_positions=-1``), TransformerLens, pyvene, HF + hooks. Each cell: median
seconds and peak RSS (whole process, loading included); a peer's cell also gives its time over
our default's. Below the table, the cross-check: each experiment's largest difference from the
reference (the first record, the HF-hooks reference where it ran) and its largest effect, as
``compare.py`` checks them. Needs only the standard library.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import flat  # noqa: E402

EXPERIMENTS = {
    "act_patch_heads": "activation patching, 144 heads at the last position",
    "path_patch_q": "path patching, 120 heads into the queries of a10.h7 and a11.h10",
    "scrub": "causal scrubbing, two heads with queries via four",
}
PEERS = (("transformer_lens", "TransformerLens"), ("pyvene", "pyvene"), ("hf_hooks", "HF + hooks"))
# A peer's other methods, named after its first in the same cell.
METHOD_NAMES = {"two_run": "two-run recipe", "patching": "patching utility", "sources": "sources="}


def read(files: list[str]) -> list[dict]:
    records = []
    for name in files:
        with open(name) as f:
            records += [json.loads(line) for line in (x.strip() for x in f) if line.startswith("{")]
    return records


def cell(record: dict | None, base: float | None = None, bold: bool = False) -> str:
    if record is None:
        return "-"
    if record.get("skipped") or record.get("median_seconds") is None:
        return "no equivalent"
    seconds = record["median_seconds"]
    text = f"**{seconds:.1f} s**" if bold else f"{seconds:.1f} s"
    if base:
        text += f" ({seconds / base:.1f}x)"
    return text + f", {record['peak_rss_mb']:.0f} MB"


def table(records: list[dict]) -> str:
    lines = ["| experiment | causal_hypotheses, default call | causal_hypotheses, tuned | TransformerLens | pyvene | HF + hooks |",
             "|---|---|---|---|---|---|"]
    checks = []
    for experiment, label in EXPERIMENTS.items():
        group = [r for r in records if r["experiment"] == experiment]
        if not group:
            continue
        ours = {r.get("method", "-"): r for r in group if r["tool"] == "causal_hypotheses"}
        default = ours.get("default") or ours.get("-")
        tuned = ours.get("tuned")
        base = default.get("median_seconds") if default else None
        cells = [cell(default, bold=True), cell(tuned) if tuned or "-" not in ours else "the same call (nothing to tune)"]
        for tool, _ in PEERS:
            runs = [r for r in group if r["tool"] == tool]
            if not runs:
                cells.append("-")
                continue
            text = cell(runs[0], None if tool == "hf_hooks" else base)
            for other in runs[1:]:
                if other.get("median_seconds") is not None:
                    name = METHOD_NAMES.get(other.get("method"), other.get("method"))
                    ratio = f" ({other['median_seconds'] / base:.1f}x)" if base else ""
                    text += f"; {name} {other['median_seconds']:.1f} s{ratio}"
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        valued = [r for r in group if r.get("values") is not None]
        if valued:
            ref = flat(valued[0]["values"])
            centre = statistics.median(ref)
            effect = max(abs(x - centre) for x in ref)
            diffs = [max(abs(a - b) for a, b in zip(flat(r["values"]), ref)) for r in valued[1:]]
            checks.append(f"{experiment}: {len(valued)} runs against {valued[0]['tool']}, largest difference "
                          f"{max(diffs, default=0):.2g}, largest effect {effect:.2g}")
    meta = next((r for r in records if r.get("median_seconds") is not None), {})
    repeats = {r.get("repeats") for r in records}
    lines += ["", f"Median of {', '.join(map(str, sorted(r for r in repeats if r)))} timed run(s) after a warm-up, "
              f"{meta.get('threads')} threads, torch {meta.get('torch')}; (Nx): time over causal_hypotheses' default call."]
    lines += [""] + [f"- {c}" for c in checks]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    print(table(read(args.files)))


if __name__ == "__main__":
    main()
