"""Concurrent requests on the real server (uvicorn, worker threads): every answer is the one the
same request gets alone, with heatmaps (hooked network copies) and plain predictions mixed, on
two models at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serving_data import encode, synthetic_image


def test_concurrent_answers_equal_sequential_ones(live_server):
    images = [encode(synthetic_image(seed=seed), "PNG") for seed in range(4)]
    requests = [(image, model, heatmap) for image in images
                for model in ("test-ct-binary", "test-ct-3class") for heatmap in (False, True)]

    def ask(client: httpx.Client, request) -> dict:
        image, model, heatmap = request
        response = client.post(f"{live_server}/api/v1/predict",
                               params={"model": model, "heatmap": str(heatmap).lower()},
                               files={"file": ("x.png", image)}, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()

    with httpx.Client() as client:
        alone = [ask(client, request) for request in requests]
    with httpx.Client(limits=httpx.Limits(max_connections=8)) as client, \
            ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda request: ask(client, request), requests * 2))

    for i, body in enumerate(together):
        expected = alone[i % len(requests)]
        assert body["model"] == expected["model"] and body["label"] == expected["label"]
        assert body["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)
        # Saliency maps computed under concurrency are the same pictures.
        assert body.get("heatmap_png") == expected.get("heatmap_png")
