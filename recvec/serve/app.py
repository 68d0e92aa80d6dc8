"""The FastAPI application of ``recvec serve``: routes, request models, error shapes, the body limit
and the search thread pool.

Requests are parsed and checked on the event loop (pydantic, bounded by ``Limits``); the search and
the answer's JSON run on a thread pool (FAISS releases the GIL), each request on the one snapshot it
took from the IndexHolder. The hot routes (POST /recommend, POST /search) are answered by the
outermost ASGI layer (:class:`Front`) with the same handlers the documented FastAPI routes call,
without FastAPI's per-request machinery; every other route is plain FastAPI.

Every refusal is ``{"error": {"status", "type", "field", "message"}}`` with a 4xx status; an
unexpected failure is a 500 with no detail in the answer (the traceback goes to the server's log). Answers carry the served artifact's version in the ``x-recvec-artifact`` header.
"""

import asyncio
import hmac
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict
from functools import partial
from typing import Any

from recvec.errors import RecvecError, shorten
from recvec.indexes.payload import VERSION_HEADER, to_json
from recvec.serve import queries
from recvec.serve.config import CONFIG_ENV, TOKEN_ENV, Limits, ServeConfig
from recvec.serve.holder import IndexHolder
from recvec.serve.metrics import ServeMetrics
from recvec.serve.queries import ApiError

log = logging.getLogger("recvec.serve")


def _search_thread() -> None:
    """Set up a search thread: FAISS on this thread alone (omp_set_num_threads is per calling thread).
    A request is one or a few queries; the pool, not an OpenMP team per query, is the parallelism (a
    team's wake-up and barrier cost more than a single query's search)."""
    import faiss

    faiss.omp_set_num_threads(1)


def request_models(limits: Limits):
    """The request bodies' pydantic models under ``limits``: ``(Recommend, Search)``."""
    from typing import Annotated, Literal

    from pydantic import (
        BaseModel,
        ConfigDict,
        Field,
        StrictInt,
        StrictStr,
        WithJsonSchema,
    )

    # Ids are checked where they are looked up (queries.known_ids: one pass, integers vectorised), not
    # one Python validator call per id here: a 1,000-item history would pay ~0.5 ms for it.
    ItemId = Annotated[Any, WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}],
                                            "description": "An item id, as the artifact holds it."})]
    History = Annotated[list[ItemId], Field(max_length=limits.max_history)]
    K = Annotated[StrictInt, Field(ge=1, le=limits.max_k, description="Number of results.")]
    Ef = Annotated[StrictInt, Field(ge=1, le=limits.max_ef_search, description="HNSW efSearch (query time).")]
    Nprobe = Annotated[StrictInt, Field(ge=1, le=limits.max_nprobe, description="IVF lists to probe (query time).")]

    class Recommend(BaseModel):
        """One history (``items``, oldest first) or a batch (``histories``); the history's items and
        ``exclude`` are never recommended."""

        model_config = ConfigDict(extra="forbid")
        items: History | None = Field(None, description="The user's history: item ids, oldest first.")
        histories: Annotated[list[History], Field(max_length=limits.max_batch)] | None = Field(
            None, description="A batch: one history per user (instead of items).")
        timestamps: list[Any] | None = Field(
            None, description="Seconds, one per history item (a list per history for a batch); used by "
                              "recency-weighted user encoders.")
        k: K = 10
        exclude: Annotated[list[ItemId], Field(max_length=limits.max_history)] | None = Field(
            None, description="More ids never to recommend (unknown ones are ignored).")
        ef_search: Ef | None = None
        nprobe: Nprobe | None = None
        unknown: Literal["error", "skip"] = Field("error", description="Unknown history ids: a 422 error naming "
                                                                         "them, or skip them (listed in the answer).")

    class Search(BaseModel):
        """A free-text query (text indexes only)."""

        model_config = ConfigDict(extra="forbid")
        text: Annotated[StrictStr, Field(min_length=1, max_length=limits.max_text_chars)]
        k: K = 10
        ef_search: Ef | None = None
        nprobe: Nprobe | None = None

    return Recommend, Search


def field_of(loc) -> str | None:
    """A pydantic error location as a request field: ``("body", "histories", 2, 0)`` ->
    ``histories[2][0]``; None for the whole body."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out or None


def validation_error(errors: list[dict]) -> ApiError:
    """The ApiError for pydantic errors: 400 ``invalid_json`` for a body that is not JSON, else 422
    ``validation`` on the first error's field (every error listed in ``errors``)."""
    listed = []
    for e in errors[:20]:
        field = field_of(e.get("loc", ()))
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        echo = "input" in e and e.get("type") not in ("missing", "value_error")  # a value error shows it already
        got = f" (got {shorten(repr(e['input']))})" if echo else ""
        listed.append({"field": field, "message": f"{msg}{got}", "type": e.get("type")})
    first = listed[0] if listed else {"field": None, "message": "invalid request", "type": None}
    if first["type"] == "json_invalid":
        return ApiError(400, "invalid_json", "the request body is not valid JSON", "body")
    where = first["field"] or "body"
    return ApiError(422, "validation", f"{where}: {first['message']}", first["field"] or "body", errors=listed)


async def read_body(request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes; ApiError 413 ``too_large`` beyond (from the
    Content-Length header before reading, or while reading a chunked body)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(None, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _split_ids(text: str | None, field: str, limit: int, int_ids: bool) -> list:
    """Comma-separated ids of a query string: empty parts skipped; on an artifact with integer ids a
    part holding an integer becomes that integer (others stay strings, to be reported unknown)."""
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    if len(parts) > limit:
        raise ApiError(422, "validation", f"{len(parts):,} ids; at most {limit:,} are accepted (--max-history)", field)
    if int_ids:
        parts = [v if (v := queries.as_id(p, True)) is not None else p for p in parts]
    return parts


class Front:
    """The outermost ASGI layer: counts and times every HTTP request (arrival to the answer's last
    byte, by route template) and answers the hot routes itself.

    ``hot`` maps (method, path) to ``handler(body: bytes) -> (json bytes, artifact version)``. Those
    requests skip FastAPI's routing, middleware stack and per-request machinery (about half a
    millisecond of CPU a request on the project's machine): the body is read here (at most
    ``max_body``), the handler parses and answers it, and errors are rendered in the service's one
    shape. The same handlers back the documented FastAPI routes of these paths."""

    def __init__(self, app, metrics: ServeMetrics, hot: dict, max_body: int):
        self.app, self.metrics, self.hot, self.max_body = app, metrics, hot, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500
        route = "other"
        self.metrics.in_flight.inc()
        try:
            handler = self.hot.get((scope["method"], scope["path"]))
            if handler is not None:
                route = scope["path"]
                status = await self._answer(handler, route, scope, receive, send)
                return

            async def send_status(message):
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            await self.app(scope, receive, send_status)
            route = getattr(scope.get("route"), "path", "other")
        finally:
            self.metrics.in_flight.dec()
            self.metrics.observe(route, scope["method"], status, time.perf_counter() - t0)

    async def _answer(self, handler, route: str, scope, receive, send) -> int:
        headers = [(b"content-type", b"application/json")]
        try:
            body = await self._body(scope, receive)
            if body is None:  # the client went away
                return 499
            payload, version = await handler(body)
            status = 200
            headers.append((VERSION_HEADER.encode(), version.encode()))
        except Exception as e:  # every failure becomes the service's error shape
            err = e if isinstance(e, ApiError) else queries.api_error(e) if isinstance(e, RecvecError) else None
            if err is None:
                log.exception("internal error answering %s %s", scope["method"], route)
                err = ApiError(500, "internal", "internal error (the server's log has the details)")
            self.metrics.error(route, err.kind)
            status, payload = err.status, json.dumps(err.body(), separators=(",", ":")).encode()
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return status

    async def _body(self, scope, receive) -> bytes | None:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise too_large(int(value), self.max_body)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise too_large(None, self.max_body)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def too_large(declared: int | None, limit: int) -> ApiError:
    """The 413 for a body over ``limit`` bytes (``declared``: its Content-Length, when sent)."""
    size = f"{declared:,} bytes" if declared is not None else f"over {limit:,} bytes"
    return ApiError(413, "too_large", f"the request body is {size}; at most {limit:,} are accepted "
                    "(--max-body-bytes)", "body")


def create_app(config: ServeConfig, holder: IndexHolder | None = None):
    """The application answering from ``holder`` (default: a new IndexHolder of ``config.index``,
    loaded at start-up). Start-up loads the artifact if the holder has none and starts the manifest
    watcher; shutdown waits for the searches in flight and closes the artifact."""
    from importlib import metadata

    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from pydantic import ValidationError
    from starlette.exceptions import HTTPException

    limits = config.limits
    Recommend, Search = request_models(limits)
    holder = holder or IndexHolder(config.index, config.endpoint_url)
    metrics = ServeMetrics()
    pool = ThreadPoolExecutor(config.search_threads, thread_name_prefix="recvec-search", initializer=_search_thread)
    admin_pool = ThreadPoolExecutor(1, thread_name_prefix="recvec-reload")
    token = os.environ.get(TOKEN_ENV) or None

    async def watch(interval: float):
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                r = await loop.run_in_executor(admin_pool, partial(holder.reload, only_if_changed=True))
            except RecvecError as e:
                metrics.reload("failed")
                log.warning("new artifact refused; still serving %s: %s", holder.current.version, e)
                continue
            except Exception:  # keep watching whatever happened
                log.exception("manifest watch failed")
                continue
            if r["status"] == "reloaded":
                metrics.reload("reloaded")
                metrics.served(holder.current)
                log.info("reloaded %s -> %s (manifest changed; %.2f s)", r["previous"], r["version"], r["load_s"])

    @asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()
        _search_thread()  # the loop's thread answers lone single-history requests itself (run(inline=True))
        if not holder.ready:
            await loop.run_in_executor(admin_pool, holder.load)
        metrics.served(holder.current)
        watcher = asyncio.create_task(watch(config.watch_interval_s)) if config.watch_interval_s else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            pool.shutdown(wait=True)
            admin_pool.shutdown(wait=False)
            holder.close()

    app = FastAPI(title="recvec", version=metadata.version("recvec"), lifespan=lifespan,
                  description="Recommendations from a recvec index artifact: the `recvec query --json` shape over "
                              "HTTP. Errors are `{\"error\": {\"status\", \"type\", \"field\", \"message\"}}`.")
    errors_doc = {s: {"description": d} for s, d in ((400, "Malformed request"), (413, "Body too large"),
                                                     (422, "Invalid field or unknown id"))}

    # ------------------------------------------------------------------------ plumbing

    def endpoint_of(request) -> str:
        route = request.scope.get("route")
        return getattr(route, "path", "other")

    def error_response(request, e: ApiError):
        metrics.error(endpoint_of(request), e.kind)
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(ApiError)
    async def _api_error(request, e: ApiError):
        return error_response(request, e)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, e: RequestValidationError):
        return error_response(request, validation_error(list(e.errors())))

    @app.exception_handler(RecvecError)
    async def _recvec_error(request, e: RecvecError):
        return error_response(request, queries.api_error(e))

    @app.exception_handler(HTTPException)
    async def _http_error(request, e: HTTPException):
        kinds = {404: "not_found", 405: "method_not_allowed"}
        return error_response(request, ApiError(e.status_code, kinds.get(e.status_code, "http"), str(e.detail)))

    @app.exception_handler(Exception)
    async def _internal(request, e: Exception):
        log.exception("internal error answering %s %s", request.method, request.url.path)
        metrics.error(endpoint_of(request), "internal")
        return JSONResponse({"error": {"status": 500, "type": "internal", "field": None,
                                       "message": "internal error (the server's log has the details)"}},
                            status_code=500)

    busy = [0]  # searches being answered now (only the event loop's thread changes it)

    async def run(fn, *args, inline: bool = False, **kwargs) -> tuple[bytes, str]:
        """fn(snapshot, ...), one snapshot for the whole answer: its JSON and the snapshot's version.
        On the search pool; an ``inline`` call (one history: a fraction of a millisecond) runs on the
        event loop's own thread when no other search is being answered, which saves the two thread
        hand-offs a lone request would otherwise pay; under concurrency every search goes to the pool."""
        def work():
            with holder.use() as snap:
                return to_json(fn(snap, *args, **kwargs)), snap.version

        if inline and config.inline_single and busy[0] == 0:
            busy[0] += 1
            try:
                return work()
            finally:
                busy[0] -= 1
        busy[0] += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, work)
        finally:
            busy[0] -= 1

    async def answer(fn, *args, **kwargs):
        body, version = await run(fn, *args, **kwargs)
        return Response(body, media_type="application/json", headers={VERSION_HEADER: version})

    def parse(body: bytes, model):
        try:
            return model.model_validate_json(body)
        except ValidationError as e:
            raise validation_error(e.errors(include_url=False)) from None

    async def recommend_body(body: bytes) -> tuple[bytes, str]:
        """POST /recommend: the body parsed, then one history or a batch answered."""
        req = parse(body, Recommend)
        if (req.items is None) == (req.histories is None):
            raise ApiError(422, "validation", 'give either "items" (one history) or "histories" (a batch)', "items")
        kw = {"k": req.k, "timestamps": req.timestamps, "exclude": req.exclude, "unknown": req.unknown,
              "params": search_params(req.ef_search, req.nprobe)}
        if req.items is not None:
            return await run(queries.recommend, req.items, inline=True, **kw)
        return await run(queries.recommend_batch, req.histories, **kw)

    async def search_body(body: bytes) -> tuple[bytes, str]:
        """POST /search: the body parsed, the text encoded and searched."""
        req = parse(body, Search)
        return await run(queries.search_text, req.text, k=req.k, params=search_params(req.ef_search, req.nprobe))

    hot = {("POST", "/recommend"): recommend_body, ("POST", "/search"): search_body}
    app.add_middleware(Front, metrics=metrics, hot=hot, max_body=limits.max_body_bytes)

    async def documented(request, handler):  # the FastAPI routes of the hot paths (Front answers them first)
        body, version = await handler(await read_body(request, limits.max_body_bytes))
        return Response(body, media_type="application/json", headers={VERSION_HEADER: version})

    def body_doc(model) -> dict:
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}

    def search_params(ef_search, nprobe) -> dict:
        return {"ef_search": ef_search, "nprobe": nprobe}

    K = Query(10, ge=1, le=limits.max_k, description="Number of results.")
    EF = Query(None, ge=1, le=limits.max_ef_search, description="HNSW efSearch (query time).")
    NPROBE = Query(None, ge=1, le=limits.max_nprobe, description="IVF lists to probe (query time).")

    # ------------------------------------------------------------------------ routes

    @app.post("/recommend", openapi_extra=body_doc(Recommend), responses=errors_doc,
              summary="Recommendations for a history given now (or a batch of histories)")
    async def post_recommend(request: Request):
        return await documented(request, recommend_body)

    @app.get("/recommend", responses=errors_doc, summary="Recommendations for a history in the query string")
    async def get_recommend(items: str = Query("", description="Comma-separated item ids, oldest first."),
                            k: int = K, exclude: str | None = Query(None, description="Comma-separated ids never "
                                                                                       "to recommend."),
                            ef_search: int | None = EF, nprobe: int | None = NPROBE,
                            unknown: str = Query("error", pattern="^(error|skip)$")):
        int_ids = holder.current.int_ids
        ids = _split_ids(items, "items", limits.max_history, int_ids)
        excl = _split_ids(exclude, "exclude", limits.max_history, int_ids) if exclude else None
        return await answer(queries.recommend, ids, k=k, exclude=excl, unknown=unknown,
                            params=search_params(ef_search, nprobe))

    @app.get("/similar/{item_id}", responses={**errors_doc, 404: {"description": "Unknown item id"}},
             summary="The items most similar to one item")
    async def get_similar(item_id: str, k: int = K, ef_search: int | None = EF, nprobe: int | None = NPROBE):
        return await answer(queries.similar, item_id, k=k, params=search_params(ef_search, nprobe))

    @app.post("/search", openapi_extra=body_doc(Search), responses=errors_doc,
              summary="Items nearest to a free-text query (text indexes)")
    async def post_search(request: Request):
        return await documented(request, search_body)

    @app.get("/healthz", summary="The process is up")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="An artifact is loaded and answers", responses={503: {"description": "Not ready"}})
    async def readyz():
        if not holder.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready", "version": holder.current.version}

    @app.get("/info", summary="The served artifact's manifest summary and the server's settings")
    async def info():
        snap = holder.current
        return {"artifact": snap.summary(), "source": holder.src,
                "server": {"pid": os.getpid(), "workers": config.workers, "search_threads": config.search_threads,
                           "watch_s": config.watch_interval_s, "limits": asdict(limits),
                           "recvec": metadata.version("recvec")},
                "reloads": dict(holder.reloads), "last_reload_error": holder.last_error}

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    async def prometheus():
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    @app.post("/admin/reload", summary="Load the artifact again beside the served one and swap it in",
              responses={401: {"description": "Admin token required"},
                         409: {"description": "The new artifact was refused; the old one keeps serving"}})
    async def admin_reload(request: Request):
        if token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise ApiError(401, "unauthorized", f"this server needs 'Authorization: Bearer <token>' "
                               f"(${TOKEN_ENV}) for admin requests", "authorization")
        try:
            r = await asyncio.get_running_loop().run_in_executor(admin_pool, holder.reload)
        except RecvecError as e:
            metrics.reload("failed")
            serving = holder.current.version
            log.warning("reload refused; still serving %s: %s", serving, e)
            raise ApiError(409, "reload_failed", f"the new artifact was refused, still serving {serving}: {e}",
                           serving=serving) from None
        metrics.reload(r["status"])
        metrics.served(holder.current)
        log.info("reload: %s %s -> %s (%.2f s)", r["status"], r["previous"], r["version"], r["load_s"])
        if config.workers > 1:
            r["note"] = (f"this worker (pid {os.getpid()}) reloaded; the other workers follow within "
                         f"{config.watch_interval_s:g} s (manifest watch)")
        return r

    return app


def app_from_env():
    """The application of a worker process (``--workers`` > 1): its ServeConfig from $RECVEC_SERVE_CONFIG."""
    return create_app(ServeConfig.from_json(os.environ[CONFIG_ENV]))
