"""The FastAPI application: REST under ``/api/v1``, SSE, the dashboard files and Plotly.js.

``create_app(settings)`` builds an app (``uvicorn --factory backend.app:create_app``); the
module-level ``app`` is built from the environment (``uvicorn backend.app:app``). Importing this
module never imports torch, Celery tasks or the worker (DESIGN §2.2): runs are handed to the
workers through ``worker.dispatch`` imported on first use, or through the ``enqueue``/``revoke``
callables given to :func:`create_app` (tests).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.exceptions
from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import tscnc
from backend import redact
from backend.deps import default_dispatcher
from backend.routes import access, annotations, runs, summary, sweeps, system
from backend.schemas import Role
from backend.settings import Settings
from backend.sse import SERVER_SEND
from backend.store import AsyncStore, Store
from tscnc import palette

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


# ---- middleware (pure ASGI, so streaming responses are untouched) --------------------------
# None of them may change a response's body: the event streams write theirs past them
# (_App below).


class _App(FastAPI):
    """FastAPI, leaving the server's own ``send`` in each HTTP request's scope (under
    :data:`backend.sse.SERVER_SEND`): an event stream sends its headers through the middleware
    and writes its body with it, each live event to hundreds of clients without a pass through
    the five wrappers of ``send`` (Starlette's and the middleware above) that act only on the
    headers. Measured side by side: docs/benchmarks.md ("The stream body past the
    middleware")."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[SERVER_SEND] = send
        await super().__call__(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """Answer 413 to a request whose body is over ``max_bytes`` (by Content-Length, or while
    reading a chunked body)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False
                if too_large:
                    await self._reject(scope, receive, send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _too_large(self.max_bytes)(scope, receive, send)


def _too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body is larger than {max_bytes} bytes"},
                        status_code=413)


# Pages run only the scripts they load from this server (no inline script, no eval, no CDN);
# styles may be inline (Plotly and Swagger UI set style attributes); images may be data:/blob:
# (chart and icon images, PNG export).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


class AllowedMethods:
    """Methods a path does not document: ``OPTIONS`` gets ``204`` and any other ``405``, both with
    an ``Allow`` header listing every method the OpenAPI document gives the path (Starlette's own
    405 names only the methods of the first route matching the path, e.g. ``GET`` alone for
    ``/api/v1/sweeps``, which also takes ``POST``). CORS preflights never get here: the CORS
    middleware, when configured, answers them first."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app, self.api = app, api
        self._paths: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def allowed(self, path: str) -> frozenset[str]:
        """The methods the OpenAPI document gives the template ``path`` matches (empty: none)."""
        if self._paths is None:  # built once, from the document the server publishes
            self._paths = [
                (re.compile("^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(t)) + "$"),
                 frozenset(m.upper() for m in item if m in _HTTP_METHODS))
                for t, item in self.api.openapi()["paths"].items()]
        return frozenset().union(*(ms for rx, ms in self._paths if rx.match(path)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        allowed = self.allowed(scope["path"])
        if not allowed or scope["method"] in allowed:
            await self.app(scope, receive, send)
            return
        headers = {"Allow": ", ".join(sorted(allowed))}
        if scope["method"] == "OPTIONS":
            response: Response = Response(status_code=204, headers=headers)
        else:
            response = JSONResponse({"detail": "Method Not Allowed"}, status_code=405,
                                    headers=headers)
        await response(scope, receive, send)


class SecurityHeaders:
    """On every answer: the Content-Security-Policy above, no MIME sniffing, no framing, and no
    Referer (a login URL carries ?token= until the page moves it into storage)."""

    HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
               (b"x-frame-options", b"DENY"),
               (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())]

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + self.HEADERS
            await send(message)

        await self.app(scope, receive, add_headers)


# ---- errors --------------------------------------------------------------------------------

def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, str):
        return v.encode("utf-8", "replace").decode("utf-8")
    if isinstance(v, int | float | bool) or v is None:
        return v
    return _json_safe(str(v))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field: ``{"detail": [{"loc", "msg", "type"}]}``. The offending
    input is not echoed (it may be huge, non-finite or not valid Unicode)."""
    errors: list[dict[str, Any]] = list(getattr(exc, "errors", list)())
    # pydantic prefixes messages of custom validators with "Value error, ": noise to a user.
    detail = [{"loc": [_json_safe(x) for x in e.get("loc", ())],
               "msg": _json_safe(str(e.get("msg", "")).removeprefix("Value error, ")),
               "type": _json_safe(str(e.get("type", "value_error")))} for e in errors]
    return JSONResponse({"detail": detail}, status_code=422)


async def _bad_text(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["body"], "type": "unicode_error",
                                     "msg": "text must be valid Unicode (no lone surrogates)"}]},
                        status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI answers any failure while reading a body with a bare 400 ("There was an error
    parsing the body"): a chunked body over the size limit gets its 413, and a body that is not
    UTF-8, nested too deeply for the parser or holding an integer of more than 4,300 digits a
    422 naming the body and the problem."""
    if isinstance(exc.__cause__, _TooLarge):
        return _too_large(request.app.state.settings.max_body_bytes)
    if isinstance(exc.__cause__, UnicodeDecodeError):
        return JSONResponse({"detail": [{"loc": ["body"], "type": "unicode_error",
                                         "msg": "the request body is not valid UTF-8 JSON"}]},
                            status_code=422)
    if isinstance(exc.__cause__, RecursionError):
        return JSONResponse({"detail": [{"loc": ["body"], "type": "json_too_deep",
                                         "msg": "the request body's JSON is nested too deeply"}]},
                            status_code=422)
    if isinstance(exc.__cause__, ValueError):  # e.g. an integer over Python's 4,300 digits
        return JSONResponse({"detail": [{"loc": ["body"], "type": "json_invalid",
                                         "msg": f"the request body is not acceptable JSON "
                                                f"({str(exc.__cause__)[:200]})"}]},
                            status_code=422)
    return await http_exception_handler(request, exc)  # type: ignore[arg-type]


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Redis unavailable for %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "the data store (Redis) is unavailable; try again shortly",
         "error": type(exc).__name__},
        status_code=503, headers={"Retry-After": "2"})


# ---- static files --------------------------------------------------------------------------

def plotly_js_path() -> Path | None:
    """plotly.min.js from the installed ``plotly`` package (found without importing it)."""
    spec = importlib.util.find_spec("plotly")
    for base in (spec.submodule_search_locations or []) if spec else []:
        p = Path(base) / "package_data" / "plotly.min.js"
        if p.is_file():
            return p
    return None


_SHARE_FALLBACK = """<!doctype html><meta charset="utf-8"><title>TSCNC shared dashboard</title>
<p>The dashboard front end is not installed on this server. The data of this link is
served by the API at <code>/api/v1/share/</code> followed by the link's token.</p>"""


def swagger_ui_dir() -> Path | None:
    """Swagger UI's dist files from the installed ``swagger-ui-py`` package (no CDN)."""
    spec = importlib.util.find_spec("swagger_ui")
    for base in (spec.submodule_search_locations or []) if spec else []:
        p = Path(base) / "static"
        if (p / "swagger-ui-bundle.js").is_file():
            return p
    return None


_SWAGGER_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
                  "favicon-32x32.png": "image/png"}
# The page loads only files of this server: no inline script, so it passes the CSP above.
_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TSCNC job service API</title>
<link rel="icon" href="/static/swagger-ui/favicon-32x32.png">
<link rel="stylesheet" href="/static/swagger-ui/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/static/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/swagger-ui/init.js"></script></body></html>"""
_DOCS_INIT = f"""window.ui = SwaggerUIBundle({{
  url: "{API_PREFIX}/openapi.json", dom_id: "#swagger-ui", deepLinking: true, presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"}});
"""


class FrontendFiles(StaticFiles):
    """The dashboard directory; 404 (not an error) while it does not exist."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not Path(str(self.directory)).is_dir():
            await JSONResponse({"detail": "Not Found"}, status_code=404)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _static_routes(app: FastAPI, settings: Settings) -> None:
    frontend = settings.frontend_dir

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        path = plotly_js_path()
        if path is None:
            return JSONResponse({"detail": "the plotly package is not installed"}, 404)
        return FileResponse(path, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get(f"{API_PREFIX}/docs", include_in_schema=False)
    def api_docs() -> Response:
        if swagger_ui_dir() is None:
            return JSONResponse({"detail": "the swagger-ui-py package is not installed; the "
                                           f"API is described at {API_PREFIX}/openapi.json"}, 404)
        return HTMLResponse(_DOCS_PAGE)

    @app.get("/static/swagger-ui/init.js", include_in_schema=False)
    def swagger_init() -> Response:
        return Response(_DOCS_INIT, media_type="text/javascript")

    @app.get("/static/swagger-ui/{name}", include_in_schema=False)
    def swagger_file(name: str) -> Response:
        base = swagger_ui_dir()
        if base is None or name not in _SWAGGER_FILES:     # a fixed list: no path from input
            return JSONResponse({"detail": "Not Found"}, 404)
        return FileResponse(base / name, media_type=_SWAGGER_FILES[name],
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/share/{token}", include_in_schema=False)
    def share_page(token: str) -> Response:
        for name in ("share.html", "index.html"):
            page = frontend / name
            if page.is_file():
                return FileResponse(page, media_type="text/html",
                                    headers={"Cache-Control": "no-store"})
        return HTMLResponse(_SHARE_FALLBACK, headers={"Cache-Control": "no-store"})

    # Mounted last: everything the API does not answer. check_dir=False: the directory may
    # appear after start-up (404 until then).
    app.mount("/", FrontendFiles(directory=str(frontend), html=True, check_dir=False),
              name="frontend")


# ---- the app -------------------------------------------------------------------------------

def _with_palette(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` with the methods' order and colours (:mod:`tscnc.palette`) as the
    ``Method`` schema's ``x-palette``: the dashboard draws with the report's colours, and lists
    the methods in their order, without a copy of either."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()        # built once, then FastAPI's cached copy
        schema["components"]["schemas"]["Method"]["x-palette"] = palette.openapi_extension()
        return schema
    return openapi


def create_app(settings: Settings | None = None, *,
               enqueue: Callable[[str, list[str] | None], Any] | None = None,
               revoke: Callable[[str], Any] | None = None,
               store: Store | None = None) -> FastAPI:
    """Build the API. ``enqueue(sweep_id, run_ids)`` / ``revoke(task_id)`` default to
    ``worker.dispatch`` (imported on first use); tests pass recorders."""
    settings = settings or Settings()
    redact.install()        # no credential in any log line of this process (backend/redact.py)
    dispatcher = default_dispatcher()
    if enqueue is not None:
        dispatcher.enqueue = enqueue
    if revoke is not None:
        dispatcher.revoke = revoke

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.astore = AsyncStore.from_url(settings.redis_url,
                                               timeout=settings.sse_keepalive + 10)
        try:
            n = await asyncio.to_thread(app.state.store.ensure_indexes)
            if n is not None:
                log.warning("the stored runs were indexed by an older version: rebuilt the "
                            "list indexes of %d runs", n)
        except redis.exceptions.RedisError as e:
            log.warning("could not check the list indexes (%s); run `tscnc reindex` once Redis "
                        "is reachable if lists miss runs written by an older version", e)
        if settings.bootstrap_token:
            try:
                app.state.store.create_token("bootstrap", Role.admin.value,
                                             secret=settings.bootstrap_token)
            except redis.exceptions.RedisError as e:
                log.warning("could not store the bootstrap token yet (%s); it is accepted and "
                            "stored on first use", e)
        # A full garbage collection walks every object, and the app's own (modules, routes,
        # models: ~130,000, none of them ever garbage) took 130 ms to walk on 2 cores: a
        # stall of every stream and request of this process whenever one ran. Build the
        # OpenAPI document (made on first use otherwise), then leave all that exists now out
        # of every later collection.
        app.openapi()
        gc.collect()
        gc.freeze()
        yield
        if app.state.sse_hub is not None:        # the shared stream readers (backend/sse.py)
            await app.state.sse_hub.close()
        await app.state.astore.close()
        app.state.store.close()

    app = _App(
        title="TSCNC job service", version=tscnc.__version__, lifespan=lifespan,
        description="Run, watch and share TSCNC robustness/compression sweeps. "
                    "See docs/api.md.",
        openapi_url=f"{API_PREFIX}/openapi.json", docs_url=None,  # docs: _static_routes
        redoc_url=None,
    )
    app.openapi = _with_palette(app)  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.store = store or Store.from_url(
        settings.redis_url, timeout=settings.redis_timeout, retries=1,
        retention_keep_logs=settings.retention_keep_logs)
    app.state.dispatcher = dispatcher
    app.state.astore = None
    app.state.sse_hub = None

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(system.router)
    api.include_router(sweeps.router)
    api.include_router(summary.router)
    api.include_router(runs.router)
    api.include_router(annotations.router)
    api.include_router(access.tokens)
    api.include_router(access.dashboards)
    api.include_router(access.share)
    app.include_router(api)

    for exc in (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        app.add_exception_handler(exc, _store_unavailable)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(UnicodeError, _bad_text)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    _static_routes(app, settings)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AllowedMethods, api=app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key",
                                          "Last-Event-ID"])
    app.add_middleware(SecurityHeaders)
    return app


def run_server(settings: Settings | None = None, workers: int = 1) -> None:
    """Serve the app with uvicorn on ``settings.host:port``; on SIGTERM/Ctrl-C open event
    streams are closed after ``settings.shutdown_grace`` seconds (``python -m backend``).
    ``workers`` > 1: that many uvicorn processes on the one port, each building the app from
    the environment (each with its own event-stream reader, backend/sse.py)."""
    import uvicorn

    settings = settings or Settings()
    target: Any = create_app(settings) if workers <= 1 else "backend.app:app"
    uvicorn.run(target, host=settings.host, port=settings.port,
                workers=workers if workers > 1 else None,
                timeout_graceful_shutdown=settings.shutdown_grace, log_level="info")


app = create_app()
