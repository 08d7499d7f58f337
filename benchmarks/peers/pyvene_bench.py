"""pyvene on the peer-benchmark experiments.

    python benchmarks/peers/pyvene_bench.py MODEL_DIR --experiment act_patch_heads [--method source_reps]

pyvene wraps the fixture's HF GPT2LMHeadModel directly (``IntervenableModel(config, model)``).
Components used (pyvene's GPT-2 mapping): ``head_attention_value_output`` (a head's z, the
input of attn.c_proj) and ``head_query_output`` (a head's q slice of attn.c_attn's output),
unit ``h.pos``; ``attention_output`` and ``mlp_output`` (a layer's attention / MLP write), unit
``pos``. The patched variants of one forward are stacked in the batch, each row with its own
head index in ``unit_locations``.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

import common  # noqa: E402

TOOL = "pyvene"
METHODS = {
    "act_patch_heads": {
        "source_reps": "corrupt z's collected once (CollectIntervention), passed as source_representations; "
        "one forward per layer",
        "sources": "pyvene runs the corrupt source itself in every call (sources=[...]): two forwards per layer",
    },
    "path_patch_q": {
        "two_run": "Wang et al. recipe: run 1 sender corrupt (head_attention_value_output), every later "
        "attention_output and mlp_output frozen clean, receivers' head_query_output collected; run 2 clean "
        "with those q's; two forwards per sender layer",
    },
}


def pv():
    import pyvene

    return pyvene


def intervenable(model, representations):
    config = pv().IntervenableConfig(representations)
    wrapped = pv().IntervenableModel(config, model=model)
    wrapped.disable_model_gradients()
    return wrapped, list(wrapped.interventions.keys())


def head_loc(heads, positions):
    """unit_locations for one h.pos intervention: per row, [[head]] and its positions."""
    return [[[int(h)] for h in heads], [list(positions) for _ in heads]]


def collect(model, tokens, specs):
    """One forward collecting (component, layer) pairs over all positions: {(component, layer): (B, T, D)}."""
    # A CollectIntervention flattens (B, units, D) and keeps max_number_of_units * D features:
    # with the default of 1 it would keep position 0 only.
    reps = [{"layer": layer, "component": component, "unit": "pos", "max_number_of_units": tokens.shape[1],
             "intervention_type": pv().CollectIntervention} for component, layer in specs]
    wrapped, _ = intervenable(model, reps)
    positions = [list(range(tokens.shape[1]))] * tokens.shape[0]
    (_, activations), _ = wrapped({"input_ids": tokens}, unit_locations={"base": [positions] * len(specs)})
    return dict(zip(specs, activations))


def act_patch(model, data, method):
    clean, corrupt = data["clean"], data["corrupt"]
    n_layers, n_heads = model.config.n_layer, model.config.n_head
    batch, length = clean.shape
    last, dh = length - 1, model.config.n_embd // n_heads
    heads = torch.arange(n_heads).repeat_interleave(batch)
    loc = head_loc(heads, [last])
    rows = clean.repeat(n_heads, 1)
    if method == "source_reps":
        z = collect(model, corrupt, [("attention_value_output", layer) for layer in range(n_layers)])
    out = torch.empty(n_layers, n_heads)
    for layer in range(n_layers):
        wrapped, keys = intervenable(model, [{"layer": layer, "component": "head_attention_value_output",
                                              "unit": "h.pos", "intervention_type": pv().VanillaIntervention}])
        if method == "source_reps":
            zl = z[("attention_value_output", layer)][:, last].view(batch, n_heads, dh)
            source = zl.transpose(0, 1).reshape(-1, 1, 1, dh)  # row g*B+b: head g of example b
            _, result = wrapped({"input_ids": rows}, unit_locations={"base": [loc]},
                                source_representations={keys[0]: source})
        else:
            _, result = wrapped({"input_ids": rows}, [{"input_ids": corrupt.repeat(n_heads, 1)}],
                                unit_locations={"sources->base": ([loc], [loc])})
        out[layer] = common.logit_diff(result.logits, data["answer"], data["distractor"])
    return out


def path_patch(model, data):
    clean, corrupt = data["clean"], data["corrupt"]
    n_heads = model.config.n_head
    batch, length = clean.shape
    dh = model.config.n_embd // n_heads
    senders = list(common.SENDER_LAYERS)
    last_receiver = max(layer for layer, _ in common.RECEIVERS)
    frozen = range(last_receiver)
    specs = ([("attention_value_output", m) for m in senders] + [("attention_output", m) for m in frozen]
             + [("mlp_output", m) for m in frozen])
    clean_acts = collect(model, clean, specs)
    corrupt_z = collect(model, corrupt, [("attention_value_output", m) for m in senders])
    positions = list(range(length))
    all_pos = [positions] * (n_heads * batch)
    heads = torch.arange(n_heads).repeat_interleave(batch)
    rows = clean.repeat(n_heads, 1)
    out = torch.empty(len(senders), n_heads)
    vanilla, collector = pv().VanillaIntervention, pv().CollectIntervention

    for layer in senders:
        # Run 1: sender corrupt, every other writer the receivers read frozen clean.
        reps, locs, sources = [], [], []
        reps.append({"layer": layer, "component": "head_attention_value_output", "unit": "h.pos",
                     "intervention_type": vanilla})
        locs.append(head_loc(heads, positions))
        z = corrupt_z[("attention_value_output", layer)].view(batch, length, n_heads, dh)
        sources.append(z.permute(2, 0, 1, 3).reshape(-1, 1, length, dh))  # row g*B+b: head g
        for component in ("attention_output", "mlp_output"):
            for m in frozen:
                if m > layer or (component == "mlp_output" and m == layer):
                    reps.append({"layer": m, "component": component, "unit": "pos", "intervention_type": vanilla})
                    locs.append(all_pos)
                    sources.append(clean_acts[(component, m)].repeat(n_heads, 1, 1))
        for r_layer, r_head in common.RECEIVERS:
            reps.append({"layer": r_layer, "component": "head_query_output", "unit": "h.pos",
                         "intervention_type": collector})
            locs.append(head_loc([r_head] * len(heads), positions))
        wrapped, keys = intervenable(model, reps)
        source_reps = dict(zip(keys, sources))  # the collectors take none
        (_, captured), _ = wrapped({"input_ids": rows}, unit_locations={"base": locs},
                                   source_representations=source_reps)

        # Run 2: clean, the receivers' queries replaced by run 1's.
        reps2 = [{"layer": r_layer, "component": "head_query_output", "unit": "h.pos", "intervention_type": vanilla}
                 for r_layer, _ in common.RECEIVERS]
        locs2 = [head_loc([r_head] * len(heads), positions) for _, r_head in common.RECEIVERS]
        wrapped2, keys2 = intervenable(model, reps2)
        _, result = wrapped2({"input_ids": rows}, unit_locations={"base": locs2},
                             source_representations=dict(zip(keys2, captured)))
        out[layer] = common.logit_diff(result.logits, data["answer"], data["distractor"])
    return out


def main() -> None:
    started = common.start(__doc__, TOOL, METHODS, no_scrub="pyvene has no causal-scrubbing API; its interchange "
                           "interventions could express resampling by hand, but nothing maps a hypothesis "
                           "graph to per-path inputs")
    if started is None:
        return
    args, method = started
    model = common.load_hf(args.model_dir)
    data = common.load_batch(args.model_dir)
    if args.experiment == "act_patch_heads":
        fn = lambda: act_patch(model, data, method)  # noqa: E731
    else:
        fn = lambda: path_patch(model, data)  # noqa: E731

    def run():
        with torch.inference_mode():
            return fn()

    values, seconds, times, memory = common.measure(run, args.repeats)
    from importlib.metadata import version

    common.emit(TOOL, args.experiment, values, seconds, times, memory, args.repeats, method=method,
                pyvene=version("pyvene"), transformers=version("transformers"))


if __name__ == "__main__":
    main()
