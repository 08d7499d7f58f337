"""Direct logit attribution: how much each head writes, directly, into a logit difference.

No intervention: one ordinary forward (from the engine's activation cache when its rows are
there), each writer's output at the prediction position read through the final norm, with the
norm's scale frozen at its value in that run, and the unembedding, along W_U[answer] -
W_U[distractor] (engine/activations.py, ``CachedActivations.direct_contributions``).  A direct
contribution says nothing about what a head does through later components; patching does.
"""
from __future__ import annotations

import pandas as pd

from .tables import HeadTable, empty_head_table


def direct_contributions(engine, tokens, answer, distractor, position: int = -1) -> pd.DataFrame:
    """Per example (rows) each writer's direct contribution (columns ``embed``, ``a{L}.h{H}``,
    ``a{L} bias``, ``m{L}``, ``final bias``) to logit[answer] - logit[distractor] at ``position``,
    the final norm's scale frozen at this run's: each row sums to the example's logit difference.
    ``answer``/``distractor``: an int, or a LongTensor (B,) of one token id per example."""
    names, values = engine.activations(tokens).direct_contributions(answer, distractor, position)
    return pd.DataFrame(values.cpu().numpy(), columns=pd.Index(names, name="writer")).rename_axis("example")


def direct_logit_attribution(engine, tokens, answer, distractor, position: int = -1) -> HeadTable:
    """Each head's direct contribution to logit[answer] - logit[distractor] at ``position``, averaged
    over the batch, as a layer x head table (the final norm's scale frozen at this run's; see
    :func:`direct_contributions` for the embedding's, the MLPs' and the biases' shares, which with
    the heads' sum to the logit difference).  For a task: ``direct_logit_attribution(engine,
    task.clean, task.answer, task.distractor, task.position)``."""
    per_example = direct_contributions(engine, tokens, answer, distractor, position)
    table = empty_head_table(engine.graph.n_layers, engine.graph.n_heads)
    means = per_example.mean()
    for layer in table.index:
        for head in table.columns:
            table.loc[layer, head] = means[f"a{layer}.h{head}"]
    table.attrs["logit_diff"] = float(per_example.sum(axis=1).mean())
    return table
