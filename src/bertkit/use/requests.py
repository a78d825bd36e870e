"""What a request to `bertkit serve` may hold: the body as a JSON object of known fields, each text a text.

Each refusal is a `RequestError` with its HTTP status and a message that names the field ('texts'[3], 'text'),
so the client knows what to fix; strings echoed from the client are escaped and cut short.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request


class RequestError(Exception):
    """A bad request: answered with `status` and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


async def read_json(request: Request, limit: int) -> dict:
    """The body as a JSON object, refused with 413 past `limit` bytes (before reading, when the client says)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared[:20]) > limit:  # 20 digits: past any limit
        shown = declared if len(declared) <= 20 else f"over {limit}"
        raise RequestError(413, f"the request body is {shown} bytes; the limit is {limit} (--max-request-bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(413, f"the request body is over {limit} bytes (--max-request-bytes)")
    if not body.strip():
        raise RequestError(400, "the body is empty: send a JSON object of this endpoint's fields")
    try:
        data = json.loads(body, object_pairs_hook=_object)
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the body is not UTF-8 JSON ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise RequestError(400, f"the body is not JSON: {e}") from None
    except ValueError:  # Python refuses to read an integer of over 4300 digits (a denial-of-service guard)
        raise RequestError(400, "the body has a number of thousands of digits: not one any field takes") from None
    except RecursionError:
        raise RequestError(400, "the body is JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise RequestError(400, f"the body must be a JSON object, got {json_type(data)}")
    return data


def _object(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object whose keys are all different: json.loads would keep the last of a repeated one silently."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise RequestError(400, f"field '{shown(twice)}' is given twice: give each field once")
    return obj


def check_fields(body: dict, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    expected = ", ".join(f"'{f}'" for f in (*required, *optional))
    for name in required:
        if name not in body:
            raise RequestError(400, f"missing field '{name}'; this endpoint takes {expected}")
    unknown = [k for k in body if k not in required and k not in optional]
    if unknown:
        raise RequestError(400, f"unknown field '{shown(unknown[0])}'; this endpoint takes {expected}")


def text_list(body: dict, name: str, max_texts: int) -> list[str]:
    texts = body[name]
    if not isinstance(texts, list):
        raise RequestError(400, f"'{name}' must be a list of strings, got {json_type(texts)}")
    if not texts:
        raise RequestError(400, f"'{name}' is empty: send at least one text")
    if len(texts) > max_texts:
        raise RequestError(413, f"{len(texts)} texts in one request; the limit is {max_texts} (--max-texts)")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise RequestError(400, f"'{name}'[{i}] is {json_type(t)}, not a string")
        check_text(t, f"'{name}'[{i}]")
    return texts


def check_text(text: str, label: str) -> None:
    """A 400 naming `label` ('texts'[3], 'text') for a string that holds no text for the model to read."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # JSON allows a lone surrogate escape ("\ud800"); text cannot hold one
        raise RequestError(400, f"{label} has a lone surrogate (\\ud800-\\udfff): not text") from None
    if not text.strip():  # the model would answer for [CLS] [SEP] alone: an answer about nothing
        raise RequestError(400, f"{label} is empty{' (only whitespace)' if text else ''}: send some text")


def json_type(x: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if x is None else names.get(type(x), type(x).__name__)


def shown(text: str, limit: int = 60) -> str:
    """A client's string in a message: cut short, lone surrogates escaped (the answer must encode as UTF-8)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"
