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

import uvicorn

from siesta_server.api import build_app
from siesta_server.chat import ChatTemplate
from siesta_server.config import ConfigError, ServerConfig, parse_config
from siesta_server.engine import Engine
from siesta_server.native import create_context, init_backend, load_model
from siesta_server.source import ModelSource, ModelSourceError, check_source, fetch_model
from siesta_server.state import Loaded, Phase, ServerState

log = logging.getLogger("siesta_server")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(argv)
    except ConfigError as error:
        print(f"siesta-server: {error}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    source = ModelSource(config.model, config.sha256, config.cache_dir)
    try:
        check_source(source)
    except ModelSourceError as error:
        log.error("%s", error)
        return EXIT_FAILED
    runner = Runner(config, source)
    code = asyncio.run(runner.serve())
    if runner.loader is not None and runner.loader.is_alive():
        # Still inside a download or llama.cpp's loader, which cannot be interrupted.
        logging.shutdown()
        os._exit(code)
    return code


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


class Runner:
    def __init__(self, config: ServerConfig, source: ModelSource) -> None:
        self.config = config
        self.source = source
        self.state = ServerState(config)
        self.exit_code = EXIT_OK
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
            ),
            self._on_signal,
        )

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        watcher = asyncio.create_task(self._start_loading_when_listening(loop))
        try:
            await self._server.serve()
        finally:
            watcher.cancel()
            if self.state.loaded is not None:
                await asyncio.to_thread(self.state.loaded.engine.stop)
        if not self._server.started and self.exit_code == EXIT_OK:
            self.exit_code = EXIT_FAILED  # could not bind the port
        return self.exit_code

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
            path = fetch_model(
                self.source,
                on_bytes=metrics.download_bytes.inc,
                on_rate=metrics.download_rate.set,
            )
            fetched = time.monotonic()
            metrics.download_seconds.set(fetched - started)
            init_backend(verbose=config.log_level.lower() == "debug")
            model = load_model(path, gpu_layers=config.gpu_layers)
            try:
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
            loop.call_soon_threadsafe(self._loaded, Loaded(model, engine, template))
        except Exception as error:
            log.error("cannot serve %s: %s", config.model, error)
            loop.call_soon_threadsafe(self._fail)

    def _loaded(self, loaded: Loaded) -> None:
        loaded.engine.on_crash = self._fail  # exit 1: Kubernetes restarts the pod
        loaded.engine.start(asyncio.get_running_loop())
        self.state.ready(loaded)
        if self.state.phase is Phase.READY:
            log.info("ready")

    def _fail(self) -> None:
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
            deadline = time.monotonic() + self.config.drain_timeout
            while self.state.in_flight or loaded.engine.outstanding:
                if time.monotonic() >= deadline:
                    log.warning(
                        "drain timeout (%.0fs): cancelling %d requests",
                        self.config.drain_timeout,
                        loaded.engine.outstanding,
                    )
                    await asyncio.to_thread(loaded.engine.stop)
                    await asyncio.sleep(0.2)  # let the failed streams write their last event
                    break
                await asyncio.sleep(0.05)
            else:
                log.info("drained: no requests in flight")
        self._server.should_exit = True


def entrypoint() -> None:
    sys.exit(main())
