"""The local GGUF model path: split parts assembled and hash-checked, a wrong file refused, the server started,
health-checked and stopped; and (slow) the real SmolLM2 GGUF served by llama_cpp.server and driven through the
same client path as API models, by the runner."""
from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from harness.costs.hardware import HardwareProfile
from harness.errors import HarnessError
from harness.llm.factory import connect
from harness.llm.local import LlamaServer, gguf_file

HARDWARE = HardwareProfile(name="box", usd_per_hour=0.5, source="list price")


def _parts(tmp_path, chunks: list[bytes]) -> list[str]:
    paths = []
    for i, chunk in enumerate(chunks):
        path = tmp_path / f"part{i}.bin"
        path.write_bytes(chunk)
        paths.append(str(path))
    return paths


def test_parts_are_assembled_in_order_checked_and_reused(tmp_path):
    chunks = [b"GGUF", b"-first-", b"-second"]
    expected = hashlib.sha256(b"".join(chunks)).hexdigest()
    parts = _parts(tmp_path, chunks)
    cache = tmp_path / "models"
    path = gguf_file(parts=parts, sha256=expected, file_name="m.gguf", cache_dir=str(cache))
    assert path.read_bytes() == b"GGUF-first--second"
    (tmp_path / "part0.bin").unlink()  # the assembled file is reused: parts are not read again
    assert gguf_file(parts=parts, sha256=expected, file_name="m.gguf", cache_dir=str(cache)) == path


def test_sha256_mismatch_is_refused_and_not_kept(tmp_path):
    parts = _parts(tmp_path, [b"not", b"a model"])
    cache = tmp_path / "models"
    with pytest.raises(HarnessError, match=r"m\.gguf has sha256 [0-9a-f]{64}, expected 0{64}; refusing to load it"):
        gguf_file(parts=parts, sha256="0" * 64, file_name="m.gguf", cache_dir=str(cache))
    assert not list(cache.iterdir())  # no half-trusted file left for the next run


def test_single_file_is_checked(tmp_path):
    model = tmp_path / "one.gguf"
    model.write_bytes(b"weights")
    assert gguf_file(path=str(model), sha256=hashlib.sha256(b"weights").hexdigest()) == model
    with pytest.raises(HarnessError, match="refusing to load it"):
        gguf_file(path=str(model), sha256="1" * 64)


def test_path_or_parts_not_both_and_a_hash_is_required(tmp_path):
    with pytest.raises(HarnessError, match="'path' .* or 'parts' .*, not both"):
        gguf_file(path="a.gguf", parts=["b"], sha256="0" * 64)
    with pytest.raises(HarnessError, match="model.gguf.path is required"):
        gguf_file(sha256="0" * 64)
    with pytest.raises(HarnessError, match="model.gguf.sha256 is required"):
        gguf_file(path="a.gguf", sha256=None)


@pytest.mark.parametrize("model, message", [
    ({"name": "m", "provider": "local"}, "model 'm': no provider 'local'; known: local_gguf, api"),
    ({"name": "m", "provider": "api", "litellm_model": "x", "output_mode": "regex"},
     "no output_mode 'regex'; known: none, grammar, json_enum, json_schema"),
    ({"name": "m", "provider": "api", "litellm_model": "x", "client": {"concurrency": 2}},
     "model.client: no key 'concurrency'; known: max_concurrency,"),
    ({"name": "m", "provider": "local_gguf", "server": {"threads": 2}}, "model.server: no key 'threads'"),
    ({"name": "m", "provider": "api"}, "key 'model.litellm_model' is required"),
    ({"name": "m", "provider": "api", "litellm_model": "x", "price": {"mode": "hourly"}},
     "no mode 'hourly'; known: per_token, per_second"),
])
def test_model_config_errors_name_the_key(model, message, tmp_path):
    with pytest.raises(HarnessError, match=message):
        connect(model, {}, hardware=HARDWARE, run_dir=tmp_path)


def test_api_model_prices_and_settings(tmp_path):
    pytest.importorskip("harness.llm.client")
    model = {"name": "gpt", "provider": "api", "litellm_model": "gpt-4o-mini", "output_mode": "json_schema",
             "price": {"input_usd_per_1m_tokens": 0.2, "output_usd_per_1m_tokens": None},
             "client": {"max_concurrency": 8}}
    endpoint = connect(model, {"max_concurrency": 2, "timeout_s": 9}, hardware=HARDWARE, run_dir=tmp_path)
    assert (endpoint.name, endpoint.output_mode, endpoint.max_concurrency) == ("gpt", "json_schema", 8)
    assert endpoint.client.timeout_s == 9 and endpoint.client.max_concurrency == 8
    assert endpoint.client.pricing.input_usd_per_token == pytest.approx(2e-7)
    assert endpoint.client.pricing.output_usd_per_token is None  # litellm's map
    assert endpoint.info["price_source"] == "model config override"
    local = connect({**model, "price": {"mode": "per_second"}}, {}, hardware=HARDWARE, run_dir=tmp_path)
    assert local.client.pricing.usd_per_hour == 0.5 and "box" in local.client.pricing.source


def test_a_server_that_dies_at_start_names_its_log(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"this is not a GGUF file")
    server = LlamaServer(model_path=bogus, alias="bogus", log_path=tmp_path / "logs" / "bogus.log",
                         startup_timeout_s=60)
    with pytest.raises(HarnessError, match=r"exited with code \d+ before it was ready; see its log .*bogus\.log"):
        server.start()
    assert (tmp_path / "logs" / "bogus.log").stat().st_size > 0


@pytest.mark.slow
def test_real_smollm2_through_the_runner(tiny_cfg, tmp_path):
    """The real SmolLM2-135M GGUF, served by llama_cpp.server, on a handful of items through the runner and
    litellm; a rerun is served from the response cache and the server is stopped after each run."""
    pytest.importorskip("harness.llm.client")
    from tests.conftest import run

    overrides = ["model=smollm2-135m", f"llm.cache_dir={tmp_path / 'llm-cache'}", "dataset.heldout_size=4",
                 "~strategies.tfidf_logreg", "~strategies.embed_logreg", "~strategies.embed_knn",
                 "~strategies.few_shot", "~strategies.rag"]
    first = run(tiny_cfg("default", *overrides))
    records = pd.read_parquet(first / "predictions.parquet")
    assert len(records) == 4 and records["error"].isna().all()
    assert records["pred"].notna().all()  # the grammar makes every answer a label
    assert (records["prompt_tokens"] > 50).all() and (records["completion_tokens"] > 0).all()
    assert (records["latency_ms"] > 0).all() and (records["cost_usd"] > 0).all()
    manifest = json.loads((first / "manifest.json").read_text())
    info = manifest["strategies"]["zero_shot"]
    model_info = info["details"]["model_info"]
    assert model_info["gguf_sha256"].startswith("b179c952") and info["prompt"]["measured_at_concurrency"] == 1
    assert info["billing"] == "self_hosted"
    log = first / model_info["server_log"]
    assert "POST /v1/chat/completions" in log.read_text()
    port = model_info["server_command"].split("--port ")[1].split()[0]
    import urllib.request

    with pytest.raises(OSError):  # stopped with the run
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)

    second = run(tiny_cfg("default", *overrides))
    results = pd.read_csv(second / "results.csv")
    assert results.loc[0, "n_cached"] == 4 and results.loc[0, "spent_usd"] == 0


def test_server_flags_from_yaml_reach_the_command_as_text(tmp_path):
    """`model.server.extra_args=[--logits_all,True]` arrives from Hydra as a bool: it must not crash the launch."""
    server = LlamaServer(model_path=tmp_path / "m.gguf", alias="m", log_path=tmp_path / "m.log",
                         extra_args=["--logits_all", True, "--n_batch", 256])
    server.port = 1
    assert server.command()[-4:] == ["--logits_all", "True", "--n_batch", "256"]
