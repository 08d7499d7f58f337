"""The engine on a CUDA device against independent references on that device: the unmodified HF
model with hooks (tests/hf_reference.py, tests/llama_reference.py).

Called as a user calls it: token ids and task tensors stay on the CPU (the engine moves tokens to
the model's device; metrics and criteria move logits back). Skipped where torch sees no CUDA
device; the same checks run on the CPU in test_engine.py, test_llama.py and test_scrubbing.py.
"""
from __future__ import annotations

import pytest
import torch

from causal_hypotheses import Engine, Hypothesis, activation_patch, activation_patch_sweep, path_patch, random_gpt2, scrub
from causal_hypotheses.interventions.scrubbing import hypothesis_functions
from causal_hypotheses.tasks import Task

import hf_reference as ref
import llama_reference as llama_ref

ATOL = 1e-4
CUDA = "cuda"

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason=f"no CUDA device: torch {torch.__version__} reports torch.cuda.is_available() == False; "
    "these checks run where a GPU is (the same checks run on the CPU in test_engine.py and test_llama.py)",
)


@pytest.fixture(scope="module")
def gpu_model():
    # std 0.3 makes attention peaked, so patching one head visibly changes the output (as conftest's tiny_model).
    return random_gpt2("tiny", seed=1, std=0.3).to(CUDA)


@pytest.fixture(scope="module")
def gpu_engine(gpu_model):
    return Engine.from_hf(gpu_model)


def tokens(model, seed, shape=(3, 8)):
    """CPU token ids, as a user holds them."""
    return torch.randint(0, model.config.vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def test_clean_run_equals_hf_forward_on_the_device(gpu_model, gpu_engine):
    clean, corrupt = tokens(gpu_model, 0), tokens(gpu_model, 1)
    assert gpu_engine.device.type == CUDA
    for i, batch in enumerate([clean, corrupt]):
        result = gpu_engine.run([clean, corrupt], lambda path, i=i: i)
        assert result.logits.device.type == CUDA
        torch.testing.assert_close(result.logits, ref.logits(gpu_model, batch.to(CUDA)), atol=ATOL, rtol=0)


def test_activation_patch_equals_hook_patching_on_the_device(gpu_model, gpu_engine):
    clean, corrupt = tokens(gpu_model, 7), tokens(gpu_model, 8)
    c, x = clean.to(CUDA), corrupt.to(CUDA)
    expected = ref.patch_head_z(gpu_model, c, 0, 2, ref.head_z(gpu_model, x, 0))
    got = activation_patch(gpu_engine, clean, corrupt, ["a0.h2"])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(gpu_model, c)).abs().max() > 1e-3  # the patch changed something

    at_last = ref.patch_head_z_at(gpu_model, c, 0, 2, ref.head_z(gpu_model, x, 0), [-1])
    got = activation_patch(gpu_engine, clean, corrupt, ["a0.h2"], positions=[-1], logit_positions=-1)
    torch.testing.assert_close(got, at_last[:, -1:], atol=ATOL, rtol=0)


def test_path_patch_equals_hand_built_reference_on_the_device(gpu_model, gpu_engine):
    clean, corrupt = tokens(gpu_model, 11), tokens(gpu_model, 12)
    c, x = clean.to(CUDA), corrupt.to(CUDA)
    delta = ref.head_output(gpu_model, x, 0, 3) - ref.head_output(gpu_model, c, 0, 3)
    expected = ref.path_patch_channel(gpu_model, c, delta, 1, 2, "qkv".index("k"))
    got = path_patch(gpu_engine, clean, corrupt, ["a0.h3"], ["a1.h2.k"])
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    assert (expected - ref.logits(gpu_model, c)).abs().max() > 1e-4


def test_sweep_with_cpu_task_tensors_equals_hook_patching(gpu_model, gpu_engine):
    """A metric indexing the device's logits with CPU index tensors, through the lazy logits."""
    clean, corrupt = tokens(gpu_model, 13), tokens(gpu_model, 14)
    answer, distractor = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    rows = torch.arange(3)

    def metric(logits):
        return logits[rows, -1, answer] - logits[rows, -1, distractor]

    table = activation_patch_sweep(gpu_engine, clean, corrupt, metric, nodes=["a0.h1", "a1.h3"], positions=[-1])
    c, x = clean.to(CUDA), corrupt.to(CUDA)
    for layer, head in [(0, 1), (1, 3)]:
        logits = ref.patch_head_z_at(gpu_model, c, layer, head, ref.head_z(gpu_model, x, layer), [-1]).cpu()
        assert table.loc[layer, head] == pytest.approx(float(metric(logits).mean()), abs=ATOL)


def test_scrub_one_head_equals_hook_reference_on_the_device(gpu_model, gpu_engine):
    """Only the direct path from a1.h1 reads the example; every other path the random one."""
    x, r = tokens(gpu_model, 30), tokens(gpu_model, 31)
    which, branch, key = hypothesis_functions([("a1.h1",)], [0], fallback=1)
    got = gpu_engine.run([x, r], which, branch, key=key).logits
    xd, rd = x.to(CUDA), r.to(CUDA)
    delta = ref.head_output(gpu_model, xd, 1, 1) - ref.head_output(gpu_model, rd, 1, 1)
    torch.testing.assert_close(got, ref.final_residual_patch(gpu_model, rd, delta), atol=ATOL, rtol=0)


def test_scrub_call_on_the_device_equals_the_same_call_on_the_cpu(gpu_model, gpu_engine):
    """The user-level scrub (task tensors on the CPU) gives the CPU's numbers, draw for draw;
    the CPU's are checked against hook references in test_scrubbing.py."""
    generator = torch.Generator().manual_seed(40)
    n = 12
    clean = torch.randint(0, gpu_model.config.vocab_size, (n, 8), generator=generator)
    corrupt = torch.randint(0, gpu_model.config.vocab_size, (n, 8), generator=generator)
    answer = torch.randint(0, gpu_model.config.vocab_size, (n,), generator=generator)
    distractor = torch.randint(0, gpu_model.config.vocab_size, (n,), generator=generator)
    task = Task("cuda-check", clean, corrupt, answer=answer, distractor=distractor,
                features={"example": torch.arange(n)})
    hypothesis = Hypothesis({("a1.h1",): None, ("a1.h2.q", "a0.h3"): None}, name="two heads")
    cpu_engine = Engine.from_hf(random_gpt2("tiny", seed=1, std=0.3))
    on_gpu = scrub(gpu_engine, hypothesis, task, "logit_diff", seed=0)
    on_cpu = scrub(cpu_engine, hypothesis, task, "logit_diff", seed=0)
    for field in ("clean", "ablated", "scrubbed"):
        assert getattr(on_gpu, field) == pytest.approx(getattr(on_cpu, field), abs=ATOL)
    assert abs(on_cpu.clean - on_cpu.ablated) > 1e-3  # the ablation changed something


def test_llama_from_pretrained_on_the_device_equals_hf(tmp_path):
    """Engine.from_pretrained(..., device="cuda") on a tiny random Llama (grouped-query attention)."""
    from test_llama import random_llama

    random_llama(seed=1, num_attention_heads=4, num_key_value_heads=2).save_pretrained(tmp_path)
    engine = Engine.from_pretrained(str(tmp_path), device=CUDA)
    model = engine.model
    assert engine.device.type == CUDA
    clean, corrupt = tokens(model, 50, (2, 9)), tokens(model, 51, (2, 9))
    c, x = clean.to(CUDA), corrupt.to(CUDA)
    got = engine.run([clean], lambda path: 0).logits
    with torch.no_grad():
        expected = model(c).logits
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)

    patched = llama_ref.patch_head_z(model, c, 1, 3, llama_ref.head_z(model, x, 1))
    torch.testing.assert_close(activation_patch(engine, clean, corrupt, ["a1.h3"]), patched, atol=ATOL, rtol=0)
    assert (patched - expected).abs().max() > 1e-3
