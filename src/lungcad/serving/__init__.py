"""The web page and REST API (``lungcad serve``): :func:`create_app` builds the FastAPI app."""

from lungcad.serving.settings import ServeSettings


def create_app(models, settings: ServeSettings | None = None):
    """See :func:`lungcad.serving.app.create_app` (imported on use: FastAPI is not light)."""
    from lungcad.serving.app import create_app as _create_app

    return _create_app(models, settings)


__all__ = ["ServeSettings", "create_app"]
