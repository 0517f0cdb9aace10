"""Checks of a caller's images and tool calls before any backend sees them.

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

__all__ = ["check_images", "check_response_format", "check_tools"]


def _bad(where: str, what: str, value: Any) -> InvalidInput:
    return InvalidInput(f"{where} must be {what}, got {type(value).__name__}")


def _image_urls(messages: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
    """``(where, url)`` of every image a message carries (OpenAI parts, Ollama's ``images``)."""
    for i, m in enumerate(messages):
        content = m.get("content")
        for j, part in enumerate(content if isinstance(content, list) else ()):
            if isinstance(part, Mapping) and part.get("type") in ("image_url", "input_image"):
                ref = part.get("image_url")
                url = ref.get("url") if isinstance(ref, Mapping) else ref
                if not isinstance(url, str):
                    raise _bad(f"messages[{i}]['content'][{j}]'s image URL", "a str (https://... or data:...)", url)
                yield f"messages[{i}]['content'][{j}]", url
        images = m.get("images")
        if images is not None and not isinstance(images, list):
            raise _bad(f"messages[{i}]['images']", "a list of base64 str", images)
        for j, image in enumerate(images or ()):
            if not isinstance(image, str):
                raise _bad(f"messages[{i}]['images'][{j}]", "a base64 str", image)
            yield f"messages[{i}]['images'][{j}]", image if image.startswith("data:") else f"data:;base64,{image}"


def _check_tool_calls(messages: Sequence[Mapping[str, Any]]) -> None:
    """An assistant's ``tool_calls`` of the wrong shape broke the Ollama client and opened its breaker."""
    for i, m in enumerate(messages):
        calls = m.get("tool_calls")
        if calls is None:
            continue
        if not isinstance(calls, list):
            raise _bad(f"messages[{i}]['tool_calls']", "a list of {'function': {'name', 'arguments'}} dicts", calls)
        for j, call in enumerate(calls):
            fn = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
                raise _bad(f"messages[{i}]['tool_calls'][{j}]", "a dict with 'function': {'name': str, ...}", call)


def check_images(messages: Sequence[Mapping[str, Any]]) -> None:
    """Raise ``InvalidInput`` naming the image whose base64 data cannot be decoded, or the image or
    tool call of a shape no backend takes."""
    _check_tool_calls(messages)
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


def check_response_format(response_format: Any) -> dict[str, Any] | None:
    """``response_format`` as a dict, or ``InvalidInput``: a string or a ``json_schema`` that is not a
    mapping escaped as a bare ``ValueError``/``AttributeError`` from deep inside the router."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise _bad("response_format", 'a mapping such as {"type": "json_object"}', response_format)
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping):
            raise _bad("response_format['json_schema']", 'a mapping such as {"name": ..., "schema": {...}}', spec)
        if spec.get("schema") is not None and not isinstance(spec.get("schema"), Mapping):
            raise _bad("response_format['json_schema']['schema']", "a JSON schema (a mapping)", spec.get("schema"))
    return dict(response_format)


def check_tools(tools: Any) -> None:
    """``tools`` is None or a list of mappings (OpenAI's tool definitions)."""
    if tools is None:
        return
    if not isinstance(tools, (list, tuple)) or not all(isinstance(t, Mapping) for t in tools):
        raise _bad("tools", "a list of tool definitions (mappings)", tools)
