"""Cross-check the JSON lines printed by hf_reference.py, tl_bench.py and pyvene_bench.py.

    python benchmarks/peers/compare.py RESULT_FILE... [--tolerance 1e-4]

Each file holds (among other output) lines that are JSON objects from the scripts. For
every experiment, prints each run's timing and the max abs difference of its values from
the first tool's (the reference when it is given first), and the largest effect
(max |value - median value|) so a tolerance can be judged against it. Exits 1 when a
difference exceeds the tolerance, or when an experiment that two tools ran has a largest
effect under 10x the tolerance (such a cross-check could not catch a tool that ignores
the patch). Needs only the standard library.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys


def flat(values):
    if isinstance(values, list):
        return [x for v in values for x in flat(v)]
    return [values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    runs = []
    for name in args.files:
        with open(name) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    record = json.loads(line)
                    if record.get("values") is not None:
                        runs.append(record)
    failed = False
    for experiment in dict.fromkeys(r["experiment"] for r in runs):
        group = [r for r in runs if r["experiment"] == experiment]
        ref = flat(group[0]["values"])
        centre = statistics.median(ref)
        effect = max(abs(x - centre) for x in ref)
        print(f"{experiment}: reference {group[0]['tool']}/{group[0].get('method', '-')}, "
              f"largest effect {effect:.3g}")
        if len(group) > 1 and effect < 10 * args.tolerance:
            failed = True
            print(f"  the largest effect is under 10x the tolerance {args.tolerance:g}: this cross-check cannot tell "
                  "a patched result from an unpatched one; use a fixture with larger effects (make_model.py --attn-std)")
        for r in group:
            vals = flat(r["values"])
            diff = max(abs(a - b) for a, b in zip(vals, ref)) if len(vals) == len(ref) else float("inf")
            failed |= diff > args.tolerance
            print(f"  {r['tool']:>16} {r.get('method', '-'):>11}  median {r['median_seconds']} s "
                  f"(n={r['repeats']}, threads={r.get('threads')})  peak RSS {r.get('peak_rss_mb')} MB  "
                  f"max |diff| {diff:.3g}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
