"""The FastAPI application and the uvicorn runner for `tunewright serve`.

The server listens at once and loads the model in the background: `/v1/health/live` answers
from the start, `/v1/health/ready` (and every model route) answers 503 until the model is
loaded and one short generation has warmed it up. On shutdown the engine stops taking
requests and finishes the ones in flight (up to `shutdown_grace_s`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tunewright import __version__
from tunewright.core.model_source import ModelSource
from tunewright.engine import Engine, SamplingParams
from tunewright.engine.requests import EngineClosed, PromptTooLong, QueueFull, UnknownAdapter
from tunewright.runtimes.net import free_port
from tunewright.serve.adapters_dir import AdapterDirectory
from tunewright.serve.canary import STATES, Canary, CanarySetup
from tunewright.serve.capture import Capture, CaptureOff
from tunewright.serve.config import ServeConfig
from tunewright.serve.gate import Gate
from tunewright.serve.metrics import ServeMetrics
from tunewright.serve.routes import NotReady, error, router
from tunewright.serve.service import BadConstraint, ModelNotFound, Served, Service
from tunewright.serve.shadow import Shadow

log = logging.getLogger("tunewright.serve")
Loader = Callable[[], tuple[Engine, Served]]


def _warm_up(engine: Engine) -> None:
    prompt = engine.chat_prompt([{"role": "user", "content": "Hello"}])
    engine.generate([prompt], SamplingParams(max_tokens=2))


def _load(app: FastAPI, load: Loader, cfg: ServeConfig, canary: CanarySetup | None) -> None:
    try:
        engine, served = load()
        _warm_up(engine)
        service = Service(engine, served, cfg.max_new_tokens, cfg.request_timeout_s, app.state.metrics)
        service.capture = app.state.capture
        if cfg.shadow.candidate is not None:
            service.shadow = Shadow(cfg.shadow, served.name)
        if canary is not None:
            capture = app.state.capture
            if capture is None:
                raise ValueError("canary.candidate: the canary is judged on the capture, and capture is off")
            service.canary = Canary(cfg.canary, *canary, served.name, capture.path, capture.window)
        if cfg.adapters_dir:
            app.state.adapter_dir = AdapterDirectory(engine, Path(cfg.adapters_dir), set(cfg.adapters) | {served.name})
            app.state.adapter_dir.sync()
        app.state.service = service
        app.state.ready = True
    except BaseException as exc:
        app.state.load_error = exc
        log.error("the model could not be loaded: %s", exc)
        on_error = app.state.on_load_error
        if on_error is not None:
            on_error(exc)


async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """A body that fails validation: 400 naming the first bad parameter, as OpenAI does."""
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return error(400, f"the body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}")
    param = ".".join(str(p) for p in first["loc"] if p != "body") or None
    message = first["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own message
    return error(400, f"{param}: {message}" if param else message, param=param)


async def unavailable(_: Request, exc: Exception) -> JSONResponse:
    """Not ready, shutting down, or capture off: 503."""
    return error(503, str(exc), "service_unavailable")


async def _watch_canary(app: FastAPI, loading: asyncio.Task, every_s: float) -> None:
    """Let the canary look at its requests every `every_s` until it has promoted or rolled back its candidate."""
    await loading
    service = app.state.service
    canary = service.canary if service is not None else None
    if canary is None:
        return
    gauge = app.state.metrics.canary_state
    while True:
        for state in STATES:
            gauge.labels(state).set(float(state == canary.state))
        if canary.state in ("promoted", "rolled_back"):
            return
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(canary.check)
        except Exception:
            log.exception("the canary check failed; it is tried again in %g s", every_s)


def create_app(
    load: Loader,
    cfg: ServeConfig | None = None,
    api_key: str | None = None,
    capture: Capture | None = None,
    canary: CanarySetup | None = None,
) -> FastAPI:
    """An app that loads its engine with `load` in the background and serves it (recording requests in
    `capture`, which the app starts; its owner closes it after the server has stopped), routing a canary's
    traffic by `canary` when given."""
    cfg = cfg or ServeConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The model is loaded in a thread of its own that ends when it is loaded, not in the event loop's
        # executor: OpenMP (libgomp) keeps a thread pool for every thread that ran parallel work and, when
        # the pools hold more threads than there are cores, stops spin-waiting between parallel regions; a
        # long-lived executor thread that loaded the weights made every engine step 1.7x slower on 2 cores.
        if capture is not None:
            metrics.capture.watch(capture)
            capture.start()
        loader = threading.Thread(target=_load, args=(app, load, cfg, canary), name="tunewright-load", daemon=True)
        loader.start()
        loading = asyncio.create_task(asyncio.to_thread(loader.join))
        scanning: asyncio.Task | None = None
        if cfg.adapters_dir:

            async def rescan() -> None:
                await loading
                if app.state.adapter_dir is not None:
                    await app.state.adapter_dir.keep_in_sync(cfg.adapters_rescan_s)

            scanning = asyncio.create_task(rescan())
        watching = asyncio.create_task(_watch_canary(app, loading, cfg.canary.check_every_s)) if canary else None
        yield
        app.state.closing = True
        for task in (scanning, watching):
            if task is not None:
                task.cancel()
        await loading
        if app.state.service is not None:
            await asyncio.to_thread(app.state.service.engine.shutdown, True, cfg.shutdown_grace_s)

    app = FastAPI(title="tunewright", version=__version__, lifespan=lifespan)
    metrics = ServeMetrics(
        lambda: app.state.service.load_by_model() if app.state.service is not None else {}, capture is not None
    )
    app.state.metrics, app.state.capture = metrics, capture
    app.state.service = None
    app.state.ready = False
    app.state.closing = False
    app.state.load_error = None
    app.state.on_load_error = None
    app.state.adapter_dir = None
    app.include_router(router)
    app.add_middleware(Gate, api_key=api_key, max_body_bytes=cfg.max_body_bytes, log=cfg.access_log)

    app.add_exception_handler(RequestValidationError, invalid_request)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return error(
            exc.status_code, str(exc.detail), "invalid_request_error" if exc.status_code < 500 else "server_error"
        )

    @app.exception_handler(ModelNotFound)
    @app.exception_handler(UnknownAdapter)
    async def _no_model(_: Request, exc: Exception) -> JSONResponse:
        name = exc.args[0] if exc.args else ""
        return error(404, f"The model '{name}' does not exist", param="model", code="model_not_found")

    @app.exception_handler(QueueFull)
    async def _full(_: Request, exc: QueueFull) -> JSONResponse:
        return error(429, f"the server is at capacity ({exc}); retry later", "rate_limit_error", code="queue_full")

    for unready in (NotReady, EngineClosed, CaptureOff):
        app.add_exception_handler(unready, unavailable)

    @app.exception_handler(BadConstraint)
    async def _bad_constraint(_: Request, exc: BadConstraint) -> JSONResponse:
        return error(400, f"{exc.param}: {exc}", param=exc.param)

    @app.exception_handler(PromptTooLong)
    async def _too_long(_: Request, exc: PromptTooLong) -> JSONResponse:
        return error(400, str(exc), code="context_length_exceeded")

    return app


class BackgroundServer:
    """Run an app with uvicorn in a thread (for the quickstart and tests); a context manager."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, ready_timeout: float = 300) -> None:
        self.app, self.ready_timeout = app, ready_timeout
        self.host, self.port = host, port or free_port(host)
        self.server = uvicorn.Server(uvicorn.Config(app, host=self.host, port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + self.ready_timeout
        state = self.app.state
        while not (self.server.started and state.ready):
            if state.load_error is not None:
                self.__exit__()
                raise state.load_error
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.host}:{self.port} did not become ready")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def serve_forever(
    cfg: ServeConfig,
    source: ModelSource,
    name: str,
    adapters: dict[str, Path],
    port: int,
    api_key: str | None,
    capture: Capture | None = None,
    canary: CanarySetup | None = None,
) -> None:
    """`tunewright serve` with this engine as a library call: serve `source` as `name` (with `adapters`) on
    `port` until SIGTERM or Ctrl-C; a model that fails to load stops the server and is raised."""
    app = create_app(
        lambda: (Engine.from_source(source, cfg.engine_config(), adapters), Served(name, source.base)),
        cfg,
        api_key,
        capture,
        canary,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=cfg.host, port=port, log_level="warning", timeout_graceful_shutdown=int(cfg.shutdown_grace_s)
        )
    )
    app.state.on_load_error = lambda exc: setattr(server, "should_exit", True)
    server.run()
    if app.state.load_error is not None:
        raise app.state.load_error
