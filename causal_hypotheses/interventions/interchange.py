"""Interchange intervention accuracy (Geiger et al. 2021, 2023) against a high-level causal model.

The causal model computes named variables from an example's features and the answer
token from the variables.  An alignment maps one variable to model components.  For a
pair (base, source), the model's components read the source and everything else the
base; the causal model's variable is set to its value on the source.  The accuracy is
how often the model's top prediction equals the causal model's counterfactual answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import pandas as pd
import torch

from ..errors import InputError
from .patching import activation_patch


@dataclass(frozen=True)
class CausalModel:
    """``variables``: name -> function of the example's features (a dict of ints);
    ``output``: function of the variables' values -> the answer token id."""

    variables: Mapping[str, Callable[[dict], int]]
    output: Callable[[dict], int]
    name: str = "causal model"

    def run(self, features: dict, **interventions: int) -> int:
        values = {name: fn(features) for name, fn in self.variables.items()}
        unknown = set(interventions) - set(values)
        if unknown:
            raise InputError(f"{self.name}: no variable {sorted(unknown)}; variables are {sorted(values)}")
        values.update(interventions)
        return int(self.output(values))


@dataclass(frozen=True)
class InterchangeResult:
    variable: str
    nodes: tuple
    n: int
    seed: int
    accuracy: float
    ci: tuple[float, float]
    per_pair: pd.DataFrame = field(repr=False)


def _features(task, i: int) -> dict:
    return {name: int(values[i]) for name, values in task.features.items()}


def interchange_intervention_accuracy(
    engine,
    task,
    causal_model: CausalModel,
    variable: str,
    nodes,
    n: int | None = None,
    seed: int = 0,
    *,
    positions=None,
    n_boot: int = 2000,
    level: float = 0.95,
) -> InterchangeResult:
    """IIA of aligning ``variable`` with ``nodes`` on ``n`` seeded (base, source) pairs of ``task``."""
    if variable not in causal_model.variables:
        raise InputError(f"{causal_model.name} has no variable {variable!r}; variables are {sorted(causal_model.variables)}")
    total = len(task)
    n = total if n is None else n
    if not 1 <= n:
        raise InputError(f"n={n}: expected at least one pair")
    generator = torch.Generator().manual_seed(seed)
    base_index = torch.randint(0, total, (n,), generator=generator)
    source_index = torch.randint(0, total, (n,), generator=generator)
    logits = activation_patch(engine, task.clean[base_index], task.clean[source_index], nodes, positions, logit_positions=task.position)
    predicted = logits[:, 0].argmax(-1)
    expected = torch.tensor([
        causal_model.run(_features(task, int(b)), **{variable: causal_model.variables[variable](_features(task, int(s)))})
        for b, s in zip(base_index, source_index)
    ])
    hits = (predicted == expected).double()
    boot = hits[torch.randint(0, n, (n_boot, n), generator=generator)].mean(1)
    low, high = torch.quantile(boot, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
    per_pair = pd.DataFrame({"base": base_index.numpy(), "source": source_index.numpy(),
                             "expected": expected.numpy(), "predicted": predicted.numpy(), "hit": hits.numpy()})
    return InterchangeResult(variable, tuple([nodes] if isinstance(nodes, str) else nodes), n, seed,
                             float(hits.mean()), (float(low), float(high)), per_pair)
