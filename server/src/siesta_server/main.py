"""`siesta-server`: start HTTP first, then fetch and load the model, then serve; drain on
SIGTERM.

The HTTP server comes up before the download starts so `/health` can answer 503 "Loading
model" the whole time (the operator's startup probe and the gateway rely on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import uvicorn

from siesta_server import eviction, fit, gpu, memory, mismatch
from siesta_server.api import build_app, build_metrics_app
from siesta_server.chat import ChatTemplate
from siesta_server.chat_tokens import special_texts
from siesta_server.config import ConfigError, ServerConfig, parse_config
from siesta_server.engine import Engine
from siesta_server.gguf_header import GGUFHeader, read_header
from siesta_server.http_limits import limited_protocol
from siesta_server.native import (
    Adapter,
    Model,
    NativeError,
    create_context,
    init_backend,
    load_adapter,
    load_error,
    load_model,
    offload_lines,
    recent_errors,
)
from siesta_server.source import (
    ChecksumMismatch,
    FetchSettings,
    ModelSource,
    ModelSourceError,
    cache_path,
    check_source,
    fetch_model,
    scheme_of,
)
from siesta_server.state import Loaded, Phase, ServerState
from siesta_server.termination import termination_log, write_cause
from siesta_server.utf8_guard import utf8_tables

log = logging.getLogger("siesta_server")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(argv)
    except ConfigError as error:
        print(f"siesta-server: {error}", file=sys.stderr)
        write_cause(termination_log(_termination_log_option(argv)), str(error))
        return EXIT_USAGE
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    source = ModelSource(
        config.model, config.sha256, config.cache_dir, FetchSettings(config.fetch_connections)
    )
    try:
        check_source(source)
        for lora in config.loras:
            check_source(ModelSource(lora.uri, lora.sha256, config.cache_dir))
    except ModelSourceError as error:
        log.error("%s", error)
        write_cause(termination_log(config.termination_log), str(error))
        return EXIT_FAILED
    try:
        runner = Runner(config, source)
    except (OSError, ValueError) as error:  # an unreadable or empty --api-key-file
        log.error("%s", error)
        write_cause(termination_log(config.termination_log), str(error))
        return EXIT_FAILED
    code = asyncio.run(runner.serve())
    if runner.loader is not None and runner.loader.is_alive():
        # Still inside a download or llama.cpp's loader, which cannot be interrupted.
        logging.shutdown()
        os._exit(code)
    return code


def _termination_log_option(argv: Sequence[str] | None) -> Path | None:
    """--termination-log (or its variable) from a command line that failed to parse."""
    args = list(sys.argv[1:] if argv is None else argv)
    for index, arg in enumerate(args):
        if arg.startswith("--termination-log="):
            return Path(arg.split("=", 1)[1])
        if arg == "--termination-log" and index + 1 < len(args):
            return Path(args[index + 1])
    configured = os.environ.get("SIESTA_TERMINATION_LOG", "").strip()
    return Path(configured) if configured else None


class GpuRequiredError(RuntimeError):
    """--require-gpu, and the model would not run (entirely) on a GPU."""


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handling: SIGTERM starts our drain instead."""

    def __init__(self, config: uvicorn.Config, on_signal: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_signal = on_signal

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


class _SignalFreeServer(uvicorn.Server):
    """A second listener: the main server alone handles signals (and starts the drain)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Runner:
    def __init__(self, config: ServerConfig, source: ModelSource) -> None:
        self.config = config
        self.source = source
        self.state = ServerState(config)
        self.state.metrics.base_name = config.model_id
        self.exit_code = EXIT_OK
        self.cause = ""
        """Why the server is exiting with an error (its termination message)."""
        self.loader: threading.Thread | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._server = _Server(
            uvicorn.Config(
                build_app(self.state),
                host=config.host,
                port=config.port,
                log_level=config.log_level.lower(),
                access_log=config.log_level.lower() == "debug",
                lifespan="off",
                timeout_graceful_shutdown=5,
                http=limited_protocol(config),
                timeout_keep_alive=config.keep_alive_timeout,  # type: ignore[arg-type]
            ),
            self._on_signal,
        )

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        watcher = asyncio.create_task(self._start_loading_when_listening(loop))
        metrics = self._metrics_server()
        metrics_task = asyncio.create_task(metrics.serve()) if metrics is not None else None
        try:
            await self._server.serve()
        finally:
            watcher.cancel()
            if metrics is not None and metrics_task is not None:
                metrics.should_exit = True
                await asyncio.gather(metrics_task, return_exceptions=True)
            if self.state.loaded is not None:
                await asyncio.to_thread(self.state.loaded.engine.stop)
        if not self._server.started and self.exit_code == EXIT_OK:
            self.exit_code = EXIT_FAILED
            self.cause = f"cannot listen on {self.config.host}:{self.config.port}"
        if self.exit_code != EXIT_OK:
            write_cause(termination_log(self.config.termination_log), self.cause or "failed")
        return self.exit_code

    def _metrics_server(self) -> uvicorn.Server | None:
        """/metrics alone on --metrics-port; it ends with the main server (no signals)."""
        if not self.config.metrics_port:
            return None
        config = uvicorn.Config(
            build_metrics_app(self.state),
            host=self.config.host,
            port=self.config.metrics_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        return _SignalFreeServer(config)

    async def _start_loading_when_listening(self, loop: asyncio.AbstractEventLoop) -> None:
        # uvicorn exposes only a flag for "listening", no event to wait on.
        while not self._server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        log.info(
            "listening on %s:%d; loading %s", self.config.host, self.config.port, self.config.model
        )
        self.loader = threading.Thread(
            target=self._load, args=(loop,), name="siesta-loader", daemon=True
        )
        self.loader.start()

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        config, metrics = self.config, self.state.metrics
        try:
            started = time.monotonic()
            init_backend(verbose=config.log_level.lower() == "debug")
            probe = gpu.probe(os.environ, recent_errors())
            log.info("%s", gpu.describe(probe))
            if config.require_gpu:  # before a download that a CPU could never use
                self._check_gpu(probe)
            path = self._fetch()
            fetched = time.monotonic()
            metrics.download_seconds.set(fetched - started)
            header = read_header(path)  # "not a GGUF" before llama.cpp tries
            self._check_fits(header)
            try:
                model = load_model(path, gpu_layers=config.gpu_layers)
            except NativeError:
                if "unknown model architecture" in load_error():
                    raise NativeError(
                        f"unsupported model architecture {header.architecture!r} in {path}: "
                        f"this server's llama.cpp cannot run it ({load_error()})"
                    ) from None
                raise
            try:
                if config.require_gpu:
                    self._check_offload()
                adapters = self._load_adapters(model)
                context = create_context(
                    model,
                    n_ctx=config.ctx_size,
                    n_seq=config.parallel,
                    n_batch=config.batch_size,
                    threads=config.threads,
                )
                template = ChatTemplate(
                    model.chat_template,
                    bos_token=model.token_text(model.bos_token),
                    eos_token=model.token_text(model.eos_token),
                )
                # Vocabulary tables requests need, built now rather than on a request's clock.
                utf8_tables(model)
                special_texts(model)
            except BaseException:
                model.close()
                raise
            engine = Engine(
                model, context, metrics, max_queue=config.max_queue, threads=config.threads
            )
            metrics.model_load_seconds.set(time.monotonic() - fetched)
            log.info(
                "model %s loaded in %.2fs: %s, %d slots of %d tokens",
                config.model_id,
                time.monotonic() - fetched,
                model.description,
                engine.n_slots,
                engine.n_ctx_seq,
            )
            overflow = fit.trained_context_warning(
                engine.n_ctx_seq, model.n_ctx_train, engine.n_slots
            )
            if overflow:
                log.warning("%s", overflow)
            loop.call_soon_threadsafe(self._loaded, Loaded(model, engine, template, adapters))
        except Exception as error:
            log.error("cannot serve %s: %s", config.model, error)
            loop.call_soon_threadsafe(self._fail, str(error))

    def _fetch(self) -> Path:
        """The model's local path: evicting old versions, refusing a known-bad download."""
        source, config = self.source, self.config
        if not source.is_remote:
            self.state.metrics.fetched(scheme_of(source.uri) or "file", "local", 0)
            return fetch_model(source)
        entry = cache_path(source)
        self.state.metrics.fetched(
            scheme_of(source.uri), "hit" if entry.is_file() else "miss", source.fetch.connections
        )
        if source.sha256:
            known = mismatch.recall(entry, source.uri, source.sha256, datetime.now(UTC))
            if known is not None:
                raise ModelSourceError(known.message())
        eviction.evict(source.cache_dir, entry, config.cache_keep)
        try:
            return fetch_model(
                source,
                on_bytes=self.state.metrics.download_bytes.inc,
                on_rate=self.state.metrics.download_rate.set,
                on_size=lambda size: self._make_room(entry, size),
            )
        except ChecksumMismatch as error:
            found = mismatch.Mismatch(source.uri, error.expected, error.actual, datetime.now(UTC))
            mismatch.remember(entry, found)
            raise ModelSourceError(found.message()) from None

    def _make_room(self, entry: Path, size: int) -> None:
        eviction.make_room(self.source.cache_dir, entry, size)

    def _check_gpu(self, probe: gpu.GpuProbe) -> None:
        refusal = gpu.refusal(probe)
        if refusal is not None:
            raise GpuRequiredError(refusal)
        log.info("GPU required and found: %s (%s)", ", ".join(probe.devices), probe.backends)

    def _check_offload(self) -> None:
        counted = gpu.offloaded_layers(offload_lines())
        if counted is None:
            return  # llama.cpp did not say; the device and memory checks already passed
        refusal = gpu.offload_refusal(self.config.gpu_layers, *counted)
        if refusal is not None:
            raise GpuRequiredError(refusal)

    def _check_fits(self, header: GGUFHeader) -> None:
        config = self.config
        need = fit.estimate(header, config.ctx_size)
        layers = int(header.arch_value("block_count") or 0)  # type: ignore[arg-type]
        on_gpu_memory = memory.gpu_free() if config.gpu_layers != 0 else None
        on_gpu, on_host = fit.split(need, layers, config.gpu_layers, on_gpu_memory is not None)
        for placed, free in ((on_gpu, on_gpu_memory), (on_host, memory.host_free())):
            if free is not None:
                fit.check(placed, free, config.ctx_size, config.parallel)
                log.info(
                    "memory check: %s on %s, %s free",
                    fit.gib(placed.total),
                    free.where,
                    fit.gib(free.free),
                )

    def _load_adapters(self, model: Model) -> dict[str, Adapter]:
        """Fetch (and cache) every --lora like the model, then load it onto the model."""
        adapters: dict[str, Adapter] = {}
        for lora in self.config.loras:
            source = ModelSource(
                lora.uri,
                lora.sha256,
                self.config.cache_dir,
                FetchSettings(self.config.fetch_connections),
            )
            path = fetch_model(source, on_bytes=self.state.metrics.download_bytes.inc)
            adapters[lora.name] = load_adapter(model, lora.name, path, lora.scale)
            log.info("LoRA adapter %s loaded from %s (scale %g)", lora.name, path, lora.scale)
        return adapters

    def _loaded(self, loaded: Loaded) -> None:
        # exit 1: Kubernetes restarts the pod
        loaded.engine.on_crash = lambda: self._fail("the decode engine crashed (see the log)")
        loaded.engine.start(asyncio.get_running_loop())
        self.state.ready(loaded)
        if self.state.phase is Phase.READY:
            log.info("ready")

    def _fail(self, cause: str) -> None:
        self.cause = cause
        self.state.phase = Phase.FAILED
        self.exit_code = EXIT_FAILED
        self._server.should_exit = True

    def _on_signal(self, sig: int) -> None:
        if self._drain_task is not None:
            if sig == signal.SIGINT:  # a second Ctrl-C: stop now
                self._server.force_exit = True
                self._server.should_exit = True
            return
        log.info("received %s: draining", signal.Signals(sig).name)
        self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Refuse new work (health 503), let running requests finish, then exit 0."""
        was_loading = self.state.phase is not Phase.READY
        self.state.start_draining()
        loaded = self.state.loaded
        if not was_loading and loaded is not None:
            try:
                await asyncio.wait_for(_idle(self.state, loaded), self.config.drain_timeout)
                log.info("drained: no requests in flight")
            except TimeoutError:
                log.warning(
                    "drain timeout (%.0fs): cancelling %d requests",
                    self.config.drain_timeout,
                    loaded.engine.outstanding,
                )
                await asyncio.to_thread(loaded.engine.stop)
                await asyncio.sleep(0.2)  # let the failed streams write their last event
        self._server.should_exit = True


async def _idle(state: ServerState, loaded: Loaded) -> None:
    """No request in flight, and the engine has finished every job."""
    await state.wait_idle()
    # A request that ended early (client gone) leaves its job a step to notice the cancel.
    while loaded.engine.outstanding:  # noqa: ASYNC110 - the engine thread has no event
        await asyncio.sleep(0.05)


def entrypoint() -> None:
    sys.exit(main())
