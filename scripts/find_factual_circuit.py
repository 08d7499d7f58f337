"""Find where SmolLM2-135M recalls facts, with the project's activation-patching sweeps.

    OMP_NUM_THREADS=1 python scripts/find_factual_circuit.py [--n 32] [--seed 0]
        [--out circuits/findings/factual-smollm2]

Following Meng et al. (2022, "Locating and Editing Factual Associations in GPT") on the
built-in ``factual`` task ("The capital city of France is" -> " Paris"; the corrupt prompt
swaps in another subject of the same relation; metric: logit difference, answer minus the
corrupt subject's object, at the last position):

0. the signal: how many facts survive SmolLM2's tokenizer, and per relation the clean and
   corrupt logit differences and the top-1 accuracy, over every fact once;
1. every MLP and every attention layer patched alone at each position role: the tokens
   before the subject (identical in both prompts), the subject, the tokens after it but
   before the last, and the last token; denoising (the corrupt run reads the component from
   the clean prompt, as Meng et al. restore clean states) and noising (the clean run reads
   it from the corrupt prompt).  Each cell is the fraction of the clean-to-corrupt change
   in the mean logit difference that the patch moves;
2. the two components that stand out, per relation;
3. the sets the claims in ``circuits/test_factual_smollm2.py`` name, patched together;
4. Wang et al.'s faithfulness of candidate circuits: every head and MLP outside them
   mean-ablated over the corrupt prompts, F(C) / F(M).

Writes one CSV per table and prints them.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import pandas as pd
import torch

from causal_hypotheses import Engine, activation_patch_sweep
from causal_hypotheses.interventions import activation_patch, criteria
from causal_hypotheses.metrics import logit_diff
from causal_hypotheses.smollm2 import load_smollm2
from causal_hypotheses.tasks import factual
from causal_hypotheses.tasks.factual import FACTS

RELATIONS = ("capital", "language", "continent", "city")  # in the order of FACTS' templates
ROLES = ("before", "subject", "further", "last")
N_LAYERS = 30


def role_masks(task) -> dict[str, torch.Tensor]:
    """(B, T) bool masks of each position role; the subject is one token."""
    batch, seq = task.clean.shape
    index = torch.arange(seq)[None, :]
    subject = task.features["subject_pos"][:, None]
    return {"before": index < subject, "subject": index == subject,
            "further": (index > subject) & (index < seq - 1), "last": (index == seq - 1).expand(batch, seq)}


def mean_ld(engine, tokens, task) -> float:
    return float(logit_diff(engine.run([tokens], lambda path: 0, logit_positions=-1).logits, task).mean())


def signal(engine, tokenizer) -> pd.DataFrame:
    """Step 0: facts kept by the tokenizer, and the model's logit differences on each once."""
    def one_token(word):
        return len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1

    templates = list(dict.fromkeys(template for template, _, _ in FACTS))
    kept = sum(one_token(s) and one_token(o) for _, s, o in FACTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dropped facts: counted above
        task = factual(tokenizer, kept, seed=0)  # n = the kept facts: each exactly once
    clean = engine.run([task.clean], lambda path: 0, logit_positions=-1).logits
    corrupt = engine.run([task.corrupt], lambda path: 0, logit_positions=-1).logits
    ld_clean, ld_corrupt = logit_diff(clean, task), logit_diff(corrupt, task)
    top1 = clean[:, -1].argmax(-1) == task.answer
    rows = []
    for rel, template in enumerate(templates):
        pick = task.features["relation"] == rel
        rows.append({"relation": RELATIONS[rel], "template": template,
                     "facts": sum(t == template for t, _, _ in FACTS), "kept": int(pick.sum()),
                     "clean_logit_diff": float(ld_clean[pick].mean()),
                     "corrupt_logit_diff": float(ld_corrupt[pick].mean()),
                     "difference": float((ld_clean - ld_corrupt)[pick].mean()),
                     "top1_accuracy": float(top1[pick].float().mean()),
                     "clean_logit_diff_positive": float((ld_clean[pick] > 0).float().mean())})
    rows.append({"relation": "all", "template": "", "facts": len(FACTS), "kept": len(task),
                 "clean_logit_diff": float(ld_clean.mean()), "corrupt_logit_diff": float(ld_corrupt.mean()),
                 "difference": float((ld_clean - ld_corrupt).mean()), "top1_accuracy": float(top1.float().mean()),
                 "clean_logit_diff_positive": float((ld_clean > 0).float().mean())})
    return pd.DataFrame(rows).set_index("relation")


def fractions(engine, task, direction: str, nodes: list[str], positions) -> pd.Series:
    """Each node patched alone at ``positions``: the fraction of the change it moves."""
    base, source = (task.clean, task.corrupt) if direction == "noising" else (task.corrupt, task.clean)
    at_base, at_source = mean_ld(engine, base, task), mean_ld(engine, source, task)

    def metric(logits):
        return (logit_diff(logits, task) - at_base) / (at_source - at_base)

    return activation_patch_sweep(engine, base, source, metric, nodes=nodes, positions=positions, logit_positions=-1)


def patched_fraction(engine, task, nodes, positions, direction: str = "denoising") -> float:
    """The fraction of the change that patching ``nodes`` together at ``positions`` moves."""
    base, source = (task.clean, task.corrupt) if direction == "noising" else (task.corrupt, task.clean)
    at_base, at_source = mean_ld(engine, base, task), mean_ld(engine, source, task)
    logits = activation_patch(engine, base, source, nodes, positions, logit_positions=-1)
    return (float(logit_diff(logits, task).mean()) - at_base) / (at_source - at_base)


def sweeps(engine, task) -> dict[str, pd.DataFrame]:
    """Step 1: one table (layer x role) per direction and component kind."""
    masks = role_masks(task)
    tables = {}
    for direction in ("denoising", "noising"):
        for kind, prefix in (("mlp", "m"), ("attention", "a")):
            nodes = [f"{prefix}{layer}" for layer in range(N_LAYERS)]
            columns = {}
            for role in ROLES:
                rows = masks[role].any(dim=1)  # "further" exists for two relations only: measure on those
                sub = task.subset(rows.nonzero().squeeze(1))
                started = time.process_time()
                column = fractions(engine, sub, direction, nodes, masks[role][rows])
                columns[f"{role} (n={len(sub)})"] = column.to_numpy()
                print(f"{direction} {kind} at {role}: {time.process_time() - started:.0f} s CPU", flush=True)
            tables[f"1-{kind}-{direction}"] = pd.DataFrame(columns, index=pd.RangeIndex(N_LAYERS, name="layer"))
    return tables


def by_relation(engine, task) -> pd.DataFrame:
    """Step 2: m0 at the subject and a23 at the last token, per relation (denoising)."""
    rows = []
    for rel, name in enumerate(RELATIONS):
        pick = (task.features["relation"] == rel).nonzero().squeeze(1)
        if len(pick) == 0:
            continue
        sub = task.subset(pick)
        rows.append({"relation": name, "n": len(sub),
                     "m0 at the subject": patched_fraction(engine, sub, ["m0"], role_masks(sub)["subject"]),
                     "a23 at the last token": patched_fraction(engine, sub, ["a23"], -1)})
    return pd.DataFrame(rows).set_index("relation")


def from_subject_on(task) -> torch.Tensor:
    """The subject and every later position: a suffix of each prompt (exact for sets of nodes)."""
    seq = task.clean.shape[1]
    return torch.arange(seq)[None, :] >= task.features["subject_pos"][:, None]


SETS = (  # name, nodes, where (as the claims patch them)
    ("m0", ["m0"], "subject"),
    ("m1-m14", [f"m{l}" for l in range(1, 15)], "subject on"),
    ("m0-m29", [f"m{l}" for l in range(30)], "subject on"),
    ("m0-m14", [f"m{l}" for l in range(15)], "last"),
    ("m22-m29", [f"m{l}" for l in range(22, 30)], "last"),
    ("a23", ["a23"], "last"),
    ("a0-a22", [f"a{l}" for l in range(23)], "last"),
    ("a0-a29", [f"a{l}" for l in range(30)], "last"),
)


def sets(engine, task) -> pd.DataFrame:
    """Step 3: the claims' sets, both directions."""
    where = {"subject": role_masks(task)["subject"], "subject on": from_subject_on(task), "last": -1}
    rows = []
    for name, nodes, at in SETS:
        rows.append({"set": name, "positions": at,
                     **{direction: patched_fraction(engine, task, nodes, where[at], direction)
                        for direction in ("denoising", "noising")}})
    return pd.DataFrame(rows).set_index("set")


def mlps(layers) -> list[str]:
    return [f"m{layer}" for layer in layers]


def attention(layers) -> list[str]:
    return [f"a{layer}" for layer in layers]


CANDIDATES = (  # name, circuit
    ("every MLP, a21-a29", mlps(range(30)) + attention(range(21, 30))),
    ("every MLP, a23", mlps(range(30)) + ["a23"]),
    ("m0-m14, a23, m22-m29", mlps(range(15)) + ["a23"] + mlps(range(22, 30))),
    ("m0, a23, m22-m29", ["m0", "a23"] + mlps(range(22, 30))),
    ("every attention layer, m0-m14, m22-m29", attention(range(30)) + mlps(range(15)) + mlps(range(22, 30))),
    ("every attention layer, m0", attention(range(30)) + ["m0"]),
)


def faithfulness(engine, task) -> pd.DataFrame:
    """Step 4: F(C) / F(M) with everything outside C mean-ablated, for each candidate."""
    rows = []
    for name, circuit in CANDIDATES:
        result = criteria.faithfulness(engine, circuit, task, "logit_diff", normalise="model")
        rows.append({"circuit": name, "faithfulness": result.value, "ci_low": result.ci[0], "ci_high": result.ci[1]})
    return pd.DataFrame(rows).set_index("circuit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="circuits/findings/factual-smollm2")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    model, tokenizer = load_smollm2()
    engine = Engine.from_hf(model)
    tables = {"0-signal": signal(engine, tokenizer)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the facts SmolLM2's tokenizer drops: listed by step 0
        task = factual(tokenizer, args.n, seed=args.seed)
    print(f"{args.n} prompts (seed {args.seed}): clean logit difference {mean_ld(engine, task.clean, task):.3f}, "
          f"corrupt {mean_ld(engine, task.corrupt, task):.3f}", flush=True)
    tables.update(sweeps(engine, task))
    tables["2-by_relation"] = by_relation(engine, task)
    tables["3-sets"] = sets(engine, task)
    tables["4-faithfulness"] = faithfulness(engine, task)
    for name, table in tables.items():
        table.to_csv(os.path.join(args.out, f"{name}.csv"), float_format="%.4f")
        print(f"\n{name}\n{table.round(3).to_string()}", flush=True)


if __name__ == "__main__":
    main()
