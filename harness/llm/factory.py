"""From a model config (conf/model/*.yaml) to a ready endpoint: the LLM client, and for a local GGUF model the
server that serves it. The runner's `Services.llm(model)` builds one endpoint per model and shares it between
strategies, so a local server starts once per run and every strategy shares one response cache."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.errors import HarnessError
from harness.llm.parsing import OUTPUT_MODES

PROVIDERS = ("local_gguf", "api")
CLIENT_KEYS = ("max_concurrency", "timeout_s", "max_retries", "backoff_s", "cache_dir", "temperature", "max_tokens",
               "workers")
# key -> (type, lowest value, rule as the error states it), for the keys present
CLIENT_RULES = {"max_concurrency": (int, 1, ">= 1"), "timeout_s": ((int, float), 0, "> 0"),
                "max_retries": (int, 0, ">= 0"), "backoff_s": ((int, float), 0, ">= 0"),
                "temperature": ((int, float), 0, ">= 0"), "max_tokens": (int, 1, ">= 1"), "workers": (int, 1, ">= 1")}
NULLABLE = ("workers",)
PRICE_MODES = ("per_token", "per_second")
GGUF_KEYS = ("path", "parts", "file_name", "cache_dir", "sha256")
SERVER_KEYS = ("n_ctx", "n_threads", "startup_timeout_s", "extra_args")


@dataclass
class Endpoint:
    """A model ready to call: `client.run(requests)`; `output_mode` says how its answers are constrained."""

    name: str
    client: Any
    output_mode: str
    max_concurrency: int
    info: dict = field(default_factory=dict)  # what the manifest records (model file hash, server, prices)
    server: Any = None
    recipe: tuple | None = field(default=None, repr=False)  # connect()'s arguments: how a copy reconnects

    def __reduce__(self):
        """A copy in another process (a Ray worker) is a new connection made the same way: for a local model, a
        server of its own there; a client's worker processes and a server's port do not travel."""
        if self.recipe is None:
            raise TypeError(f"endpoint {self.name} was not made by connect() and cannot be copied to a worker")
        return reconnect, self.recipe

    def check_alive(self) -> None:
        if self.server is not None:
            self.server.check_alive()

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.server is not None:
                self.server.stop()


def connect(model: Mapping, settings: Mapping, *, hardware, run_dir: Path) -> Endpoint:
    """Builds the endpoint for `model`; `settings` is the root `llm:` node (client defaults)."""
    model = dict(model)
    for key in ("name", "provider"):
        if not model.get(key):
            raise HarnessError(f"model config: key '{key}' is required")
    if model["provider"] not in PROVIDERS:
        raise HarnessError(f"model '{model['name']}': no provider '{model['provider']}'; known: "
                           f"{', '.join(PROVIDERS)}")
    output_mode = model.get("output_mode") or "none"
    if output_mode not in OUTPUT_MODES:
        raise HarnessError(f"model '{model['name']}': no output_mode '{output_mode}'; known: "
                           f"{', '.join(OUTPUT_MODES)}")
    options = _client_options(model, settings)
    if model["provider"] == "local_gguf":
        endpoint = _local(model, options, output_mode, hardware, run_dir)
    else:
        endpoint = _api(model, options, output_mode, hardware)
    endpoint.recipe = (model, dict(settings or {}), hardware, Path(run_dir))
    return endpoint


_reconnected: dict[str, Endpoint] = {}  # this process's copies of the driver's endpoints, one per model


def reconnect(model: Mapping, settings: Mapping, hardware, run_dir: Path) -> Endpoint:
    """The endpoint a shipped strategy uses in this process: made once per model, as the run's Services makes
    one per model, so a worker starts one local server however many strategies it unpickles."""
    if model["name"] not in _reconnected:
        _reconnected[model["name"]] = connect(model, settings, hardware=hardware, run_dir=run_dir)
    return _reconnected[model["name"]]


def close_reconnected() -> None:
    """Stops what `reconnect` started in this process."""
    endpoints = list(_reconnected.values())
    _reconnected.clear()
    for endpoint in endpoints:
        endpoint.close()


def _client_options(model: Mapping, settings: Mapping) -> dict:
    """The root `llm:` settings overridden by the model's own `client:` node, checked: a timeout of -1 would
    otherwise fail every call one by one, a concurrency of 'abc' deep inside the client."""
    own = dict(model.get("client") or {})
    for node, where in ((dict(settings or {}), "llm"), (own, "model.client")):
        _check_client(node, where)
    return _known({**dict(settings or {}), **own}, CLIENT_KEYS, "client")


def _check_client(node: Mapping, where: str) -> None:
    for key, (kind, low, rule) in CLIENT_RULES.items():
        value = node.get(key)
        if key not in node or (value is None and key in NULLABLE):
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or value < low or (rule == "> 0" and value == 0):
            raise HarnessError(f"config key '{where}.{key}' must be {'a whole number' if kind is int else 'a number'} "
                               f"{rule}{' or null' if key in NULLABLE else ''}, got {value!r}")


def _known(node: Mapping, keys: tuple[str, ...], where: str) -> dict:
    unknown = sorted(set(node) - set(keys))
    if unknown:
        raise HarnessError(f"model.{where}: no key '{unknown[0]}'; known: {', '.join(keys)}")
    return dict(node)


def _local(model, options, output_mode, hardware, run_dir) -> Endpoint:
    from harness.llm.local import LlamaServer, gguf_file

    gguf = _known(model.get("gguf") or {}, GGUF_KEYS, "gguf")
    server_options = _known(model.get("server") or {}, SERVER_KEYS, "server")
    pricing = _pricing(model.get("price") or {"mode": "per_second"}, hardware)  # a bad price fails before the start
    path = gguf_file(**gguf)
    alias = _slug(model["name"])
    log_path = Path(run_dir) / "logs" / f"{alias}.server.log"
    server = LlamaServer(model_path=path, alias=alias, log_path=log_path, **server_options).start()
    identity = f"{model['name']}@sha256:{gguf['sha256']}"  # the port changes every run; the file does not
    try:
        client = _client(model=f"openai/{alias}", api_base=server.api_base, cache_identity=identity,
                         pricing=pricing, **options)
    except BaseException:
        server.stop()
        raise
    info = {"provider": "local_gguf", "gguf_file": path.name, "gguf_sha256": gguf.get("sha256"),
            "server_log": str(log_path.relative_to(run_dir)) if log_path.is_relative_to(run_dir) else str(log_path),
            "server_command": " ".join(server.command()[1:]).replace(str(path), path.name),
            "price_mode": pricing.mode, "price_source": pricing.source}
    return Endpoint(model["name"], client, output_mode, int(options.get("max_concurrency", 1)), info, server)


def _api(model, options, output_mode, hardware) -> Endpoint:
    if not model.get("litellm_model"):
        raise HarnessError(f"model '{model['name']}': key 'model.litellm_model' is required for provider 'api' "
                           "(e.g. gpt-4o-mini, anthropic/claude-haiku-4-5, openai/NAME with model.api_base)")
    pricing = _pricing(model.get("price") or {}, hardware)
    client = _client(model=model["litellm_model"], api_base=model.get("api_base"),
                     api_key_env=model.get("api_key_env"), api_key_file=model.get("api_key_file"),
                     cache_identity=model.get("cache_identity"), pricing=pricing, **options)
    info = {"provider": "api", "litellm_model": model["litellm_model"], "api_base": model.get("api_base"),
            "price_mode": pricing.mode, "price_source": pricing.source}
    return Endpoint(model["name"], client, output_mode, int(options.get("max_concurrency", 4)), info)


def _pricing(price: Mapping, hardware):
    """Per-second models cost measured seconds on the hardware profile; per-token ones use the given prices
    (USD per million tokens, as vendors publish them) or, where null, litellm's offline price map."""
    from harness.llm.base import Pricing

    mode = price.get("mode") or "per_token"
    if mode not in PRICE_MODES:
        raise HarnessError(f"model price.mode: no mode '{mode}'; known: {', '.join(PRICE_MODES)}")
    if mode == "per_second":
        return Pricing(mode="per_second", usd_per_hour=float(hardware.usd_per_hour),
                       source=price.get("source") or f"hardware profile {hardware.name}: {hardware.usd_per_hour} $/h "
                                                     f"({hardware.source})")
    per_token = {key: (None if price.get(f"{key}_usd_per_1m_tokens") is None
                       else float(price[f"{key}_usd_per_1m_tokens"]) / 1e6) for key in ("input", "output")}
    overridden = any(value is not None for value in per_token.values())
    return Pricing(mode="per_token", input_usd_per_token=per_token["input"],
                   output_usd_per_token=per_token["output"],
                   source=price.get("source") or ("model config override" if overridden
                                                  else "litellm offline price map"))


def _client(**kwargs):
    from harness.llm.client import LLMClient

    return LLMClient(**kwargs)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"
