"""Shared by the examples: the server address, the model, and the question with an optional image.

``MMSR_URL`` (default ``http://127.0.0.1:8080/v1``), ``MMSR_API_KEY`` and ``MMSR_MODEL`` configure
them; without ``MMSR_MODEL`` the examples ask the server (``GET /v1/models``) which model it serves."""

from __future__ import annotations

import base64
import mimetypes
import os
import sys
from typing import Any

BASE_URL = os.environ.get("MMSR_URL", "http://127.0.0.1:8080/v1")
API_KEY = os.environ.get("MMSR_API_KEY", "EMPTY")


def served_model() -> str:
    """``MMSR_MODEL``, or the first model the server lists."""
    if model := os.environ.get("MMSR_MODEL"):
        return model
    from openai import OpenAI

    with OpenAI(base_url=BASE_URL, api_key=API_KEY) as client:
        models = client.models.list().data
    if not models:
        sys.exit(f"{BASE_URL}/models lists no model; set MMSR_MODEL")
    return models[0].id


MODEL = served_model()


def messages() -> list[dict[str, Any]]:
    """``python example.py ["question"] [image.jpg | https://...]``"""
    question = sys.argv[1] if len(sys.argv) > 1 else "What is this, and who designed it?"
    content: list[dict[str, Any]] = [{"type": "text", "text": question}]
    if len(sys.argv) > 2:
        image = sys.argv[2]
        if not image.startswith(("http://", "https://")):
            mime = mimetypes.guess_type(image)[0] or "image/png"
            with open(image, "rb") as f:
                image = f"data:{mime};base64,{base64.b64encode(f.read()).decode()}"
        content.append({"type": "image_url", "image_url": {"url": image}})
    return [{"role": "user", "content": content}]
