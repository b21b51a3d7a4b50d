"""Heatmaps reuse one explainer per served model: many heatmap requests leave no copies of the
network behind (each copy carries Grad-CAM hooks and costs the network's size in memory)."""

from __future__ import annotations

import gc

REQUESTS = 30


def live_instances(cls) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is cls)


def hooked_modules(cls) -> int:
    """Modules that carry forward or backward hooks, in the networks of class ``cls``."""
    gc.collect()
    return sum(1 for net in gc.get_objects() if type(net) is cls
               for module in net.modules() if module._forward_hooks or module._backward_hooks)


def test_many_heatmap_requests_keep_one_network_copy(binary_model_dir, png_bytes):
    from fastapi.testclient import TestClient

    from lungcad import load_model
    from lungcad.serving import ServeSettings, create_app

    model = load_model(binary_model_dir)
    network_class = type(model.network)
    app = create_app([model], ServeSettings())

    def heatmap(client) -> None:
        response = client.post("/api/v1/predict", params={"heatmap": "true"},
                               files={"file": ("x.png", png_bytes)})
        assert response.status_code == 200 and "heatmap_png" in response.json(), response.text

    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        heatmap(client)  # the first request builds the model's explainer (one private copy)
        copies, hooks = live_instances(network_class), hooked_modules(network_class)
        for _ in range(REQUESTS):
            heatmap(client)
        assert live_instances(network_class) == copies, "a network copy left per request"
        assert hooked_modules(network_class) == hooks, "Grad-CAM hooks left per request"
    assert not any(m._forward_hooks or m._backward_hooks for m in model.network.modules()), (
        "the network that serves predictions must never carry hooks")
