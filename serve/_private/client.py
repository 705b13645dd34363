"""A small HTTP client for the serving API (CLI, bench and tests use it; any HTTP client works)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["ServeClient", "ServeHTTPError", "StreamSession"]


class ServeHTTPError(RuntimeError):
    """A non-2xx answer; ``status`` and the server's one-line ``error`` message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class StreamSession:
    """One open streaming session: ``send`` a chunk, get the decision with its per-frame latency."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        try:
            self.hello = json.loads(ws.recv())
        except Exception as exc:  # the server closed at once: say why (close code and reason)
            rcvd = getattr(ws, "close_rcvd", None)
            code, reason = (rcvd.code, rcvd.reason) if rcvd is not None else (None, str(exc))
            raise ServeHTTPError(int(code or 0), f"stream refused: {reason}") from None
        self.id = self.hello["session"]

    def send(self, *, spikes: Any = None, inputs: Any = None, reset: bool = False,
             frame: int | None = None) -> dict[str, Any]:
        """Send one chunk (``spikes [T, n_in]`` or one raw sample ``inputs``), or just ``reset``."""
        msg: dict[str, Any] = {"reset": True} if reset else {}
        if spikes is not None:
            msg["spikes"] = np.asarray(spikes).tolist()
        if inputs is not None:
            msg["inputs"] = np.asarray(inputs).tolist()
        if frame is not None:
            msg["frame"] = frame
        self.ws.send(json.dumps(msg))
        return json.loads(self.ws.recv())


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

    def snapshot(self, version: str | None = None, labelled: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"version": version} | ({"labelled": True} if labelled else {})
        return self._json(self.http.post("/admin/snapshot", json=body))

    @contextlib.contextmanager
    def stream(self, version: str | None = None, *, open_timeout: float = 10.0) -> Iterator[StreamSession]:
        """A streaming session on ``/v1/stream`` (WebSocket, the ``websockets`` package); closed on exit,
        which frees its network state on the server."""
        from websockets.sync.client import connect

        url = "ws" + self.url[len("http"):] + "/v1/stream" + (f"?version={version}" if version else "")
        auth = self.http.headers.get("Authorization")
        ws = connect(url, additional_headers={"Authorization": auth} if auth else None, open_timeout=open_timeout)
        try:
            sess = StreamSession(ws)
            yield sess
        finally:
            ws.close()

    def metrics(self) -> str:
        r = self.http.get("/metrics")
        r.raise_for_status()
        return r.text
