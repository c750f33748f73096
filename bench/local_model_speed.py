"""Seconds per item of a prompted strategy on the local model, against the bound set by the model's own speed.

- Product path: the strategy (zero_shot by default) predicts BANKING77 items through the llama-cpp-python
  server, litellm, the LLM client and parsing, response cache off. The server's log gives llama.cpp's counters
  per request: the prompt tokens it evaluated (the rest was reused from the previous prompt's prefix) and the
  time it took, the decode steps and their time.
- The model's speed, measured two ways in the same run: (a) by those server counters (prefill tokens/s over the
  evaluated prompt tokens, generation tokens/s over the decode steps); (b) by the same GGUF in this process
  through llama_cpp directly (same threads, chat template, prompts and order, so the same prefix reuse; no
  HTTP, no output constraint). The two alternate in blocks of items so both see the same machine load.
- bound = evaluated prompt tokens / prefill speed + decode steps / generation speed, summed over items.
  Printed: measured wall seconds per item / bound per item, for (a) and (b); target <= 1.2. (a) isolates what
  the harness adds (HTTP, litellm, the client, sampling under the grammar, parsing); on a busy machine (b) also
  carries the difference in CPU share between the two processes.

The first item, which evaluates the whole shared system prompt once, is a warm-up on both sides.

    .venv/bin/python bench/local_model_speed.py [--items 40] [--block 10] [--strategy zero_shot]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402,F401  (offline environment first)
from harness.config import compose, instantiate  # noqa: E402
from harness.llm.factory import connect  # noqa: E402
from harness.run.services import Services  # noqa: E402

# llama.cpp's per-request counters in the server log: prompt eval (ms, tokens), eval (ms, runs), total (ms)
TIMING = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens.*\n.*?eval time =\s*([\d.]+) ms /\s*(\d+) runs"
                    r".*\n.*?total time =\s*([\d.]+) ms")


class InProcessModel:
    """The GGUF run directly by llama_cpp, accumulating llama.cpp's own prefill and decode counters."""

    def __init__(self, model_path: Path, threads: int) -> None:
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=4096, n_threads=threads,
                                   n_threads_batch=threads, verbose=False)
        self.prefill_ms = self.decode_ms = 0.0
        self.prefill_tokens = self.decode_steps = 0

    def answer(self, messages: list, max_tokens: int, *, count: bool = True) -> None:
        self.llama_cpp.llama_perf_context_reset(self.llm.ctx)
        self.llm.create_chat_completion(messages, max_tokens=max(max_tokens, 1), temperature=0.0)
        perf = self.llama_cpp.llama_perf_context(self.llm.ctx)
        if count:
            self.prefill_ms += perf.t_p_eval_ms
            self.prefill_tokens += perf.n_p_eval
            self.decode_ms += perf.t_eval_ms
            self.decode_steps += perf.n_eval

    def speeds(self) -> tuple[float, float]:
        return 1000.0 * self.prefill_tokens / self.prefill_ms, 1000.0 * self.decode_steps / self.decode_ms


def main() -> None:
    args = _args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose(["experiment=default", f"model={args.model}", f"dataset.heldout_size={args.items + 1}",
                       "llm.cache_dir=null", f"output_dir={tmp}"])
        dataset, hardware = instantiate(cfg.dataset), instantiate(cfg.hardware)
        settings = dict(cfg.llm)
        services = Services(hardware=hardware, run_dir=Path(tmp), seed=int(cfg.seed),
                            embedder_factory=lambda: instantiate(cfg.embedder),
                            llm_factory=lambda model: connect(model, settings, hardware=hardware, run_dir=tmp))
        strategy = instantiate(cfg.strategies[args.strategy], name=args.strategy).fit(dataset, services)
        endpoint = services.llm(cfg.strategies[args.strategy].model)
        local = InProcessModel(endpoint.server.model_path, endpoint.server.n_threads)
        items = dataset.heldout
        contexts, _ = strategy._item_contexts(items)
        messages = [strategy.messages(ex, ctx) for ex, ctx in zip(items, contexts)]
        loads = [os.getloadavg()[0]]
        warm = list(strategy.predict(items[:1]))
        local.answer(messages[0], warm[0].completion_tokens, count=False)
        wall_s, predictions = 0.0, []
        for start in range(1, len(items), args.block):
            block = slice(start, min(start + args.block, len(items)))
            t0 = time.perf_counter()
            predictions += list(strategy.predict(items[block]))
            wall_s += time.perf_counter() - t0
            by_id = {p.item_id: p for p in predictions}
            for ex, chat in zip(items[block], messages[block]):
                local.answer(chat, by_id[ex.id].completion_tokens)
            loads.append(os.getloadavg()[0])
        log = endpoint.server.log_path.read_text(errors="replace")
        services.close()
    timings = [tuple(map(float, found)) for found in TIMING.findall(log)][1:]  # the warm-up's excluded
    if len(timings) != len(predictions):
        sys.exit(f"the server log has {len(timings)} timed requests for {len(predictions)} items; cannot pair them")
    _report(args, cfg, strategy, endpoint, predictions, timings, local.speeds(), wall_s, loads)


def _report(args, cfg, strategy, endpoint, predictions, timings, in_process, wall_s, loads) -> None:
    n = len(predictions)
    evaluated, decode_steps = sum(t[1] for t in timings), sum(t[3] for t in timings)
    server_speeds = (1000.0 * evaluated / sum(t[0] for t in timings),
                     1000.0 * decode_steps / sum(t[2] for t in timings))
    server_s = sum(t[4] for t in timings) / 1000.0
    print(f"{args.strategy} on {cfg.model.name}: {n} items after a warm-up, concurrency {endpoint.max_concurrency}, "
          f"output_mode {strategy.output_mode_}, accuracy {sum(p.correct for p in predictions) / n:.1%}")
    print(f"machine: {os.cpu_count()} cores, 1-minute load average {min(loads):.2f}-{max(loads):.2f} during the run")
    prompt_tokens = sum(p.prompt_tokens for p in predictions)
    print(f"per item: {evaluated / n:.1f} prompt tokens evaluated of {prompt_tokens / n:.0f} (the rest reused), "
          f"{decode_steps / n:.1f} decode steps; server request time {server_s / n:.3f} s")
    print(f"measured: {wall_s / n:.3f} s per item")
    for label, (prefill_tps, gen_tps) in (("(a) server's own counters", server_speeds),
                                          ("(b) llama_cpp in-process", in_process)):
        bound_s = evaluated / prefill_tps + decode_steps / gen_tps
        print(f"{label}: prefill {prefill_tps:.1f} tokens/s, generation {gen_tps:.1f} tokens/s; bound "
              f"{bound_s / n:.3f} s per item; ratio {wall_s / bound_s:.2f} (target <= 1.2)")


def _args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40, help="timed items (one more is the warm-up)")
    parser.add_argument("--block", type=int, default=10, help="items per block; the two sides alternate by block")
    parser.add_argument("--strategy", default="zero_shot", help="zero_shot, few_shot or rag")
    parser.add_argument("--model", default="qwen2.5-coder-0.5b", help="a conf/model config of a local GGUF")
    return parser.parse_args()


if __name__ == "__main__":
    main()
