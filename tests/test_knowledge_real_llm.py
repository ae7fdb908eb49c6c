"""The real packaged LLMs on a handful of prompts: default gemma3-270m (640-d) and minilm (384-d).

The first gemma3-270m run de-quantises the GGUF into the safetensors cache ($LLM4MSR_CACHE,
default ~/.cache/llm4msr_tf); later runs load the cache in about a second.
"""
import numpy as np
import pytest

from llm4msr_tf.knowledge.config import EncoderConfig
from llm4msr_tf.knowledge.encoders import TextEncoder

PROMPTS = [
    "Scenario 0 groups users younger than 25. They rate many action and sci-fi films.",
    "User 17 liked: Star Wars (1977), Alien (1979), Blade Runner (1982). Disliked: Titanic (1997).",
    "User 17 liked: Star Wars (1977), Alien (1979), Blade Runner (1982). Disliked: Titanic (1997).",
    "User 901 liked romantic comedies and musicals; watched in scenario 1 only.",
]


def _check(vectors, dim):
    assert vectors.shape == (len(PROMPTS), dim) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(vectors[1], vectors[2], rtol=1e-5, atol=1e-5)  # identical prompts
    for i, j in [(0, 1), (0, 3), (1, 3)]:
        assert np.linalg.norm(vectors[i] - vectors[j]) > 1e-2 * np.linalg.norm(vectors[i])


@pytest.mark.slow
def test_default_gemma3_270m():
    enc = TextEncoder(EncoderConfig(batch_size=4))  # the default spec
    assert enc.spec.spec == "gemma3-270m" and enc.pooling == "last" and enc.dim == 640
    assert enc.lm is None  # base model only: no 262k-vocabulary LM head for vectors
    vectors = np.stack([o.vector for o in enc.encode(PROMPTS)])
    _check(vectors, 640)
    alone = enc.encode([PROMPTS[3]])[0].vector
    np.testing.assert_allclose(alone, vectors[3], rtol=1e-3, atol=1e-3)  # batching does not matter


def test_minilm():
    enc = TextEncoder(EncoderConfig(llm="minilm"))
    _check(np.stack([o.vector for o in enc.encode(PROMPTS)]), 384)
