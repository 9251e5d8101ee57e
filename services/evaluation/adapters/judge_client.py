"""The Judge port through the platform's gateway (OpenAI completions API, greedy)."""

from __future__ import annotations

import httpx

from services.evaluation.judge import JudgeConfig, parse_rating


class GatewayJudge:
    def __init__(self, config: JudgeConfig, api_key: str | None) -> None:
        self.config = config
        self.headers = {"Authorization": f"Bearer {api_key or ''}"}

    def rate(self, prompts: list[str], outputs: list[str]) -> list[int | None]:
        ratings: list[int | None] = []
        url = f"{self.config.gateway_url.rstrip('/')}/v1/completions"
        with httpx.Client(timeout=60, headers=self.headers) as client:
            for prompt, output in zip(prompts, outputs, strict=True):
                body = {
                    "model": self.config.model,
                    "prompt": self.config.rubric.format(prompt=prompt, output=output),
                    "max_tokens": 4,
                    "temperature": 0.0,
                }
                try:
                    response = client.post(url, json=body)
                    response.raise_for_status()
                    ratings.append(parse_rating(response.json()["choices"][0]["text"]))
                except (httpx.HTTPError, KeyError, IndexError, ValueError):
                    ratings.append(None)
        return ratings
