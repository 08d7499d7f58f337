"""Claims: what a ``@pytest.mark.claim(...)`` states, the models and tasks it names, its verdict.

A claim names a model and a task from the registries below, a metric, and a threshold on
the fraction recovered (``at_least`` for "these paths carry the behaviour", ``at_most`` for
negative controls).  :class:`Claim` is what the ``claim`` fixture hands a test: it runs the
experiment, records the result, and decides the verdict on the confidence interval.

Nothing here imports pytest, torch or transformers at module level: the plugin imports
this module at start-up, and models load only when a claim runs.

Register your own models and tasks from a ``conftest.py``::

    from causal_hypotheses.claims import register_model, register_task

    @register_model("my-model")
    def load():                          # no arguments; returns an HF model, an Engine,
        return GPT2LMHeadModel(config)   # or ModelBundle(model, tokenizer, task_options)

    @register_task("copying")
    def build(model, n, seed):           # model: LoadedModel; returns a tasks.Task
        return my_task(model.vocab_size, n, seed)

The package: ``registry`` (models and tasks), ``builtins`` (the built-in ones), ``spec`` (markers
and profiles -> ClaimSpec), ``verdict`` (pure judgement), ``experiment`` (the ``claim`` object),
``record`` (a claim's result as a ClaimRecord, and the measurement interface results follow).
"""
from __future__ import annotations

from ..errors import ClaimNotMet, ClaimSpecError, ModelUnavailable  # noqa: F401
from . import builtins as _builtins  # noqa: F401  (registers the built-in models and tasks)
from .builtins import GPT2_HOW_TO  # noqa: F401
from .experiment import Claim  # noqa: F401
from .record import ClaimRecord, as_record, empty_record, make_record  # noqa: F401
from .registry import (LoadedModel, ModelBundle, build_task, load_model, model_names, register_model,  # noqa: F401
                       register_task, task_names)
from .spec import (ABLATIONS, MARKER_ARGUMENTS, METRICS, MIN_SCALED_N, PROFILES, RESAMPLING, THRESHOLDS,  # noqa: F401
                   ClaimSpec, Profile, make_spec)
from .verdict import VERDICTS, decide, explain, no_effect  # noqa: F401
