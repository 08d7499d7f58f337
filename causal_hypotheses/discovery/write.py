"""A found circuit written out as a claims module (a pytest file under ``circuits/``), with its findings CSV.

:func:`discover` runs the whole search on a loaded engine and task: attribution scores of every
edge, exact pruning of the candidates (prune.py), then :func:`write_claims`.  The module it writes
states the circuit as a :class:`Hypothesis` of its paths and, when the repair restored no
receiver (restored ones read the whole model), as components for faithfulness, with thresholds by the rule of ``circuits/README.md`` (a circuit found on a real model
recovers at least 0.75; a negative control of random heads at most 0.1), checked on other prompts
than the ones it was found on (the next seed).  ``python -m causal_hypotheses discover`` is the
command line (``causal_hypotheses/__main__.py``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path as FilePath

from ..errors import InputError
from ..graph import component
from ..metrics import get_metric, metric_reads
from .attribution import attribute
from .prune import PrunedGraph, prune

CORRUPTIONS = ("task", "resample")
FOUND_BAR = 0.75  # circuits/README.md: a circuit found on a real model
CONTROL_BAR = 0.1  # circuits/README.md: random components


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found and wrote: the pruned graph, the module and CSV paths, the
    candidate nodes, and CPU and wall seconds of each step."""

    found: PrunedGraph
    module: FilePath
    findings: FilePath
    nodes: list
    seconds: dict


def task_metric(engine, task, name: str):
    """(metric(logits) -> per-example values, what it reads: {"logit_positions": ..., "logit_vocab": ...})
    for a built-in metric on ``task`` (``metrics.metric_reads``)."""
    measure = get_metric(name)
    read, measured = metric_reads(name, task, engine.adapter.vocab_size)
    clean_logits = engine.run([task.clean], lambda path: 0, **read).logits if name == "kl" else None
    return (lambda logits: measure(logits, measured, clean_logits)), read


def _timed(label: str, seconds: dict, fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    seconds[label] = {"wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(time.process_time() - cpu, 1)}
    return result


def discover(
    engine,
    task,
    *,
    model: str,
    task_name: str,
    out,
    n: int,
    seed: int,
    check_n: int | None = None,
    metric: str = "logit_diff",
    method: str = "eap",
    steps: int = 5,
    threshold: float = 0.02,
    budget: float | None = 0.05,
    max_nodes: int | None = None,
    max_edges: int | None = None,
    corruption: str = "resample",
    progress: bool = True,
) -> Discovery:
    """Find a circuit for ``task`` on ``engine`` and write it to ``out`` as a claims module.

    ``model``, ``task_name``: the registered names the written module's claims load (``check_n``
    prompts, seed ``seed`` + 1, so that they check the circuit on prompts it was not found on).
    ``metric``: a built-in metric's name.  ``threshold``: the pruning threshold as a fraction of
    |metric(clean) - metric(corrupt)|, each removal's largest change; ``budget``: the largest
    |pruned - clean| the removals together may leave, in the same unit, enforced by the repair
    (prune.py: receivers restored until within it; default 0.05: the pruned graph keeps at least
    0.95 of the change on the prompts it was found on; None: no bound, and the removals' changes
    may add up).  ``max_nodes``: candidate heads and MLPs, those with the
    largest |node score| (None: all).  ``max_edges``: edges tested exactly, by |score| (None:
    all).  Both restrictions start the search from a graph without the rest, which may have lost
    the behaviour already (SmolLM2's IOI with 25 nodes and 150 edges kept 0.72 of a logit
    difference of 4.32), so they are off by default.  ``corruption``: "resample" (each prompt
    corrupted by another of the batch: what the written module's scrubbing resamples, and the one
    that changes what every position reads; the default) or "task" (the task's corrupt prompts:
    on SmolLM2's IOI the circuit found so kept 0.91 of the task's change but recovered 0.46 under
    the module's scrubbing).  ``check_n``: the prompts the written claims run on (``n`` when None).
    """
    if corruption not in CORRUPTIONS:
        raise InputError(f"corruption={corruption!r}: expected 'task' (the task's corrupt prompts) or 'resample' (another prompt of the batch)")
    if check_n is not None and (isinstance(check_n, bool) or not isinstance(check_n, int) or check_n < 1):
        raise InputError(f"check_n={check_n!r}: expected a positive int (the prompts the written claims run on) or None for n")
    if not isinstance(metric, str):
        raise InputError(f"metric={metric!r}: expected the name of a built-in metric, which the written module names too")
    out = FilePath(out)
    if not out.name.startswith("test_") or out.suffix != ".py":
        raise InputError(f"out={str(out)!r}: a claims module's name starts with 'test_' and ends with '.py' so that pytest collects it, e.g. circuits/test_ioi_found.py")
    measure, read = task_metric(engine, task, metric)
    corrupt = task.corrupt if corruption == "task" else task.clean.roll(1, 0)
    seconds: dict = {}
    scores = _timed("attribution", seconds, lambda: attribute(
        engine, task.clean, corrupt, measure, method=method, steps=steps, progress=progress, **read))
    nodes = None
    if max_nodes is not None:
        ranked = scores.node_scores().drop("embed").abs().sort_values(ascending=False, kind="stable")
        nodes = list(ranked.index[:max_nodes])
    change = abs(scores.clean - scores.corrupt)
    absolute = threshold * change
    found = _timed("pruning", seconds, lambda: prune(
        engine, task.clean, corrupt, measure, absolute, budget=None if budget is None else budget * change, scores=scores, nodes=nodes, max_edges=max_edges,
        progress=progress, **read))
    description = (
        f"{method.upper()} attribution of every edge, then exact pruning (ACDC) of "
        f"{'all nodes' if nodes is None else f'the {len(nodes)} heads and MLPs of largest |node score|'}"
        f"{'' if max_edges is None else f' and their {max_edges} edges of largest |score|'}, threshold "
        f"{threshold:g} x |clean - corrupt| = {absolute:.3g} per removal"
        f"{'' if budget is None else f', then receivers restored (reading the whole model) until within {budget:g} x |clean - corrupt| of clean'}, corrupting each prompt with "
        f"{'its corrupt prompt from the task' if corruption == 'task' else 'another prompt of the batch'}"
    )
    options = [f"--model {model}", f"--task {task_name}", f"--n {n}", f"--seed {seed}", f"--metric {metric}",
               f"--method {method}", *([f"--steps {steps}"] if method == "ig" else []), f"--threshold {threshold:g}",
               f"--budget {budget:g}" if budget is not None else "--budget -1", f"--corruption {corruption}",
               f"--check-n {check_n or 0}",
               *([f"--max-nodes {max_nodes}"] if max_nodes else []), *([f"--max-edges {max_edges}"] if max_edges else []),
               f"--out {out.as_posix()}"]
    written = write_claims(out, found, model=model, task=task_name, metric=metric, n=n, seed=seed, how=description, seconds=seconds,
                           check_n=check_n, command="python -m causal_hypotheses discover " + " ".join(options))
    return Discovery(found, written, _findings_path(out, len(found.edges)), nodes or [], seconds)


GZIP_ROWS = 10_000  # a findings table with more edges is written gzipped (SmolLM2's 123,211: 6.8 MB as text)


def _findings_path(module: FilePath, rows: int) -> FilePath:
    return module.with_name(module.stem + "_findings.csv" + (".gz" if rows > GZIP_ROWS else ""))


def _graph_heads(found: PrunedGraph) -> list[str]:
    return sorted({s for s in found.edges.sender if ".h" in s}, key=lambda n: (component(n).order, n))


def write_claims(out, found: PrunedGraph, *, model: str, task: str, metric: str, n: int, seed: int, how: str = "",
                 seconds: dict | None = None, check_n: int | None = None, command: str | None = None) -> FilePath:
    """Write ``found`` as a claims module at ``out`` and its edge table beside it; returns ``out``.
    ``n``, ``seed``: the prompts it was found on; its claims run on ``check_n`` prompts (``n``
    when None) of seed ``seed`` + 1."""
    out = FilePath(out)
    if not found.paths:
        raise InputError("the pruned graph keeps no path from the output to the embedding, so there is no circuit to "
                         "write; lower the threshold or test more edges (max_edges, max_nodes)")
    components = found.components()
    # kept edges into the logits from components on some kept path (not from dead ends)
    outputs = sorted({s for s in found.kept().sender[found.kept().receiver == "out"] if s in components},
                     key=lambda n: (component(n).order, n))
    heads = set(_graph_heads(found))
    outside = sorted(heads - set(components), key=lambda n: (component(n).order, n))
    control_size = min(len([c for c in outputs if ".h" in c]) or 1, len(outside))
    findings = _findings_path(out, len(found.edges))
    out.parent.mkdir(parents=True, exist_ok=True)
    found.edges.to_csv(findings, index=False)
    kept = found.kept()
    recovered = (found.pruned - found.corrupt) / (found.clean - found.corrupt) if found.clean != found.corrupt else float("nan")
    timing = "" if not seconds else "; " + ", ".join(f"{k} {v['cpu_s']:.0f} s CPU ({v['wall_s']:.0f} s wall)" for k, v in seconds.items())
    lines = [
        f'"""{task} in {model}: a circuit found by `python -m causal_hypotheses discover`.',
        "",
        *([f"    {command}", ""] if command else []),
        f"Found on {n} prompts (seed {seed}), metric {metric}: {how}.",
        f"{len(kept)} of {len(found.edges)} edges kept ({found.runs} engine runs{timing}); the heads and MLPs on",
        f"their paths: {', '.join(components)}.  Measured then: clean {found.clean:.3f}, corrupt {found.corrupt:.3f},",
        f"every other edge reading the corrupt prompt {found.pruned:.3f} ({recovered:.2f} of the change kept).",
        *([f"Restored by the repair (everything they read reads the prompt itself): {', '.join(found.restored)}."] if found.restored else []),
        f"Every edge's attribution score and pruning decision: `{findings.name}`.",
        "",
        f"The claims check the circuit on {check_n or n} other prompts (seed {seed + 1}).  Thresholds by the rule of",
        f"circuits/README.md: a circuit found on a real model recovers at least {FOUND_BAR}; random heads at",
        f"most {CONTROL_BAR}.",
        '"""',
        "from __future__ import annotations",
        "",
        "import random",
        "",
        "import pytest",
        "",
        "from causal_hypotheses import Hypothesis",
        "",
        f"pytestmark = pytest.mark.claim(model={model!r}, task={task!r}, metric={metric!r}, n={check_n or n}, seed={seed + 1}, draws=2)",
        "",
        "# The kept graph's paths, from the output toward the embedding (a head inside a path is named",
        "# by the input it is entered by); a path that stops before the embedding ends at a restored",
        "# receiver, and everything below it belongs to it.",
        "PATHS = [",
        *[f"    {tuple(path)!r}," for path in found.paths],
        "]",
        "# The heads and MLPs on those paths, for the circuit criteria.",
        f"COMPONENTS = {components!r}",
        "# The components whose direct paths into the logits were kept.",
        f"OUTPUTS = {outputs!r}",
        "",
        "",
        f"@pytest.mark.claim(at_least={FOUND_BAR})",
        "def test_found_paths_carry_the_behaviour(claim):",
        '    """Scrubbing: the kept paths read the prompt itself, every other input a random other prompt."""',
        '    claim.scrub(Hypothesis({path: None for path in PATHS}, name="found circuit"))',
        "",
        "",
        f"@pytest.mark.claim(at_least={FOUND_BAR})",
        "def test_found_outputs_carry_the_change(claim):",
        '    """Path patching (noising): the found components\' direct paths into the logits carry the corruption\'s effect."""',
        '    claim.path_patch(OUTPUTS, ["out"])',
    ]
    if found.restored:  # those receivers read the whole model: the components alone are not what the graph states
        lines += [
            "",
            "# No faithfulness claim (the components alone, every other head mean-ablated): the repair",
            f"# restored {', '.join(found.restored)}, which read the whole model, so the graph does not",
            "# say that these components alone carry the behaviour.",
        ]
    else:
        lines += [
            "",
            "",
            f"@pytest.mark.claim(at_least={FOUND_BAR})",
            "def test_found_components_are_faithful(claim):",
            '    """Wang et al.\'s faithfulness: the components alone, everything else mean-ablated, keep the behaviour."""',
            "    claim.faithfulness(COMPONENTS)",
        ]
    if control_size:
        lines += [
            "",
            "",
            f"@pytest.mark.claim(at_most={CONTROL_BAR})",
            "def test_random_heads_carry_little(claim):",
            f'    """Negative control: {control_size} heads outside the circuit (drawn with seed 0), their direct paths scrubbed in."""',
            "    outside = [head for head in claim.engine.graph.heads() if head not in COMPONENTS]",
            f"    heads = random.Random(0).sample(outside, {control_size})",
            '    claim.scrub(Hypothesis({(head,): None for head in heads}, name="random heads"))',
        ]
    out.write_text("\n".join(lines) + "\n")
    return out

