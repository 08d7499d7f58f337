"""A found circuit written out as a claims module (a pytest file under ``circuits/``), with its findings CSV.

:func:`discover` runs the whole search on a loaded engine and task: attribution scores of every
edge, exact pruning of the candidates (prune.py), then the claims the circuit is written with
(:func:`drafts`: its paths scrubbed, its outputs' direct paths patched, its components'
faithfulness when the repair restored no receiver, random heads as a negative control) measured on
other prompts than the ones it was found on (the next seed; check.py), and :func:`write_claims`,
which gives each claim the bar the rule of ``circuits/README.md`` sets for its measured interval.
``python -m causal_hypotheses discover`` is the command line (``causal_hypotheses/__main__.py``).
"""
from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Mapping

from ..errors import InputError
from ..graph import component
from ..metrics import get_metric, metric_reads
from .attribution import attribute
from .check import (CARRIES, DRAWS, HEAVY_SECONDS, LEVEL, NOTHING, Bar, Draft, Measured, choose_bar, faithfulness, measure_claims,
                    path_patching, random_heads, scrubbing)
from .prune import PrunedGraph, prune

CORRUPTIONS = ("task", "resample")


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found and wrote: the pruned graph, the module and CSV paths, the
    candidate nodes, CPU and wall seconds of each step, and each claim's measurement on the check
    prompts by draft key (None when not measured)."""

    found: PrunedGraph
    module: FilePath
    findings: FilePath
    nodes: list
    seconds: dict
    measured: dict | None = None

    @property
    def claimed(self) -> list[str]:
        """The keys of the claims written as tests (all of them when not measured)."""
        found = {draft.key: draft for draft in drafts(self.found)}
        return [key for key, draft in found.items()
                if choose_bar(draft, None if self.measured is None else self.measured[key]).claimed]


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
    check_task=None,
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
    ``check_task``: those prompts, the registered task ``task_name`` built with ``check_n``
    examples and seed ``seed`` + 1 on this engine's model (what pytest builds for the written
    module; ``claims.registry.build_task``): every claim is run on it before it is written, with
    the claims' seed, and written with the bar its interval supports.  None writes the bars
    unmeasured, and the module says so.
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
    if check_task is not None and len(check_task.clean) != (check_n or n):
        raise InputError(f"check_task has {len(check_task.clean)} prompts, but the written claims run on check_n="
                         f"{check_n or n}; build it as pytest will: build_task(task_name, model, check_n, seed + 1)")
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
    measured = None
    if check_task is not None:
        if not found.paths:
            raise InputError("the pruned graph keeps no path from the output to the embedding, so there is no circuit to "
                             "check; lower the threshold or test more edges (max_edges, max_nodes)")
        claims = drafts(found)
        measured = _timed("check", seconds, lambda: measure_claims(claims, engine, check_task, metric, seed + 1, progress=progress))
    else:
        options.insert(-1, "--no-check")
    written = write_claims(out, found, model=model, task=task_name, metric=metric, n=n, seed=seed, how=description, seconds=seconds,
                           check_n=check_n, command="python -m causal_hypotheses discover " + " ".join(options), measured=measured)
    return Discovery(found, written, _findings_path(out, len(found.edges)), nodes or [], seconds, measured)


GZIP_ROWS = 10_000  # a findings table with more edges is written gzipped (SmolLM2's 123,211: 6.8 MB as text)


def _findings_path(module: FilePath, rows: int) -> FilePath:
    return module.with_name(module.stem + "_findings.csv" + (".gz" if rows > GZIP_ROWS else ""))


def _graph_heads(found: PrunedGraph) -> list[str]:
    return sorted({s for s in found.edges.sender if ".h" in s}, key=lambda n: (component(n).order, n))


def drafts(found: PrunedGraph) -> list[Draft]:
    """The claims ``found`` is written with, before their bars are chosen: its paths scrubbed, its
    outputs' direct paths into the logits patched, its components' faithfulness (only when the
    repair restored no receiver: restored ones read the whole model, so the components alone are
    not what the graph states), and random heads outside it as a negative control."""
    components = found.components()
    outputs = _outputs(found)
    outside = sorted(set(_graph_heads(found)) - set(components), key=lambda n: (component(n).order, n))
    control_size = min(len([c for c in outputs if ".h" in c]) or 1, len(outside))
    written = [
        Draft("found_paths", {"carries": "test_found_paths_carry_the_behaviour", "wrong": "test_found_paths_do_not_carry_the_behaviour"},
              "carries", False, "Scrubbing: the kept paths read the prompt itself, every other input a random other prompt.",
              'claim.scrub(Hypothesis({path: None for path in PATHS}, name="found circuit"))',
              scrubbing(found.paths, "found circuit")),
        Draft("found_outputs", {"carries": "test_found_outputs_carry_the_change", "matters": "test_found_outputs_matter",
                                "wrong": "test_found_outputs_do_not_carry_the_change"},
              "carries", True, "Path patching (noising): the fraction of the corruption's effect the found components' direct paths into the logits carry.",
              'claim.path_patch(OUTPUTS, ["out"])', path_patching(outputs, ["out"])),
    ]
    if not found.restored:
        written.append(Draft(
            "found_components", {"carries": "test_found_components_are_faithful", "wrong": "test_found_components_are_not_faithful"},
            "carries", False, "Wang et al.'s faithfulness: the components alone, everything else mean-ablated, keep the behaviour.",
            "claim.faithfulness(COMPONENTS)", faithfulness(components)))
    if control_size:
        written.append(Draft(
            "random_heads", {"nothing": "test_random_heads_carry_little"}, "nothing", False,
            f"Negative control: {control_size} heads outside the circuit (drawn with seed 0), their direct paths scrubbed in.",
            "outside = [head for head in claim.engine.graph.heads() if head not in COMPONENTS]\n"
            f"heads = random.Random(0).sample(outside, {control_size})\n"
            'claim.scrub(Hypothesis({(head,): None for head in heads}, name="random heads"))',
            random_heads(components, control_size)))
    return written


def _outputs(found: PrunedGraph) -> list[str]:
    """Kept edges into the logits from components on some kept path (not from dead ends)."""
    components = found.components()
    kept = found.kept()
    return sorted({s for s in kept.sender[kept.receiver == "out"] if s in components}, key=lambda n: (component(n).order, n))


def _claim_lines(draft: Draft, bar: Bar, measured: Measured | None) -> list[str]:
    """A claim's test function, or, when its measurement supports no bar, a comment with its numbers."""
    said = f"{measured.statistic} {measured} ({LEVEL:.0%} interval)" if measured is not None else "not measured"
    body = draft.body.splitlines()
    if not bar.claimed:
        return ["", "", *_comment(f"Not claimed. {draft.doc}  Measured on these prompts: {said}; {bar.why}, so no bar.  The experiment:"),
                *[f"#     {line}" for line in body]]
    heavy = measured is not None and measured.heavy
    note = (f"  Heavy: its check took {measured.seconds:.0f} s CPU (over {HEAVY_SECONDS:g}), so `pytest` runs it under "
            "--claims-heavy=run (with these numbers) or --claims-profile thorough (on more prompts), and otherwise skips it, "
            "saying why." if heavy else "")
    return ["", "", *_comment((f"Measured on these prompts: {said}; {bar.why}." if measured is not None else f"{bar.why}.") + note),
            bar.marker(heavy), f"def {draft.names[bar.says]}(claim):", f'    """{draft.doc}"""', *[f"    {line}" for line in body]]


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, 98, break_long_words=False, break_on_hyphens=False)]


def write_claims(out, found: PrunedGraph, *, model: str, task: str, metric: str, n: int, seed: int, how: str = "",
                 seconds: dict | None = None, check_n: int | None = None, command: str | None = None,
                 measured: Mapping[str, Measured] | None = None) -> FilePath:
    """Write ``found`` as a claims module at ``out`` and its edge table beside it; returns ``out``.
    ``n``, ``seed``: the prompts it was found on; its claims run on ``check_n`` prompts (``n``
    when None) of seed ``seed`` + 1.  ``measured``: each claim's measurement on those prompts by
    draft key (check.py; :func:`discover` measures them), from which its bar is chosen by the
    rule; None writes the bars each claim is meant to meet and says that they were not measured."""
    out = FilePath(out)
    if not found.paths:
        raise InputError("the pruned graph keeps no path from the output to the embedding, so there is no circuit to "
                         "write; lower the threshold or test more edges (max_edges, max_nodes)")
    components = found.components()
    outputs = _outputs(found)
    claims = drafts(found)
    if measured is not None and set(measured) != {draft.key for draft in claims}:
        raise InputError(f"measured has claims {sorted(measured)}, but the graph is written with {[d.key for d in claims]}; "
                         "measure the claims of drafts(found)")
    bars = {draft.key: choose_bar(draft, None if measured is None else measured[draft.key]) for draft in claims}
    findings = _findings_path(out, len(found.edges))
    out.parent.mkdir(parents=True, exist_ok=True)
    # gzip without a timestamp: the same findings give the same bytes
    found.edges.to_csv(findings, index=False, compression={"method": "gzip", "mtime": 0} if findings.suffix == ".gz" else None)
    kept = found.kept()
    recovered = (found.pruned - found.corrupt) / (found.clean - found.corrupt) if found.clean != found.corrupt else float("nan")
    timing = "" if not seconds else "; " + ", ".join(f"{k} {v['cpu_s']:.0f} s CPU ({v['wall_s']:.0f} s wall)" for k, v in seconds.items())
    check_n = check_n or n
    if measured is None:
        checked = [
            f"The claims run on {check_n} other prompts (seed {seed + 1}).  Their bars were NOT measured: each is the",
            f"bar of circuits/README.md's rule for what it says (carries the behaviour: at least {CARRIES:g};",
            f"random heads: at most {NOTHING:g}), unchecked, so a claim may fail as written.",
        ]
    else:
        checked = [
            f"The claims run on {check_n} other prompts (seed {seed + 1}).  Each was measured there before it was written",
            "(the same experiment, seeds and draws as pytest runs under the default profile), and its bar is",
            "the one circuits/README.md's rule gives for its whole interval; a measurement that supports no bar",
            "is written as a comment.  Measured:",
            *[f"  {draft.key.replace('_', ' ')}: {measured[draft.key].statistic} {measured[draft.key]} ({LEVEL:.0%} interval) -> "
              + (bars[draft.key].marker().removeprefix("@pytest.mark.claim") if bars[draft.key].claimed else "not claimed")
              for draft in claims],
        ]
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
        *checked,
        '"""',
        "from __future__ import annotations",
        "",
        "import random",
        "",
        "import pytest",
        "",
        "from causal_hypotheses import Hypothesis",
        "",
        f"pytestmark = pytest.mark.claim(model={model!r}, task={task!r}, metric={metric!r}, n={check_n}, seed={seed + 1}, draws={DRAWS})",
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
    ]
    for draft in claims:
        lines += _claim_lines(draft, bars[draft.key], None if measured is None else measured[draft.key])
    if found.restored:  # those receivers read the whole model: the components alone are not what the graph states
        lines += [
            "",
            "",
            "# No faithfulness claim (the components alone, every other head mean-ablated): the repair",
            f"# restored {', '.join(found.restored)}, which read the whole model, so the graph does not",
            "# say that these components alone carry the behaviour.",
        ]
    out.write_text("\n".join(lines) + "\n")
    return out
