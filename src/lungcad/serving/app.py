"""The FastAPI application: the page at ``/``, the versioned API under ``/api/v1``, docs at ``/docs``.

Build it with :func:`create_app`; ``lungcad serve`` runs it under uvicorn. Models are loaded
once, here; decoding and prediction run in worker threads so the event loop keeps answering.

Uploads: the request body is capped (:mod:`lungcad.serving.limits`) before and while it is read.
Starlette keeps a file part in memory up to 1 MB and spools the rest to an anonymous temporary
file (unlinked when created: private to this process, gone when the request ends); the image is
then decoded from bytes in memory. The client's file name is only a format hint for headerless
JSRT files and a label in messages, never a path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Sequence

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lungcad.disclaimer import DISCLAIMER
from lungcad.errors import LungcadError
from lungcad.inference import load_model
from lungcad.serving.heatmap import HeatmapUnavailable
from lungcad.serving.limits import BodySizeLimitMiddleware
from lungcad.serving.service import (ApiError, ServedModel, decode_upload, display_fields,
                                     heatmap_fields, predict_payload, unique_ids)
from lungcad.serving.settings import ServeSettings
from lungcad.version import __version__

STATIC_DIR = Path(__file__).parent / "static"
API = "/api/v1"
log = logging.getLogger("lungcad.serving")


class ErrorResponse(BaseModel):
    error: str


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str
    modality: str
    notes: list[str]


class PredictResponse(BaseModel):
    # Also one ``prob_<class>`` field per class, hence extra fields allowed.
    model_config = ConfigDict(extra="allow")
    model: str
    model_version: str
    task: str
    probabilities: dict[str, float]
    label: str
    threshold: float | None
    image: ImageInfo
    heatmap_png: str | None = None
    heatmap_method: str | None = None
    heatmap_error: str | None = None  # why a heatmap asked for is absent


class ModelInfoResponse(BaseModel):
    id: str
    name: str
    version: str
    task: str
    architecture: str
    classes: list[str]
    threshold: float | None
    threshold_rule: str
    modality: str
    input_size: int
    runtime: str
    heatmaps: bool
    card: str


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelInfoResponse]


class HealthResponse(BaseModel):
    status: str
    version: str
    models: list[str]
    disclaimer: str


_ERRORS = {status: {"model": ErrorResponse, "description": text} for status, text in [
    (400, "The request body could not be parsed"),
    (404, "Unknown model"),
    (413, "Upload over the size limit"),
    (422, "Missing field, or an image that cannot be read or used (empty, not an image, "
          "truncated, too many pixels, blank, values out of range)"),
]}


def create_app(models: Sequence[Any], settings: ServeSettings | None = None) -> FastAPI:
    """The web app serving ``models``: loaded :class:`~lungcad.model_dir.LungModel` objects, or
    names/paths loaded here with ``settings.runtime``. The first model is the default."""
    settings = settings or ServeSettings()
    loaded = [load_model(m, settings.runtime, settings.threads)
              if isinstance(m, (str, Path)) else m for m in models]
    if not loaded:
        raise LungcadError("no model to serve; pass at least one model directory")
    served = {mid: ServedModel(mid, m, workers=settings.inference_workers)
              for mid, m in zip(unique_ids([m.spec.name for m in loaded]), loaded)}
    default_id = next(iter(served))

    app = FastAPI(title="lungcad", version=__version__, docs_url=None, redoc_url=None,
                  description="Signs of lung cancer in chest radiographs and lung CT slices. "
                              + DISCLAIMER)
    app.state.settings = settings
    app.state.served = served
    _install_error_handlers(app)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _install_docs(app)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get(f"{API}/health", response_model=HealthResponse, tags=["service"])
    def health() -> dict:
        """Whether the server is up, and which models it serves."""
        return {"status": "ok", "version": __version__, "models": list(served),
                "disclaimer": DISCLAIMER}

    @app.get(f"{API}/models", response_model=ModelsResponse, tags=["service"])
    def list_models() -> dict:
        """The models served: classes, decision threshold, modality and model card."""
        return {"default": default_id, "models": [s.describe() for s in served.values()]}

    @app.post(f"{API}/predict", response_model=PredictResponse, responses=_ERRORS,
              tags=["predict"])
    async def predict(
        file: Annotated[UploadFile, File(description="One image: PNG, JPEG, TIFF, BMP, DICOM, "
                                         "JSRT raw .IMG or .npy; the format is read from the "
                                         "content, not the name")],
        model_field: Annotated[str | None, Form(alias="model", description="Model id "
                                                "(default: the first served model)")] = None,
        heatmap_field: Annotated[bool | None, Form(alias="heatmap",
                                                   description="Add a heatmap")] = None,
        model_query: Annotated[str | None, Query(alias="model", description="Model id, as a "
                                                 "query parameter")] = None,
        heatmap_query: Annotated[bool, Query(alias="heatmap", description="Add a heatmap "
                                             "(base64 PNG of the image with the saliency map "
                                             "blended in)")] = False,
        display: Annotated[bool, Query(description="Also return the image as read "
                                       "(image_png) and the heatmap layer alone "
                                       "(heatmap_layer_png), shrunk for display: the web page "
                                       "uses these")] = False,
    ) -> JSONResponse:
        """Predict one image. Research output, not a diagnosis."""
        model_id = model_field or model_query or default_id
        if model_id not in served:
            raise ApiError(404, f"unknown model {model_id!r}; this server serves: "
                                f"{', '.join(served)} (see {API}/models)")
        chosen = served[model_id]
        want_heatmap = heatmap_field if heatmap_field is not None else heatmap_query
        data = await file.read()  # bounded by BodySizeLimitMiddleware
        # Decoding runs on the model's threads too: beside a prediction that already keeps every
        # core busy, a concurrent decode would only preempt PyTorch's threads (which then wait
        # for each other), and it bounds the memory that decoded images take.
        image = await chosen.run(decode_upload, data, file.filename, chosen, settings.max_pixels)
        del data
        payload = await chosen.run(predict_payload, chosen, image)
        if want_heatmap:
            try:
                heat = await chosen.run(chosen.heatmaps.saliency, image.array)
            except HeatmapUnavailable as error:
                # The prediction stands; the answer says why it comes without a heatmap.
                payload["heatmap_error"] = str(error)
            else:
                payload.update(await run_in_threadpool(heatmap_fields, chosen, image.array,
                                                       heat, settings.display_side, display))
        if display:
            payload.update(await run_in_threadpool(display_fields, image.array,
                                                   settings.display_side))
        return JSONResponse(payload)

    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"error": message}``, with a message a person can act on."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(LungcadError)
    async def lungcad_error(_: Request, exc: LungcadError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 400 and "parsing the body" in message:
            message = ("could not parse the request body: send the image as multipart/form-data "
                       "with the file in a field named 'file'")
        elif exc.status_code == 404:
            message = f"not found; the API is under {API} (see /docs)"
        return JSONResponse({"error": message}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": describe_validation_errors(exc.errors())}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while answering a request")
        return JSONResponse({"error": "internal error; see the server's log"}, status_code=500)


def describe_validation_errors(errors: Sequence[dict]) -> str:
    parts = []
    for error in errors:
        where = error.get("loc", ())
        field = str(where[-1]) if where else "request"
        if error.get("type") == "missing" and field == "file":
            parts.append("missing field 'file': send the image as multipart/form-data with the "
                         "file in a field named 'file'")
        elif error.get("type") == "missing":
            parts.append(f"missing field {field!r}")
        elif field == "file":
            parts.append("field 'file' must be a file upload (multipart/form-data with a "
                         "filename), not a text value")
        else:
            parts.append(f"invalid {field!r}: {error.get('msg', 'invalid value')}")
    return "; ".join(parts) or "invalid request"


def _install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from a locally installed copy (no CDN), where one is installed."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # keep /docs, loading Swagger UI from its CDN as FastAPI does
        assets = None
    else:
        assets = "/docs-assets"
        app.mount(assets, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if assets is None:
            return get_swagger_ui_html(openapi_url=app.openapi_url, title="lungcad API")
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="lungcad API",
                                   swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets}/swagger-ui.css",
                                   swagger_favicon_url=f"{assets}/favicon-32x32.png")


_PAGE_CSP = (b"default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
             b"style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
             b"frame-ancestors 'none'; form-action 'self'")


class SecurityHeadersMiddleware:
    """nosniff everywhere; a strict Content-Security-Policy on the page and its assets (the
    Swagger page needs its inline script, so it gets none)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        strict = not scope["path"].startswith("/docs")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                if strict:
                    headers.append((b"content-security-policy", _PAGE_CSP))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
