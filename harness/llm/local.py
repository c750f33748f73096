"""Local GGUF chat models: one checked GGUF file (assembled from split parts when a package ships it in pieces)
and the llama-cpp-python OpenAI-compatible server that serves it on 127.0.0.1 for the length of a run."""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from harness import modelfiles
from harness.errors import HarnessError


def gguf_file(*, sha256: str | None, path: str | None = None, parts: Sequence[str] = (),
              file_name: str | None = None, cache_dir: str = ".cache/models") -> Path:
    """The model's GGUF file, sha256-checked: `path` as given, or `parts` concatenated in order into
    `cache_dir/file_name` once and reused on later runs."""
    if not path and not parts:
        raise HarnessError("model.gguf.path is required (a GGUF file: a path or pkg:PACKAGE/file), or "
                           "model.gguf.parts (split files, concatenated in order)")
    if path and parts:
        raise HarnessError("model.gguf: give 'path' (one GGUF file) or 'parts' (split files), not both")
    if not sha256:
        raise HarnessError("model.gguf.sha256 is required: every model file is checked before loading "
                           "(get it with `sha256sum FILE`)")
    if path:
        return modelfiles.verify(modelfiles.resolve(path), sha256)
    if not file_name:
        raise HarnessError("model.gguf: 'parts' needs 'file_name' (the assembled file's name in cache_dir)")
    target = Path(cache_dir).expanduser() / file_name
    if not target.exists():
        _assemble([modelfiles.resolve(p) for p in parts], target)
    try:
        return modelfiles.verify(target, sha256)
    except HarnessError:
        target.unlink(missing_ok=True)  # a wrong assembly must not be reused by the next run
        raise


def _assemble(parts: list[Path], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    try:
        with open(partial, "wb") as out:
            for part in parts:
                if not part.is_file():
                    raise HarnessError(f"model part {part} does not exist (run `make install`)")
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        os.replace(partial, target)  # atomic: a concurrent run sees either nothing or the whole file
    finally:
        partial.unlink(missing_ok=True)


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server (through harness.llm.llama_server, which makes grammar-constrained
    greedy decoding check the greedy token first) on a free 127.0.0.1 port, its output in `log_path`. Started by
    `start()`, stopped by `stop()` or at interpreter exit, whichever comes first."""

    def __init__(self, *, model_path: Path, alias: str, log_path: Path, n_ctx: int = 4096, n_threads: int = 2,
                 startup_timeout_s: float = 120.0, extra_args: Sequence[str] = ()) -> None:
        self.model_path = Path(model_path)
        self.alias = alias
        self.log_path = Path(log_path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.startup_timeout_s = startup_timeout_s
        # from YAML or an override, `[--logits_all, True]` arrives as a bool and `[--n_batch, 256]` as an int
        self.extra_args = [str(arg) for arg in extra_args]
        self.port: int | None = None
        self._process: subprocess.Popen | None = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        # No `--cache True`: its on-disk state cache re-saves every request and grows to gigabytes; the server's
        # in-memory prefix reuse (the most recent prompt) is what makes a shared system prompt cheap.
        # `--logits_all False`: the server's default computes vocabulary-sized logits for every prompt token, not
        # only the last; nothing here asks for logprobs, and prefill measured about 30% faster without them.
        return [sys.executable, "-m", "harness.llm.llama_server", "--model", str(self.model_path),
                "--model_alias", self.alias, "--host", "127.0.0.1", "--port", str(self.port),
                "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
                "--n_threads_batch", str(self.n_threads), "--logits_all", "False", *self.extra_args]

    def start(self) -> "LlamaServer":
        self.port = _free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        atexit.register(self.stop)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise HarnessError(f"the local model server for {self.alias} exited with code {code} before it was "
                                   f"ready; see its log {self.log_path}")
            if _answers(f"{self.api_base}/models"):
                return
            time.sleep(0.1)
        self.stop()
        raise HarnessError(f"the local model server for {self.alias} was not ready after "
                           f"{self.startup_timeout_s:.0f} s; see its log {self.log_path}")

    def check_alive(self) -> None:
        """Raises if the server died mid-run (its calls would otherwise fail one by one as connection errors)."""
        if self._process is not None and self._process.poll() is not None:
            raise HarnessError(f"the local model server for {self.alias} died (exit code {self._process.poll()}); "
                               f"see its log {self.log_path}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Linux: this process gets `sig` when its parent dies, even when the parent is killed outright (no atexit
    then), so a killed run never leaves a model server or LLM worker holding CPU cores."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, sig)
