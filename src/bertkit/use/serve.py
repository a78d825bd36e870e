"""`bertkit serve`: a model folder behind an HTTP JSON API, on Starlette and uvicorn.

    POST /embed      {"texts": [...]}                    -> {"vectors": [[...], ...], "dim": D}   (any folder)
    POST /fill-mask  {"text": "...[MASK]...", "top_k": 5} -> {"masks": [[{"token", "score"}, ...], ...]}  (MLM head)
    POST /classify   {"texts": [...], "pairs": [...]?}   -> {"results": [{"label", "score", "scores"} | {"value"}]}
    POST /tag        {"texts": [...]}                    -> {"results": [{"entities" | "words" | "tags"}, ...]}
    POST /search     {"texts": [...], "top_k": 10}       -> {"results": [[{"id", "score", "text"}, ...]]}  (--index)
    GET  /health     200 while the process answers (liveness)
    GET  /ready      200 once the model is loaded and the batch workers run, else 503 (readiness)

Choices:
- Request batching: each model endpoint has a `Batcher`, a queue that one asyncio worker drains. The worker
  takes the first waiting request, then keeps gathering requests until it holds `max_batch_size` texts or
  `batch_wait_ms` have passed, runs the model once over all their texts in the model thread, and gives each
  request its own rows. Concurrent clients thus share one forward pass; a lone client waits at most
  `batch_wait_ms` more. A request is never split, so one larger than `max_batch_size` runs alone.
- Batched results equal unbatched ones (up to float rounding, < 1e-5): embeddings run on real tokens only
  (embed.py), and classification runs texts with and without a second text in separate calls, since
  `[CLS] A [SEP] [SEP]` is not `[CLS] A [SEP]`.
- One model thread: every forward pass runs in a single worker thread, so requests never fight for cores
  and the event loop keeps answering /health, /ready and bad requests while the model works.
- A batch that fails is run again request by request, so one bad request (a fill-mask text without [MASK])
  gets its own 400 and does not fail the requests batched with it.
- Bad requests get 4xx with {"error": message} that names the field: 400 for JSON that is not an object of
  the expected fields and types (an empty text list, a non-string text, an unknown, missing or repeated
  field), for a text the model would read as nothing (empty, only whitespace, a lone surrogate, or only
  characters the tokenizer drops: it would get the answer for `[CLS] [SEP]`, the same for every such text),
  and for a fill-mask text with [MASK]s past the model's length (the answer would silently lack them); 404
  for an endpoint this folder cannot serve (with the list of those it can), 413 for a body over
  `max_request_bytes` (checked on Content-Length and again while reading) or more than `max_texts` texts.
  Anything else that goes wrong is a logged 500; no request stops the server.
- Loading: `bertkit serve` loads the folder before it starts listening, so a bad folder is a one-line error.
  `app_from_env`, the factory for several worker processes, loads it in the model thread after the worker
  has started: /health answers at once, /ready and the model endpoints say 503 until the model is there (or
  name the error that stopped it).
- The port is bound before the model loads: a port in use is a one-line error at once, and uvicorn serves on
  that very socket, so nothing can take the port in between.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bertkit.errors import BertkitError
from bertkit.finetune.model import TaskModel, task_model
from bertkit.finetune.predict import predict_texts
from bertkit.hf import Checkpoint, load_pretrained
from bertkit.use.batcher import Batcher
from bertkit.use.embed import PRECISIONS, Embedder, load_embedder
from bertkit.use.fill_mask import fill_mask
from bertkit.use.index import VectorIndex
from bertkit.use.paths import AUTO, fastest_embedder
from bertkit.use.requests import RequestError, check_fields, check_text, json_type, read_json, shown, text_list

# uvicorn configures this logger, so our messages come out with its own, in the same format.
log = logging.getLogger("uvicorn.error")
ENV_MODEL = "BERTKIT_SERVE_MODEL"
ENV_PREFIX = "BERTKIT_SERVE_"  # + a ServeConfig field in upper case, e.g. BERTKIT_SERVE_MAX_BATCH_SIZE
BACKENDS = ("torch", "onnxruntime", "openvino")  # of /embed; the graph engines: `onnx_backend`, `openvino_backend`
SERVED_KINDS = {"classification": "/classify", "regression": "/classify", "tagging": "/tag"}  # TaskModel.kind


@dataclass
class ServeConfig:
    """Limits and batching; the `bertkit serve` flags of the same names."""

    max_batch_size: int = 64  # texts in one model call, gathered from concurrent requests
    max_texts: int = 256  # texts in one request; more is a 413
    max_request_bytes: int = 1 << 20  # request body; more is a 413
    batch_wait_ms: float = 5.0  # how long a batch waits for more requests before it runs
    precision: str = "fp32"  # /embed: fp32, bf16 or int8 (Embedder.encode), or auto / auto-exact (`paths`)
    backend: str | None = None  # /embed: torch, onnxruntime or openvino; None: torch, or with auto the fastest
    index: str | None = None  # /search: a `bertkit index` folder built with the served model

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_texts", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise BertkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.batch_wait_ms <= 10_000:
            raise BertkitError(f"--batch-wait-ms must be in 0..10000, got {self.batch_wait_ms}")
        if self.precision not in PRECISIONS + AUTO:
            raise BertkitError(f"--precision {self.precision}: use one of {', '.join(PRECISIONS + AUTO)}")
        if self.backend not in (None, *BACKENDS):
            raise BertkitError(f"--backend {self.backend}: use one of {', '.join(BACKENDS)}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServeConfig:
        """Fields from BERTKIT_SERVE_<FIELD> variables where set, e.g. BERTKIT_SERVE_MAX_TEXTS=64."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if name in environ:
                kind = {"int": int, "float": float}.get(f.type, str) if isinstance(f.type, str) else f.type
                try:
                    values[f.name] = kind(environ[name])
                except ValueError:
                    raise BertkitError(f"{name}={environ[name]!r}: expected {kind.__name__}") from None
        return cls(**values)


# ---- the model ------------------------------------------------------------------------------------------


@dataclass
class ServedModel:
    """What one folder serves. Embeddings and heads share one encoder (one copy of the weights in memory)."""

    folder: str
    embedder: Embedder
    task: TaskModel | None = None  # a fine-tuned classification, regression or tagging folder
    mlm: Checkpoint | None = None  # a folder with an MLM head: fill-mask
    precision: str = "fp32"  # of /embed, as chosen (an OnnxEmbedder for the graph engines)
    backend: str = "torch"  # of /embed, as chosen
    index: VectorIndex | None = None  # /search

    @property
    def endpoints(self) -> list[str]:
        found = ["/embed"]
        if self.mlm is not None:
            found.append("/fill-mask")
        if self.task is not None:
            found.append(SERVED_KINDS[self.task.kind])
        if self.index is not None:
            found.append("/search")
        return found


def load_model(
    folder: str | os.PathLike, precision: str = "fp32", backend: str | None = None, index: str | None = None
) -> ServedModel:
    """The folder's model (`load_folder`) and, with `index`, the index for /search, checked to be this model's."""
    found = VectorIndex.load(index) if index else None
    served = load_folder(folder, precision, backend, found)
    served.index = found
    return served


def load_folder(
    folder: str | os.PathLike, precision: str, backend: str | None, index: VectorIndex | None
) -> ServedModel:
    """A sentence-transformers folder serves /embed; a BERT folder also serves its heads: /fill-mask for an
    MLM head, /classify for a fine-tuned sequence classifier (or regressor), /tag for a token classifier (with
    its CRF, if it has one). Question-answering and multiple-choice heads are not served: their inputs are
    not lists of texts. /embed runs in `precision` on `backend`, made ready (and checked) here."""
    folder = Path(folder)
    if (folder / "modules.json").is_file():
        embedder = load_embedder(folder)
        if index is not None:
            index.check_model(embedder)
        embedder, choice = fastest_embedder(embedder, precision, backend)
        served = ServedModel(str(folder), embedder, None, None, choice.precision, choice.backend)
        run_embed(served, ["warm-up"])  # builds the bf16 copy, the int8 model or the onnxruntime session now
        return served
    ckpt = load_pretrained(folder)
    embedder = load_embedder(folder, checkpoint=ckpt)
    if index is not None:
        index.check_model(embedder)
    task = None
    if set(ckpt.heads) - {"mlm", "nsp"}:  # a fine-tuned head: read as `bertkit predict` reads it
        task = task_model(ckpt, folder).eval()
        if task.kind not in SERVED_KINDS:
            task = None
    embedder, choice = fastest_embedder(embedder, precision, backend)
    mlm = ckpt if "mlm" in ckpt.heads else None
    served = ServedModel(str(folder), embedder, task, mlm, choice.precision, choice.backend)
    run_embed(served, ["warm-up"])
    return served


def run_embed(model: ServedModel, texts: list[str]) -> np.ndarray:
    check_readable(model.embedder.tokenizer, texts, "texts")
    return model.embedder.encode(texts, precision=model.precision)  # (n, dim) float32


def run_search(model: ServedModel, items: list[tuple[str, int]]) -> list[list[dict]]:
    """Each (query, top_k): the index's top_k documents, embedded as /embed embeds (one batch for all)."""
    texts = [text for text, _ in items]
    check_readable(model.embedder.tokenizer, texts, "texts")
    scores, found = model.index.search(run_embed(model, texts), max(k for _, k in items))
    index = model.index
    return [
        [
            {"id": index.ids[j], "score": float(s), "text": index.texts[j]}
            for s, j in list(zip(row_s, row_j, strict=True))[:k]
        ]
        for (_, k), row_s, row_j in zip(items, scores.tolist(), found.tolist(), strict=True)
    ]


def run_classify(model: ServedModel, items: list[tuple[str, str | None]]) -> list[dict]:
    """Texts alone and texts with a pair go in separate calls: a batch with any pair would give the others an
    empty second segment, and results must not depend on what a request was batched with."""
    check_readable(model.embedder.tokenizer, [text for text, _ in items], "texts")
    check_readable(model.embedder.tokenizer, [pair for _, pair in items], "pairs")
    out: list[dict] = [{}] * len(items)
    for with_pair in (False, True):
        idx = [i for i, (_, pair) in enumerate(items) if (pair is not None) == with_pair]
        if not idx:
            continue
        texts = [items[i][0] for i in idx]
        pairs = [items[i][1] for i in idx] if with_pair else None
        for i, record in zip(idx, predict_texts(model.task, model.embedder.tokenizer, texts, pairs), strict=True):
            out[i] = record
    return out


def run_tag(model: ServedModel, texts: list[str]) -> list[dict]:
    check_readable(model.embedder.tokenizer, texts, "texts")
    return predict_texts(model.task, model.embedder.tokenizer, texts)


def run_fill_mask(model: ServedModel, items: list[tuple[str, int]]) -> list[list[list[dict]]]:
    out = []
    for text, top_k in items:
        try:
            check_masks(model.mlm, text)
            masks = fill_mask(model.mlm, text, top_k)
        except BertkitError as e:  # "no [MASK] in ...": said of the request's field
            raise BertkitError(f"'text': {e}") from None
        out.append([[{"token": t, "score": round(p, 6)} for t, p in mask] for mask in masks])
    return out


def check_readable(tokenizer, texts: Sequence[str | None], name: str) -> None:
    """A 400 for a text the tokenizer reads as no tokens at all (only control, zero-width or combining
    characters, which BERT's normalizer drops): the model would answer for `[CLS] [SEP]` alone, the same for
    every such text. Only texts without a letter or digit are tokenized here, since any letter or digit gives
    a token ([UNK] if nothing else). Runs in the model thread on a whole batch: a batch that fails is run
    again request by request, so the index the client sees is the one in its own request."""
    suspects = [i for i, t in enumerate(texts) if t is not None and not any(c.isalnum() for c in t)]
    if not suspects:
        return
    for i, ids in zip(suspects, tokenizer.encode_ids([texts[i] for i in suspects]), strict=True):
        if not ids:
            raise BertkitError(
                f"'{name}'[{i}] has nothing the tokenizer reads (only control, zero-width or combining "
                "characters): send text"
            )


def check_masks(ckpt: Checkpoint, text: str) -> None:
    """fill_mask answers the [MASK]s within the model's length and drops the rest: an answer with fewer lists
    than the text has [MASK]s would leave the client to guess which went missing, so it is refused here.
    (No [MASK] at all, or none within the length, fill_mask refuses itself.)"""
    tok = ckpt.tokenizer
    if tok is None:
        return
    text = text.replace("[MASK]", tok.id_to_token(tok.mask_token_id))  # RoBERTa's <mask>, as fill_mask reads it
    (ids,) = tok.encode_ids([text])  # without [CLS] and [SEP], which take 2 of the model's positions
    total, within = ids.count(tok.mask_token_id), ids[: ckpt.config.max_length - 2].count(tok.mask_token_id)
    if 0 < within < total:
        raise BertkitError(
            f"{total} [MASK]s, of which only the first {within} are within the model's limit of "
            f"{ckpt.config.max_length} tokens; shorten the text"
        )


# ---- the app --------------------------------------------------------------------------------------------


@dataclass
class ServerState:
    """What the handlers share: the model (once loaded), a Batcher per model endpoint, the limits."""

    config: ServeConfig
    folder: str
    model: ServedModel | None = None
    load_error: str | None = None
    batchers: dict[str, Batcher] = field(default_factory=dict)  # kept after shutdown: their counts tell
    running: bool = False  # between start-up and shutdown

    @property
    def ready(self) -> bool:
        return self.model is not None and self.running

    def not_ready(self) -> str:
        if self.load_error:
            return self.load_error
        return f"loading {self.folder}" if self.model is None else "not serving: starting up or shutting down"

    def model_for(self, endpoint: str) -> ServedModel:
        """The model, if it is ready and serves `endpoint`; else a 503 or a 404."""
        if not self.ready:
            raise RequestError(503, self.not_ready())
        if endpoint not in self.model.endpoints:
            reason = {
                "/fill-mask": "has no MLM head",
                "/classify": "is not a fine-tuned sequence classifier or regressor",
                "/tag": "is not a fine-tuned token classifier",
                "/search": "is served without an index (--index)",
            }[endpoint]
            raise RequestError(
                404, f"{endpoint} is not available: {self.folder} {reason}; it serves {', '.join(self.model.endpoints)}"
            )
        return self.model

    async def submit(self, endpoint: str, items: list) -> Sequence:
        return await self.batchers[endpoint].submit(items)


def create_app(model: ServedModel | str | os.PathLike, config: ServeConfig | None = None) -> Starlette:
    """The ASGI app. Given a loaded `ServedModel` it is ready once started; given a folder, it loads the
    folder in the model thread after start-up (see the module docstring)."""
    config = config or ServeConfig()
    loaded = isinstance(model, ServedModel)
    state = ServerState(config, model.folder if loaded else str(model), model if loaded else None)
    runners = {"/embed": run_embed, "/classify": run_classify, "/tag": run_tag, "/fill-mask": run_fill_mask}
    runners["/search"] = run_search

    async def load(executor: Executor) -> None:
        try:
            state.model = await asyncio.get_running_loop().run_in_executor(
                executor, load_model, state.folder, config.precision, config.backend, config.index
            )
            log.info("loaded %s: %s", state.folder, ", ".join(state.model.endpoints))
        except BertkitError as e:
            state.load_error = f"cannot load {state.folder}: {e}"
            log.error("%s", state.load_error)
        except Exception as e:  # noqa: BLE001 - reported by /ready rather than lost in a background task
            state.load_error = f"cannot load {state.folder}: {type(e).__name__}: {e}"
            log.exception("loading %s", state.folder)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertkit-model")
        tasks = [] if state.model is not None else [asyncio.create_task(load(executor))]
        for endpoint, runner in runners.items():
            batcher = Batcher(
                lambda items, runner=runner: runner(state.model, items),
                config.max_batch_size,
                config.batch_wait_ms / 1000,
            )
            state.batchers[endpoint] = batcher
            tasks.append(asyncio.create_task(batcher.work(executor)))
        state.running = True
        try:
            yield
        finally:
            state.running = False
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            executor.shutdown(wait=False, cancel_futures=True)

    async def embed(request: Request) -> Response:
        model = state.model_for("/embed")
        body = await read_json(request, config.max_request_bytes)
        check_fields(body, ("texts",))
        vectors = await state.submit("/embed", text_list(body, "texts", config.max_texts))
        return JSONResponse({"vectors": vectors.tolist(), "dim": model.embedder.dim})

    async def classify(request: Request) -> Response:
        state.model_for("/classify")
        body = await read_json(request, config.max_request_bytes)
        check_fields(body, ("texts",), ("pairs",))
        texts = text_list(body, "texts", config.max_texts)
        pairs: list[str | None] = [None] * len(texts)
        if "pairs" in body:
            pairs = text_list(body, "pairs", config.max_texts)
            if len(pairs) != len(texts):
                raise RequestError(400, f"{len(pairs)} pairs for {len(texts)} texts: give one second text per text")
        results = await state.submit("/classify", list(zip(texts, pairs, strict=True)))
        return JSONResponse({"results": list(results)})

    async def tag(request: Request) -> Response:
        state.model_for("/tag")
        body = await read_json(request, config.max_request_bytes)
        check_fields(body, ("texts",))
        results = await state.submit("/tag", text_list(body, "texts", config.max_texts))
        return JSONResponse({"results": list(results)})

    async def search(request: Request) -> Response:
        model = state.model_for("/search")
        body = await read_json(request, config.max_request_bytes)
        check_fields(body, ("texts",), ("top_k",))
        texts = text_list(body, "texts", config.max_texts)
        top_k = whole_number(body.get("top_k", 10), "top_k", len(model.index.ids))
        results = await state.submit("/search", [(t, top_k) for t in texts])
        return JSONResponse({"results": list(results)})

    async def fill_mask_endpoint(request: Request) -> Response:
        model = state.model_for("/fill-mask")
        body = await read_json(request, config.max_request_bytes)
        check_fields(body, ("text",), ("top_k",))
        text, top_k = body["text"], body.get("top_k", 5)
        if not isinstance(text, str):
            raise RequestError(400, f"'text' must be a string, got {json_type(text)}")
        check_text(text, "'text'")
        top_k = whole_number(top_k, "top_k", model.mlm.config.vocab_size)
        (masks,) = await state.submit("/fill-mask", [(text, top_k)])
        return JSONResponse({"text": text, "masks": masks})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        if not state.ready:
            return JSONResponse({"ready": False, "error": state.not_ready()}, 503)
        return JSONResponse({"ready": True, "model": state.folder, "endpoints": state.model.endpoints})

    async def http_error(request: Request, exc: Exception) -> Response:  # 404 / 405 from routing, as JSON
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": f"{request.method} {shown(request.url.path)}: {exc.detail}"}, exc.status_code)

    routes = [
        Route("/embed", answer(embed), methods=["POST"]),
        Route("/classify", answer(classify), methods=["POST"]),
        Route("/tag", answer(tag), methods=["POST"]),
        Route("/fill-mask", answer(fill_mask_endpoint), methods=["POST"]),
        Route("/search", answer(search), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
    app.state.server = state  # for tests and for whoever embeds the app
    return app


def whole_number(value, name: str, high: int) -> int:
    """A JSON number that is a whole number in 1..high (5.0 is 5: JSON has one kind of number), else a 400."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        got = shown(json.dumps(value)) if isinstance(value, (int, float)) else json_type(value)
        raise RequestError(400, f"'{name}' must be a whole number in 1..{high}, got {got}")
    return value


def answer(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Errors as JSON: a RequestError with its status, a BertkitError (the model refused the input) as 400,
    anything else as a logged 500."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestError as e:
            return JSONResponse({"error": e.message}, e.status)
        except BertkitError as e:
            return JSONResponse({"error": shown(str(e), 2000)}, 400)
        except ClientDisconnect:
            return Response(status_code=499)  # nobody reads it: the client has gone
        except Exception as e:  # noqa: BLE001 - the server answers and goes on
            log.exception("%s %s", request.method, request.url.path)
            return JSONResponse({"error": shown(f"internal error: {type(e).__name__}: {e}", 2000)}, 500)

    return endpoint


def app_from_env() -> Starlette:
    """The app factory for several worker processes, each with its own copy of the model:

        BERTKIT_SERVE_MODEL=FOLDER uvicorn bertkit.use.serve:app_from_env --factory --workers 4 --port 8000

    Limits come from BERTKIT_SERVE_MAX_BATCH_SIZE, _MAX_TEXTS, _MAX_REQUEST_BYTES and _BATCH_WAIT_MS; /embed's
    precision and backend from BERTKIT_SERVE_PRECISION and _BACKEND.
    """
    folder = os.environ.get(ENV_MODEL)
    if not folder:
        raise BertkitError(f"set {ENV_MODEL} to the model folder to serve")
    if not Path(folder).is_dir():
        raise BertkitError(f"{ENV_MODEL}={folder}: no such model folder")
    return create_app(folder, ServeConfig.from_env())


# ---- running --------------------------------------------------------------------------------------------


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (port 0: any free port); a port in use is a one-line BertkitError."""
    if not 0 <= port <= 65535:
        raise BertkitError(f"--port must be in 0..65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a restart need not wait out TIME_WAIT; a port that something listens on stays refused.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise BertkitError(
                f"port {port} on {host} is already in use; stop what holds it or pick another --port"
            ) from None
        raise BertkitError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def serve(folder: str, host: str, port: int, config: ServeConfig) -> None:
    """Bind, load, then serve until Ctrl-C / SIGTERM."""
    import uvicorn

    sock = bind_socket(host, port)
    try:
        model = load_model(folder, config.precision, config.backend, config.index)
        app = create_app(model, config)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        print(
            f"serving {folder} ({', '.join(model.endpoints)}) on http://{shown}:{bound_port}; "
            f"batches of up to {config.max_batch_size} texts, {config.batch_wait_ms:g} ms wait; "
            f"/embed in {model.precision} on {model.backend}"
            + (f" (--precision {config.precision})" if config.precision != model.precision else ""),
            file=sys.stderr,
            flush=True,
        )
        uvicorn.Server(uvicorn.Config(app, log_level="info", lifespan="on")).run(sockets=[sock])
    finally:
        sock.close()
