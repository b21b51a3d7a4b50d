"""The FastAPI application: the page at ``/``, the versioned API under ``/api/v1``, docs at ``/docs``.

Build it with :func:`create_app`; ``lungcad serve`` runs it under uvicorn. Models are loaded
once, here; decoding and prediction run in worker threads so the event loop keeps answering.

Requests: only for the host names configured, and no POSTs from other sites
(:mod:`lungcad.serving.guards`). Uploads: the request body is capped in size and in time
(:mod:`lungcad.serving.limits`) before and while it is read; at most ``max_in_flight`` requests
per model are admitted, the rest answered 503 with Retry-After. Starlette keeps a file part
in memory up to 1 MB and spools the rest to an anonymous temporary
file (unlinked when created: private to this process, gone when the request ends); the image is
then decoded from bytes in memory. The client's file name is only a format hint for headerless
JSRT files and a label in messages, never a path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Sequence, Union

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lungcad.disclaimer import DISCLAIMER
from lungcad.errors import LungcadError, excerpt
from lungcad.inference import load_model
from lungcad.serving.guards import (RequestGuardMiddleware, SecurityHeadersMiddleware,
                                    allowed_host_names)
from lungcad.serving.limits import BodySizeLimitMiddleware, BodyTimeoutMiddleware
from lungcad.serving.loading import runtime_for
from lungcad.serving.lungs import lungs_fields, lungs_model_id
from lungcad.serving.pipeline import AUTO, analyse, auto_model_id, modality_answer
from lungcad.serving.schemas import (ERRORS, HealthResponse, ModalityResponse, ModelsResponse,
                                     PredictResponse, SegmentationResponse)
from lungcad.serving.service import (ApiError, ServedModel, display_fields, heatmap_fields,
                                     unique_ids)
from lungcad.serving.settings import ServeSettings
from lungcad.version import __version__

STATIC_DIR = Path(__file__).parent / "static"
API = "/api/v1"
log = logging.getLogger("lungcad.serving")


def create_app(models: Sequence[Any], settings: ServeSettings | None = None) -> FastAPI:
    """The web app serving ``models``: loaded :class:`~lungcad.lung_model.LungModel` objects, or
    names/paths loaded here with ``settings.runtime``. The first model is the default."""
    settings = settings or ServeSettings()
    loaded = [load_model(m, runtime_for(m, settings.runtime), settings.threads)
              if isinstance(m, (str, Path)) else m for m in models]
    if not loaded:
        raise LungcadError("no model to serve; pass at least one model directory")
    served = {mid: ServedModel(mid, m, workers=settings.inference_workers,
                               max_in_flight=settings.max_in_flight)
              for mid, m in zip(unique_ids([m.spec.name for m in loaded]), loaded)}
    # the default: each image to the first served model of its modality (model=auto), where
    # a classifier or detector is served
    default_id = (AUTO if any(s.kind != "segmenter" for s in served.values())
                  else next(iter(served)))
    lungs_id = lungs_model_id(served)

    app = FastAPI(title="lungcad", version=__version__, docs_url=None, redoc_url=None,
                  description="Signs of lung cancer in chest radiographs and lung CT slices. "
                              + DISCLAIMER)
    app.state.settings = settings
    app.state.served = served
    _install_error_handlers(app)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.body_timeout_s)
    # Outermost (added last): a request for another host name or from another site goes no
    # further.
    app.add_middleware(RequestGuardMiddleware,
                       allowed_hosts=allowed_host_names(settings.host, settings.allowed_hosts))
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
        return {"default": default_id, "models": [s.describe() for s in served.values()],
                "lungs_model": lungs_id}

    @app.post(f"{API}/modality", response_model=ModalityResponse, responses=ERRORS,
              response_model_exclude_none=True, tags=["predict"])
    async def modality(request: Request,
                       file: Annotated[UploadFile, File(description="One image")]) -> dict:
        """Radiograph or CT slice (DICOM Modality tag, else the shipped image classifier), and
        the served models of that modality: what the page's automatic choice runs. An image
        that is neither (a photograph, a gradient) gets no model and the ``reason``. One image
        per request, as for `/predict`."""
        await _refuse_several_files(request)
        data = await file.read()
        return await run_in_threadpool(modality_answer, served, data, file.filename, settings)

    @app.post(f"{API}/predict", response_model=Union[PredictResponse, SegmentationResponse],
              responses=ERRORS, tags=["predict"])
    async def predict(
        request: Request,
        file: Annotated[UploadFile, File(description="One image: PNG, JPEG, TIFF, BMP, DICOM, "
                                         "JSRT raw .IMG or .npy; the format is read from the "
                                         "content, not the name")],
        model_field: Annotated[str | None, Form(alias="model", description="Model id, or "
                                                "auto (the default): the first served model "
                                                "of the image's modality")] = None,
        heatmap_field: Annotated[bool | None, Form(alias="heatmap",
                                                   description="Add a heatmap")] = None,
        model_query: Annotated[str | None, Query(alias="model", description="Model id, as a "
                                                 "query parameter")] = None,
        heatmap_query: Annotated[bool, Query(alias="heatmap", description="Add a heatmap "
                                             "(base64 PNG of the image with the saliency map "
                                             "blended in)")] = False,
        lungs_field: Annotated[bool | None, Form(alias="lungs", description="Add the lung "
                                                 "outline")] = None,
        lungs_query: Annotated[bool, Query(alias="lungs", description="Add the lung outline "
                                           "of the served segmentation model (lungs_png, a "
                                           "transparent layer the size of image_png) to a "
                                           "classifier's answer")] = False,
        frame_field: Annotated[int | None, Form(alias="frame", ge=0, description="For a "
                                                "multi-frame file (DICOM cine, multi-page "
                                                "TIFF): the frame to analyse, from 0")] = None,
        frame_query: Annotated[int | None, Query(alias="frame", ge=0, description="The frame "
                                                 "of a multi-frame file, from 0 (as the form "
                                                 "field)")] = None,
        age: Annotated[str | None, Form(description="A detector's malignancy with age and "
                                        "sex: the patient's age in years (or DICOM 063Y); "
                                        "default the DICOM's PatientAge")] = None,
        sex: Annotated[str | None, Form(description="As age: M or F; default the DICOM's "
                                        "PatientSex")] = None,
        display: Annotated[bool, Query(description="Also return the image as read "
                                       "(image_png) and the heatmap layer alone "
                                       "(heatmap_layer_png), shrunk for display: the web page "
                                       "uses these")] = False,
    ) -> JSONResponse:
        """Predict one image. Research output, not a diagnosis.

        A **classifier** answers with class probabilities (`probabilities`, one `prob_<class>`
        per class), the `label` at the model's `threshold`, and on request a heatmap. With
        `lungs=true` it also gets the lung outline of the served segmentation model
        (`lungs_model`, see `/api/v1/models`): `lungs_png` (base64 RGBA PNG, transparent but
        for the outline, the size of `image_png`), `lungs_measures`, `lungs_warnings`,
        `lungs_plausible`; or `lungs_error` saying why there is none.

        A **detector** (`kind` "detector", `marks` true in `/api/v1/models`) answers as a
        classifier does, from the same single pass of its network, plus `findings`: its nodule
        marks, strongest first, each `{x, y, radius_mm, radius_px, score, malignancy}` in the
        uploaded image's own pixel coordinates (x = column, y = row; the frame is
        `image.width` x `image.height`), with `mm_per_pixel` and `findings_warnings` (an
        assumed pixel spacing...), the image-only `malignancy` and, where the model has an
        age/sex model, `malignancy_age_sex` (from the `age` and `sex` fields, else the DICOM's
        PatientAge/PatientSex; `age_sex_note` says which were missing); nonsense ages or
        sexes are refused (422). Served on ONNX Runtime it marks nodules the same way, from
        the exported cell maps; an ONNX file without them (an older export) gives no marks, and
        `findings_error` (and a note) says why. A classifier's answer has no `findings`.

        A **segmentation model** (`kind` "segmenter" in `/api/v1/models`) answers with
        `{"kind": "segmentation", "plausible", "measures", "warnings", "mask_png",
        "overlay_png", "image", ...}`: `mask_png` is the lung mask at the image's own size
        (8-bit gray, 255 = lung), `overlay_png` the image with each lung's outline and measures
        (shrunk for display), `measures` per side (the patient's: on a PA view the right lung
        is on the image's left) `right_area_px`, `right_height_px`, `left_area_px`,
        `left_height_px`, `lung_fraction`, and `*_area_mm2` / `*_height_mm` where the pixel
        spacing is known (DICOM). `warnings` is non-empty, and `plausible` false, where no
        plausible pair of lungs is found (a CT slice, a lateral view): do not trust that mask.
        With `display=true` it adds `image_png` and the outline layer `lungs_png`. `heatmap`
        and `lungs` are ignored for a segmentation model.

        One image per request, in one `file` field. A multi-frame file (DICOM with several
        frames, multi-page TIFF) needs `frame`. `image.notes` lists what the reader or the model
        noticed (ignored transparency, an aspect ratio the model squeezes...). Each model takes
        a bounded number of requests at once: beyond it the answer is 503 with `Retry-After`.
        """
        model_id = model_field or model_query or default_id
        auto = None
        if model_id == AUTO:  # the image's modality picks the model (as the page's Automatic)
            model_id, auto = await run_in_threadpool(auto_model_id, served, await file.read(),
                                                     file.filename, settings)
            await file.seek(0)
        if model_id not in served:
            raise ApiError(404, f"unknown model {excerpt(model_id)}; this server serves: "
                                f"{', '.join(served)} (see {API}/models)")
        await _refuse_several_files(request)
        chosen = served[model_id]
        want_heatmap = heatmap_field if heatmap_field is not None else heatmap_query
        want_lungs = lungs_field if lungs_field is not None else lungs_query
        frame = frame_field if frame_field is not None else frame_query
        chosen.admit(request.client)  # or 503 with Retry-After
        try:
            data = await file.read()  # bounded by BodySizeLimitMiddleware
            # Decoding runs on the model's threads too, in the same job as the prediction and
            # the saliency map: beside a prediction that already keeps every core busy, a
            # concurrent decode would only preempt PyTorch's threads, and one job per request
            # keeps its decoded image from waiting in memory behind other requests.
            done = await chosen.run(analyse, chosen, data, file.filename, settings, frame,
                                    want_heatmap and chosen.kind != "segmenter", display,
                                    (age, sex))
            del data
            payload, image = done.payload, done.image
            if auto is not None:
                payload["auto"] = {k: auto[k] for k in ("modality", "source", "models")}
            if chosen.kind != "segmenter" and want_lungs:
                payload.update(await _lungs(served.get(lungs_id) if lungs_id else None, chosen,
                                            image, settings.display_side))
            if done.heat_error is not None:
                payload["heatmap_error"] = done.heat_error
            elif done.heat is not None:
                payload.update(await run_in_threadpool(heatmap_fields, chosen, image.array,
                                                       done.heat, settings.display_side, display))
            if display:
                payload.update(await run_in_threadpool(display_fields, image.array,
                                                       settings.display_side))
            return JSONResponse(payload)
        finally:
            chosen.release()

    return app


async def _refuse_several_files(request: Request) -> None:
    files = (await request.form()).getlist("file")  # parsed already: FastAPI caches it
    if len(files) > 1:
        raise ApiError(422, f"the request holds {len(files)} files in the field 'file'; send "
                            "one image per request")


# Longer messages are cut: an error never echoes much of what a client sent.
MAX_MESSAGE = 1000


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return message[:MAX_MESSAGE] + f"... (message cut at {MAX_MESSAGE} characters)"


def _multipart_problem(exc: BaseException) -> str | None:
    """What python-multipart found wrong, where Starlette says only "Invalid multipart data."."""
    seen = 0
    while exc is not None and seen < 10:
        if type(exc).__name__ == "MultipartParseError":
            return str(exc)
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


async def _lungs(lungs: ServedModel | None, chosen: ServedModel, image, display_side: int) -> dict:
    """The lung outline for a classifier's answer, from the served segmenter, which counts it
    among its requests in flight (a busy segmenter means no outline, not a refused request)."""
    if lungs is None:
        return await chosen.run(lungs_fields, None, image, display_side)
    if lungs is not chosen:
        try:
            lungs.admit()
        except ApiError:
            return {"lungs_error": f"no lung outline: the lung model {lungs.id!r} is busy; "
                                   "ask again later"}
    try:
        return await lungs.run(lungs_fields, lungs, image, display_side)
    finally:
        if lungs is not chosen:
            lungs.release()


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"error": message}``, with a message a person can act on."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": _bounded(exc.message)}, status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(LungcadError)
    async def lungcad_error(_: Request, exc: LungcadError) -> JSONResponse:
        return JSONResponse({"error": _bounded(str(exc))}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 400 and "parsing the body" in message:
            message = ("could not parse the request body: send the image as multipart/form-data "
                       "with the file in a field named 'file'")
        elif exc.status_code == 400 and "header size" in (_multipart_problem(exc) or ""):
            message = ("the file name is too long (a part of the upload has a header line over "
                       "4 KB, which holds the file name): rename the file to a shorter name and "
                       "send it again")
        elif exc.status_code == 404:
            message = f"not found; the API is under {API} (see /docs)"
        return JSONResponse({"error": _bounded(message)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": _bounded(describe_validation_errors(exc.errors()))},
                            status_code=422)

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
