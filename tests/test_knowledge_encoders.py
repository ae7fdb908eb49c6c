"""LLM encoders on a tiny random causal LM: pooling, batching invariance, generation, specs."""
import numpy as np
import pytest

from llm4msr_tf.knowledge.config import EncoderConfig
from llm4msr_tf.knowledge.encoders import TextEncoder, parse_spec, resolve_pooling
from llm4msr_tf.testing import build_tiny_causal_lm
from llm4msr_tf.utils.io import UserInputError

PROMPTS = [
    "a short prompt",
    "user 42 liked space operas, heist films and long documentaries about the deep sea " * 3,
    "scenario 1: older users, many dramas",
    "x",
    "user 7 mostly watches comedies",
]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_causal_lm(str(tmp_path_factory.mktemp("tiny_lm")))


def _enc(path, **kw):
    return TextEncoder(EncoderConfig(llm=f"hf:{path}", **kw))


def _reference_hidden(enc, text):
    """Last hidden layer of one prompt, computed without any padding (the ground truth)."""
    import torch

    ids, _ = enc.tokenize([text])
    with torch.inference_mode():
        return enc.base(input_ids=torch.tensor(ids)).last_hidden_state[0].numpy()


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_pooling_matches_unpadded_reference(tiny_lm, pooling):
    enc = _enc(tiny_lm, pooling=pooling, batch_size=8)
    out = enc.encode(PROMPTS)
    for text, o in zip(PROMPTS, out):
        h = _reference_hidden(enc, text)
        want = h[-1] if pooling == "last" else h.mean(axis=0)
        np.testing.assert_allclose(o.vector, want, rtol=1e-4, atol=1e-5)
        assert o.vector.dtype == np.float32 and o.vector.shape == (32,)


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_vector_does_not_depend_on_batch_composition(tiny_lm, batch_size):
    enc = _enc(tiny_lm, batch_size=batch_size)
    alone = np.stack([enc.encode([p])[0].vector for p in PROMPTS])
    batched = np.stack([o.vector for o in enc.encode(PROMPTS)])
    shuffled = enc.encode(PROMPTS[::-1])[::-1]
    np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.stack([o.vector for o in shuffled]), alone, rtol=1e-4, atol=1e-5)
    # different prompts -> different vectors
    assert np.linalg.norm(alone[0] - alone[2]) > 1e-3


def test_truncation_is_flagged_and_applied(tiny_lm):
    enc = _enc(tiny_lm, max_length=8)
    out = enc.encode(PROMPTS)
    assert [o.truncated for o in out] == [False, True, True, False, False]
    assert all(o.num_tokens <= 8 for o in out)


def test_generation_extends_the_pooled_sequence(tiny_lm):
    plain = _enc(tiny_lm).encode(PROMPTS)
    enc = _enc(tiny_lm, generate=4, batch_size=3)
    gen = enc.encode(PROMPTS)
    for p, g in zip(plain, gen):
        assert p.num_tokens < g.num_tokens <= p.num_tokens + 4
        assert not np.allclose(p.vector, g.vector)
    # the vector is the base model's pooled state over prompt + generated tokens, batch-invariant
    alone = [enc.encode([t])[0] for t in PROMPTS]
    for a, g in zip(alone, gen):
        assert a.num_tokens == g.num_tokens and a.text == g.text
        np.testing.assert_allclose(a.vector, g.vector, rtol=1e-4, atol=1e-5)


def test_minilm_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from llm4msr_tf.knowledge.encoders import minilm_dir

    enc = TextEncoder(EncoderConfig(llm="minilm", batch_size=2))
    assert enc.dim == 384 and enc.pooling == "mean" and enc.normalize
    ours = np.stack([o.vector for o in enc.encode(PROMPTS)])
    ref = SentenceTransformer(minilm_dir(), device="cpu").encode(PROMPTS, batch_size=2)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)


def test_bf16_precision_is_close_to_fp32_and_bad_precision_fails():
    # bf16 on CPU: matmuls under autocast, weights fp32: the same vectors up to bf16 rounding.
    fp32 = np.stack([o.vector for o in TextEncoder(EncoderConfig(llm="minilm", precision="fp32")).encode(PROMPTS)])
    enc = TextEncoder(EncoderConfig(llm="minilm", precision="bf16"))
    assert enc.autocast
    bf16 = np.stack([o.vector for o in enc.encode(PROMPTS)])
    cos = np.sum(fp32 * bf16, axis=1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cos.min() > 0.995 and not np.array_equal(fp32, bf16), cos
    with pytest.raises(UserInputError, match="--precision 'fp16' is not one of"):
        TextEncoder(EncoderConfig(llm="minilm", precision="fp16"))


@pytest.mark.slow
def test_compiled_forward_gives_the_eager_vectors():
    eager = np.stack([o.vector for o in TextEncoder(EncoderConfig(llm="minilm")).encode(PROMPTS, batch_size=2)])
    enc = TextEncoder(EncoderConfig(llm="minilm", compile=True))
    for bs in (2, 5):  # batches of other shapes reuse the dynamic-shape graph
        got = np.stack([o.vector for o in enc.encode(PROMPTS, batch_size=bs)])
        np.testing.assert_allclose(got, eager, rtol=1e-4, atol=1e-5)


def test_specs_and_errors(tmp_path, tiny_lm):
    assert parse_spec("gemma3-270m").kind == "gguf" and parse_spec("gemma3-270m").causal
    assert parse_spec("minilm").kind == "st"
    assert resolve_pooling(parse_spec("minilm"), "auto") == "mean"
    assert resolve_pooling(parse_spec(f"hf:{tiny_lm}"), "auto") == "last"
    with pytest.raises(UserInputError, match="unknown --llm 'gpt5'"):
        parse_spec("gpt5")
    with pytest.raises(UserInputError, match="not a local Hugging Face model directory"):
        parse_spec(f"hf:{tmp_path}")
    with pytest.raises(UserInputError, match="GGUF file .* does not exist"):
        parse_spec(f"gguf:{tmp_path}/m.gguf")
    with pytest.raises(UserInputError, match="--generate 3 needs a causal LM"):
        TextEncoder(EncoderConfig(llm="minilm", generate=3))


def test_gguf_cache_is_keyed_by_content_and_reused(tmp_path):
    import hashlib
    import os

    from llm4msr_tf.knowledge import gguf_cache

    cache = str(tmp_path / "cache")
    f = tmp_path / "m.gguf"
    f.write_bytes(b"not really a gguf file")
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    assert gguf_cache.file_sha256(str(f), cache) == sha
    # a bad file fails clearly and leaves no partial cache entry behind
    with pytest.raises(UserInputError, match="transformers cannot load GGUF file"):
        gguf_cache.cached_gguf_dir(str(f), cache)
    assert not [p for p in os.listdir(os.path.join(cache, "gguf")) if not p.endswith(".lock")]
    # a complete entry under the content hash is returned without converting anything
    entry = os.path.join(cache, "gguf", sha)
    os.makedirs(entry)
    for name in ("config.json", gguf_cache._MARKER):
        (tmp_path / "cache" / "gguf" / sha / name).write_text("{}")
    assert gguf_cache.cached_gguf_dir(str(f), cache) == entry
