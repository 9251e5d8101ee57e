"""Workers and gateways as real processes for the serving tests."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Self

import httpx
from openai import OpenAI

from tests.support.stack import ServiceProcess


class ServingStack:
    def __init__(self, bootstrap: str, root: Path, model: Path, admin_key: str) -> None:
        self.root = root
        self.admin_key = admin_key
        self.env = {
            "LLMOPS_KAFKA_BOOTSTRAP": bootstrap,
            "LLMOPS_DATA_DIR": str(root / "data"),
            "LLMOPS_ADMIN_KEY": admin_key,
            "LLMOPS_WORKER_BOOTSTRAP_PATH": str(model),
            "LLMOPS_WORKER_MAX_MODEL_LEN": "256",
            "LLMOPS_LOG_FORMAT": "text",
            "HF_HUB_OFFLINE": "1",
        }
        self.workers: list[ServiceProcess] = []
        self.gateways: list[ServiceProcess] = []

    def _proc(self, module: str, name: str) -> ServiceProcess:
        return ServiceProcess(module, dict(self.env), self.root / "logs" / f"{name}.log")

    def start(self, workers: int = 1, gateways: int = 1) -> Self:
        self.workers = [self._proc("services.serving.worker", f"worker{i}") for i in range(workers)]
        self.gateways = [self._proc("services.serving.gateway", f"gw{i}") for i in range(gateways)]
        try:
            with concurrent.futures.ThreadPoolExecutor(len(self.workers)) as pool:
                list(pool.map(lambda p: p.start(timeout=300), self.workers))
            for gateway in self.gateways:
                gateway.start(timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def url(self, gateway: int = 0) -> str:
        return f"http://127.0.0.1:{self.gateways[gateway].port}"

    def client(self, key: str | None = None, gateway: int = 0, **kwargs: object) -> OpenAI:
        return OpenAI(
            base_url=f"{self.url(gateway)}/v1",
            api_key=key or self.admin_key,
            max_retries=0,
            **kwargs,
        )  # type: ignore[arg-type]

    def http(self, gateway: int = 0) -> httpx.Client:
        return httpx.Client(
            base_url=self.url(gateway),
            timeout=60,
            headers={"Authorization": f"Bearer {self.admin_key}"},
        )

    def create_key(self, role: str, **limits: int) -> str:
        with self.http() as http:
            response = http.post("/v1/keys", json={"name": role, "role": role, **limits})
            response.raise_for_status()
            return str(response.json()["key"])

    def stop(self) -> None:
        for proc in [*self.gateways, *self.workers]:
            proc.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
