"""The command line: ``python -m causal_hypotheses discover --model smollm2 --task ioi --out circuits/test_ioi_found.py``.

``discover`` loads a registered model and task (causal_hypotheses/claims/builtins.py), finds a
circuit (attribution, then exact pruning: causal_hypotheses/discovery/) and writes it as a claims
module with its findings CSV beside it, each claim measured first on the prompts it will run on and
given the bar its interval supports (``--no-check``: not measured, and the module says so).  Each
long step shows a progress bar with its ETA.
"""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m causal_hypotheses", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    find = commands.add_parser("discover", help="find a circuit and write it as a claims module")
    find.add_argument("--model", required=True, help="a registered model, e.g. smollm2, induction-2l")
    find.add_argument("--task", required=True, help="a registered task, e.g. ioi, induction")
    find.add_argument("--out", required=True, help="the module to write, e.g. circuits/test_ioi_found.py")
    find.add_argument("--n", type=int, default=32, help="prompts to search on (default 32)")
    find.add_argument("--seed", type=int, default=0, help="their seed; the written claims use seed + 1")
    find.add_argument("--check-n", type=int, default=96,
                      help="prompts the written claims run on (default 96: at 32 a claim's interval is too wide to pass a 0.75 bar; 0 for --n)")
    find.add_argument("--metric", default=None, help="a built-in metric (default: logit_diff where the task has answers, else loss)")
    find.add_argument("--method", choices=("eap", "ig"), default="eap", help="attribution: EAP or EAP-IG (default eap)")
    find.add_argument("--steps", type=int, default=5, help="EAP-IG's interpolation steps (default 5)")
    find.add_argument("--threshold", type=float, default=0.02, help="pruning threshold, a fraction of |clean - corrupt| (default 0.02)")
    find.add_argument("--budget", type=float, default=0.05,
                      help="the largest |pruned - clean| all removals together may leave, a fraction of |clean - corrupt| "
                           "(default 0.05); a negative value for no bound")
    find.add_argument("--max-nodes", type=int, default=0, help="candidate heads and MLPs by |node score|, the others read corrupt from the start; 0 for all (default)")
    find.add_argument("--max-edges", type=int, default=0, help="edges tested exactly, by |score|, the others removed untested; 0 for all (default)")
    find.add_argument("--corruption", choices=("task", "resample"), default="resample",
                      help="another prompt of the batch, what the written module's scrubbing resamples (default), or the task's corrupt prompts")
    find.add_argument("--no-check", action="store_true",
                      help="write the claims without measuring them first: their bars are the rule's, unchecked, and "
                           "the module says so (for a circuit too large to check now)")
    find.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import causal_hypotheses.claims.builtins  # noqa: F401  (registers the built-in models and tasks)
    from causal_hypotheses.claims.registry import build_task, load_model
    from causal_hypotheses.discovery.write import discover

    loaded = load_model(args.model)
    task = build_task(args.task, loaded, args.n, args.seed)
    metric = args.metric or ("logit_diff" if task.answer is not None and task.distractor is not None else "loss")
    # the prompts the written claims run on, as pytest builds them: check_n examples of seed + 1
    check_task = None if args.no_check else build_task(args.task, loaded, args.check_n or args.n, args.seed + 1)
    result = discover(
        loaded.engine, task, model=args.model, task_name=args.task, out=args.out, n=args.n, seed=args.seed, check_n=args.check_n or None,
        metric=metric, method=args.method, steps=args.steps, threshold=args.threshold,
        budget=None if args.budget < 0 else args.budget,
        max_nodes=args.max_nodes or None, max_edges=args.max_edges or None, corruption=args.corruption,
        check_task=check_task, progress=not args.quiet,
    )
    found = result.found
    print(f"kept {int(found.edges.kept.sum())} of {len(found.edges)} edges ({found.runs} engine runs); "
          f"components: {', '.join(found.components())}")
    print(f"clean {found.clean:.3f}, corrupt {found.corrupt:.3f}, pruned graph {found.pruned:.3f}; "
          + ", ".join(f"{k} {v['cpu_s']} s CPU / {v['wall_s']} s wall" for k, v in result.seconds.items()))
    for key, measured in (result.measured or {}).items():
        print(f"checked {key.replace('_', ' ')}: {measured.statistic} {measured}")
    if result.measured is not None and not result.claimed:
        print("warning: no claim's measurement supports a bar under the rule, so the module claims nothing (pytest "
              "collects no test from it); its comments give the numbers", file=sys.stderr)
    print(f"wrote {result.module} and {result.findings}; check it with: pytest {result.module}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
