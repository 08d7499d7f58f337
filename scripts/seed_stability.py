"""Check that every claim's verdict is the same under several seeds, and write the verdict table.

    python scripts/seed_stability.py [--seeds 0 1 2 3 4] [--out reports/seeds] [--table circuits/findings/verdicts.md] [--no-heavy] [-- PYTEST ARGS]

Runs ``pytest circuits/ --claims-seed S --claims-heavy=run`` once per seed (heavy claims included,
with the examples they state; ``--no-heavy`` leaves them out), each into ``<out>/seed-S``
(``--merge -- -k NAME`` reruns only the selected claims and replaces their rows there), reads each
run's ``latest.csv`` and writes a Markdown table: one row per claim, with its model, kind and
thresholds, and per seed the value, its interval and the verdict.  Exits 1 when a claim's verdict
differs between seeds or is not "pass" (or "skipped" in every seed, e.g. a model without weights);
the table marks those rows.  Arguments after ``--`` go to pytest (e.g. ``-k planted``).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pandas as pd


def run_seed(seed: int, out: str, extra: list[str], paths: list[str], rerun: bool, heavy: bool,
             merge: bool = False) -> pd.DataFrame:
    folder = os.path.join(out, f"seed-{seed}")
    path = os.path.join(folder, "latest.csv")
    if os.path.exists(path) and not rerun and not merge:
        print(f"seed {seed}: reading {path} (--rerun runs it again)", flush=True)
        return pd.read_csv(path)
    target = os.path.join(folder, "merge") if merge else folder
    command = [sys.executable, "-m", "pytest", *paths, "-q", "-p", "no:cacheprovider",
               f"--claims-seed={seed}", f"--claims-report-dir={target}", f"--claims-heavy={'run' if heavy else 'skip'}",
               *extra]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=False)
    written = os.path.join(target, "latest.csv")
    if not os.path.exists(written):
        raise SystemExit(f"seed {seed}: pytest wrote no {written}; see its output above")
    if not merge:
        return pd.read_csv(path)
    # --merge: the claims just run replace their rows in the seed's saved report (new ones are added).
    fresh = pd.read_csv(written)
    saved = pd.read_csv(path) if os.path.exists(path) else fresh.iloc[:0]
    kept = saved[~saved["claim"].isin(fresh["claim"])]
    order = {claim: i for i, claim in enumerate(saved["claim"])}
    merged = pd.concat([kept, fresh], ignore_index=True)
    merged = merged.sort_values("claim", key=lambda c: c.map(lambda x: order.get(x, len(order))), kind="stable")
    merged.to_csv(path, index=False)
    print(f"seed {seed}: {len(fresh)} claims rerun and merged into {path}", flush=True)
    return merged


def cell(row) -> str:
    if pd.isna(row["value"]):
        return row["verdict"]
    return f"{row['value']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}] {row['verdict']}"


def threshold(row) -> str:
    parts = []
    if not pd.isna(row.get("at_least")):
        parts.append(f"≥ {row['at_least']:g}")
    if not pd.isna(row.get("at_most")):
        parts.append(f"≤ {row['at_most']:g}")
    return ", ".join(parts)


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="reports/seeds")
    parser.add_argument("--table", default="circuits/findings/verdicts.md")
    parser.add_argument("--paths", nargs="+", default=["circuits/"], help="what pytest runs (default: circuits/)")
    parser.add_argument("--rerun", action="store_true", help="run a seed again even if its report is there")
    parser.add_argument("--no-heavy", action="store_true", help="leave out the claims marked heavy=True")
    parser.add_argument("--merge", action="store_true",
                        help="run only what the pytest arguments select (e.g. -- -k NAME) and replace those claims' rows "
                             "in each seed's saved report, keeping the others")
    args = parser.parse_args(argv)

    runs = {seed: run_seed(seed, args.out, extra, args.paths, args.rerun, not args.no_heavy, args.merge).set_index("claim") for seed in args.seeds}
    first = runs[args.seeds[0]]
    claims = [claim for claim in first.index if any(claim.startswith(p.rstrip("/")) for p in args.paths)]
    rows, unstable, partial = [], [], []
    for claim in claims:
        verdicts = {seed: runs[seed].loc[claim, "verdict"] for seed in args.seeds if claim in runs[seed].index}
        stable = len(set(verdicts.values())) == 1 and next(iter(verdicts.values())) in ("pass", "skipped")
        if len(verdicts) < len(args.seeds):
            partial.append(claim)
        if not stable:
            unstable.append(claim)
        info = first.loc[claim]
        rows.append("| " + " | ".join([
            ("" if stable else "**≠** ") + claim.split("::")[-1], str(info["model"]), str(info["kind"]), threshold(info),
            *(cell(runs[seed].loc[claim]) if claim in runs[seed].index else "not run" for seed in args.seeds),
        ]) + " |")
    header = "| claim | model | kind | threshold | " + " | ".join(f"seed {s}" for s in args.seeds) + " |"
    lines = [
        "# Verdicts across seeds",
        "",
        f"Written by `python scripts/seed_stability.py --seeds {' '.join(map(str, args.seeds))}`"
        + (f" --paths {' '.join(args.paths)}" if args.paths != ["circuits/"] else "")
        + (" --no-heavy" if args.no_heavy else "")
        + (f" (pytest arguments: `{' '.join(extra)}`)" if extra else "") + ". Each cell: value [95% interval] verdict.",
        f"{len(claims) - len(unstable)} of {len(claims)} claims give the same verdict, pass (or skipped), under every seed they ran"
        + (f"; marked **≠**: {len(unstable)} that do not." if unstable else ".")
        + (f" {len(partial)} did not run under every seed ('not run': that seed's run did not include them, e.g. a run limited with --paths or stopped early)." if partial else ""),
        "",
        header,
        "|" + "---|" * (4 + len(args.seeds)),
        *rows,
        "",
    ]
    os.makedirs(os.path.dirname(args.table) or ".", exist_ok=True)
    with open(args.table, "w") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))
    if unstable:
        print(f"unstable or failing under some seed: {unstable}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
