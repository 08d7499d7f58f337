"""The plan's typed IR: every op has a spec and a handler; specs say which selectors they read."""
from __future__ import annotations

import dataclasses

import pytest

from causal_hypotheses.engine import ir
from causal_hypotheses.engine.evaluate import _HANDLERS
from causal_hypotheses.graph import component


def test_every_op_has_one_spec_class_and_one_handler():
    specs = [cls for cls in vars(ir).values() if isinstance(cls, type) and issubclass(cls, ir.Spec) and cls is not ir.Spec]
    assert sorted(spec.op.value for spec in specs) == sorted(op.value for op in ir.Op)
    assert set(_HANDLERS) == set(ir.Op)
    for spec in specs:
        assert dataclasses.is_dataclass(spec) and spec.__dataclass_params__.frozen


def test_plans_are_hash_consed_on_typed_specs(tiny_engine, tiny_tokens):
    result = tiny_engine.run(list(tiny_tokens), lambda p: 1 if "a1.h2" in p else 0, lambda p: p[-1] == "a1")
    nodes = list(result._planner.nodes.values())
    assert all(isinstance(node.spec, ir.Spec) and isinstance(node.op, ir.Op) for node in nodes)
    assert len({(node.spec, tuple(c.id for c in node.children)) for node in nodes}) == len(nodes)
    gathers = [node for node in nodes if node.op is ir.Op.GATHER]
    assert gathers and all(node.spec.reads == (node.spec.selector,) for node in gathers)
    delta = ir.Delta(("head_out", 1, 2), ("input", 1), ("input", 0))
    assert delta.reads == (("input", 1), ("input", 0)) and delta.label() == "a1.h2"
    assert ir.Mlp(3) != ir.Core(3) and ir.Mlp(3) == ir.Mlp(3) and hash(ir.Mlp(3)) == hash(ir.Mlp(3))


@pytest.mark.parametrize("site,name", [
    (("embed",), "embed"), (("attn_out", 3), "a3"), (("mlp_out", 0), "m0"), (("head_out", 2, 5), "a2.h5"),
    (("qkv", 1, 0, 2), "a1.h0.v"), (("resid", "attn_in", 4), "resid into a4"), (("resid", "final", -1), "resid final"),
])
def test_site_names_are_the_canonical_component_names(site, name):
    assert ir.site_name(site) == name


def test_one_parser_for_structure():
    assert component("a10.h3.k").order == 20 and component("m10").order == 21 and component("embed").order == -1
    assert component("a10.h3.k").without_channel().name == "a10.h3"
