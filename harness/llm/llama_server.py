"""`python -m harness.llm.llama_server ARGS`: llama-cpp-python's OpenAI-compatible server (same arguments), with
grammar-constrained greedy decoding that checks the greedy token first.

Written by hand because no library offers it here: llama-cpp-python 0.3 builds a sampler chain that applies the
grammar to every vocabulary entry at every decode step (151,936 entries for Qwen2.5: about 25 ms a step on two
cores, as long as the 0.5B model's own forward pass). llama.cpp's own server checks only the greedy token against
the grammar and falls back to the full pass when the grammar rejects it. That is what this chain does:

    penalties -> narrow (keep only the arg-max candidate) -> grammar -> widen (if the grammar rejected that
    candidate: restore every candidate and apply the grammar to all of them) -> greedy

At temperature 0 the chosen token is the same either way (a greedy token the grammar allows is also the arg-max of
the grammar-masked logits); tests/test_llama_server.py checks that token by token, including prompts where the
fallback runs. Any other sampling set-up (temperature > 0, logits processors, mirostat) keeps llama-cpp-python's
own chain."""
from __future__ import annotations

import ctypes
import math
from typing import Any

import numpy as np

_patched = False


def greedy_grammar_chain(llama: Any, grammar: Any, *, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
                         presence_penalty: float = 0.0) -> Any:
    """A llama-cpp-python LlamaSampler: penalties, then grammar-constrained greedy, greedy token checked first."""
    import llama_cpp
    from llama_cpp import _internals

    chain = _internals.LlamaSampler()
    chain.add_penalties(n_vocab=llama._n_vocab, penalty_last_n=llama.last_n_tokens_size,
                        penalty_repeat=repeat_penalty, penalty_freq=frequency_penalty,
                        penalty_present=presence_penalty)
    grammar_sampler = llama_cpp.llama_sampler_init_grammar(
        llama._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8"))
    entry_size = ctypes.sizeof(llama_cpp.llama_token_data)
    logit_offset = llama_cpp.llama_token_data.logit.offset
    full: dict[str, Any] = {}
    chain.stats = {"steps": 0, "fallbacks": 0}  # decode steps, and those where the grammar rejected the greedy token

    def narrow(cur_p) -> None:
        array = cur_p.contents
        address = ctypes.cast(array.data, ctypes.c_void_p).value
        logits = np.ndarray((array.size,), dtype=np.float32,
                            buffer=(ctypes.c_char * (array.size * entry_size)).from_address(address),
                            offset=logit_offset, strides=(entry_size,))
        best = int(np.argmax(logits))
        chain.stats["steps"] += 1
        # Saved as numbers: a ctypes pointer read from a struct field shares the field's memory.
        full.update(address=address, size=array.size, sorted=array.sorted)
        array.data = ctypes.cast(ctypes.c_void_p(address + best * entry_size), llama_cpp.llama_token_data_p)
        array.size = 1

    def widen(cur_p) -> None:
        array = cur_p.contents
        if math.isinf(array.data[0].logit) and array.data[0].logit < 0:  # the grammar rejected the greedy token
            chain.stats["fallbacks"] += 1
            array.data = ctypes.cast(ctypes.c_void_p(full["address"]), llama_cpp.llama_token_data_p)
            array.size, array.sorted = full["size"], full["sorted"]
            llama_cpp.llama_sampler_apply(grammar_sampler, cur_p)
        full.clear()

    chain.add_custom(narrow)
    llama_cpp.llama_sampler_chain_add(chain.sampler, grammar_sampler)  # the chain owns and frees it
    chain.add_custom(widen)
    chain.add_greedy()
    return chain


def patch_llama() -> None:
    """Makes `Llama` use `greedy_grammar_chain` for greedy, grammar-constrained generation."""
    global _patched
    if _patched:
        return
    from llama_cpp import Llama

    original = Llama._init_sampler

    def _init_sampler(self, *args: Any, **kwargs: Any):
        if args or kwargs.get("grammar") is None or kwargs.get("temp", 0.8) != 0.0 \
                or kwargs.get("logits_processor") is not None or kwargs.get("mirostat_mode", 0) != 0:
            return original(self, *args, **kwargs)
        return greedy_grammar_chain(self, kwargs["grammar"], repeat_penalty=kwargs.get("repeat_penalty", 1.0),
                                    frequency_penalty=kwargs.get("frequency_penalty", 0.0),
                                    presence_penalty=kwargs.get("presence_penalty", 0.0))

    Llama._init_sampler = _init_sampler
    _patched = True


def main() -> None:
    patch_llama()
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
