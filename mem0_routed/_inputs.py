"""Checks of a caller's images before any backend sees them.

A ``data:`` URL whose payload is not base64 fails inside the Ollama client's own serialisation,
where it looked like a broken server: two such calls opened the Ollama breaker for the whole
process and sent every later call external. Bad input is the caller's error, raised before the
chain starts.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ._errors import InvalidInput

__all__ = ["check_images"]


def _image_urls(messages: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
    """``(where, url)`` of every image a message carries (OpenAI parts, Ollama's ``images``)."""
    for i, m in enumerate(messages):
        content = m.get("content")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            if isinstance(part, Mapping) and part.get("type") in ("image_url", "input_image"):
                ref = part.get("image_url")
                url = ref.get("url") if isinstance(ref, Mapping) else ref
                if isinstance(url, str):
                    yield f"messages[{i}]['content'][{j}]", url
        images = m.get("images")
        for j, image in enumerate(images if isinstance(images, list) else ()):
            if isinstance(image, str):
                yield f"messages[{i}]['images'][{j}]", image if image.startswith("data:") else f"data:;base64,{image}"


def check_images(messages: Sequence[Mapping[str, Any]]) -> None:
    """Raise ``InvalidInput`` naming the image whose base64 data cannot be decoded."""
    for where, url in _image_urls(messages):
        head, comma, payload = url.partition(",")
        if not url.startswith("data:") or not head.endswith(";base64"):
            continue
        try:
            if not comma or not payload.strip():
                raise ValueError("no data after the comma")
            base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(
                f"{where} is a data: URL whose base64 payload cannot be decoded ({exc}); pass the image as "
                "'data:image/png;base64,' + base64.b64encode(image_bytes).decode()"
            ) from None
