"""A small HTTP client for the serving API (CLI, bench and tests use it; any HTTP client works)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

__all__ = ["ServeClient", "ServeHTTPError"]


class ServeHTTPError(RuntimeError):
    """A non-2xx answer; ``status`` and the server's one-line ``error`` message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class ServeClient:
    """Calls one ingress at ``url``; ``token`` is sent as a bearer token when given."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _json(self, resp: Any) -> Any:
        if resp.status_code >= 300:
            try:
                msg = resp.json().get("error", resp.text)
            except ValueError:
                msg = resp.text
            raise ServeHTTPError(resp.status_code, str(msg))
        return resp.json()

    def predict(self, *, inputs: Any = None, spikes: Any = None, version: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"version": version} if version else {}
        if inputs is not None:
            body["inputs"] = np.asarray(inputs).tolist()
        if spikes is not None:
            body["spikes"] = np.asarray(spikes).tolist()
        return self._json(self.http.post("/v1/predict", json=body))

    def predict_npy(self, arr: np.ndarray, form: str = "spikes", version: str | None = None) -> dict[str, Any]:
        buf = io.BytesIO()
        np.save(buf, np.asarray(arr), allow_pickle=False)
        params = {"form": form} | ({"version": version} if version else {})
        return self._json(self.http.post("/v1/predict.npy", content=buf.getvalue(), params=params,
                                         headers={"content-type": "application/octet-stream"}))

    def feedback(self, request_id: str, labels: list[int]) -> dict[str, Any]:
        return self._json(self.http.post("/v1/feedback", json={"request_id": request_id, "labels": labels}))

    def deploy(self, model_id: str, **kw: Any) -> dict[str, Any]:
        return self._json(self.http.post("/admin/deploy", json={"model_id": model_id} | kw, timeout=240))

    def traffic(self, version: str, role: str, weight: float | None = None) -> dict[str, Any]:
        body = {"version": version, "role": role} | ({"weight": weight} if weight is not None else {})
        return self._json(self.http.post("/admin/traffic", json=body))

    def rollback(self, version: str | None = None, reason: str = "manual") -> dict[str, Any]:
        return self._json(self.http.post("/admin/rollback", json={"version": version, "reason": reason}))

    def status(self) -> dict[str, Any]:
        return self._json(self.http.get("/admin/status"))

    def snapshot(self, version: str | None = None) -> dict[str, Any]:
        return self._json(self.http.post("/admin/snapshot", json={"version": version}))

    def metrics(self) -> str:
        r = self.http.get("/metrics")
        r.raise_for_status()
        return r.text
