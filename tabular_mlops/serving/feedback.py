"""``POST /feedback``: what happened after an answer, its true label or a reward.

Read the same way by the router (during a rollout, where each item is also
counted for the version that answered) and by the live version itself (when it
answers the stable address alone, ``serving/stable.py``): one body format, one
set of refusals.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError, model_validator

from tabular_mlops.core.problems import unique_keys

#: where feedback is posted, on the model's stable address
FEEDBACK_PATH = "/feedback"
#: feedback items in one request
MAX_FEEDBACK_ITEMS = 1000
#: bytes one feedback request may take, counted as they are read (chunked or not):
#: 1,000 items of a long request id and label take about 400 KB
MAX_FEEDBACK_BYTES = 1024 * 1024


class Feedback(BaseModel):
    """What happened after an answer: its true label, or a reward in [0, 1]."""

    request_id: str = Field(min_length=1, max_length=128)
    row: int = Field(default=0, ge=0)
    label: str | None = Field(default=None, max_length=256)
    reward: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _one_of(self) -> Feedback:
        if (self.label is None) == (self.reward is None):
            raise ValueError("give either label or reward")
        return self


FEEDBACK_ITEMS: TypeAdapter[list[Feedback]] = TypeAdapter(list[Feedback])


class FeedbackRefusedError(ValueError):
    """A feedback body refused: ``status`` and the JSON ``answer`` naming each problem."""

    def __init__(self, status: int, answer: dict[str, Any]) -> None:
        super().__init__(answer["error"])
        self.status, self.answer = status, answer


def check_media_type(content_type: str | None) -> None:
    """Feedback is JSON: any other declared type is refused (415), as ``/predict`` does."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise FeedbackRefusedError(415, {"error": "unsupported media type", "detail": [
            {"field": "content-type", "problem": f"{media_type or 'none'}; send "
             "application/json"}]})  # fmt: skip


def too_large() -> FeedbackRefusedError:
    return FeedbackRefusedError(413, {"error": "feedback too large", "detail": [
        {"field": "(body)", "problem": f"over {MAX_FEEDBACK_BYTES} bytes"}]})  # fmt: skip


async def read_feedback(content_type: str | None, chunks: AsyncIterator[bytes]) -> list[Feedback]:
    """A feedback request's items: its declared type checked first, its body read chunk by
    chunk and refused as soon as it is over ``MAX_FEEDBACK_BYTES`` (chunked or not)."""
    check_media_type(content_type)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > MAX_FEEDBACK_BYTES:
            raise too_large()
    return parse_feedback(bytes(body))


def parse_feedback(body: bytes) -> list[Feedback]:
    """The items of a feedback body (one object or a list), read by the same JSON rules
    as ``/predict`` (a key twice, nesting deeper than Python's parser goes: 400, never
    a 500); FeedbackRefusedError names each problem's field."""
    if len(body) > MAX_FEEDBACK_BYTES:
        raise too_large()
    try:
        document = json.loads(body, object_pairs_hook=unique_keys)
    except (ValueError, RecursionError) as exc:
        raise FeedbackRefusedError(400, {"error": "invalid feedback", "detail": [
            {"field": "(body)", "problem": f"Invalid JSON: {exc}"}]}) from None  # fmt: skip
    single = not isinstance(document, list)
    try:
        items = FEEDBACK_ITEMS.validate_python([document] if single else document)
    except ValidationError as exc:
        raise FeedbackRefusedError(400, {"error": "invalid feedback", "detail": [
            {"field": ".".join(str(p) for p in e["loc"][1 if single else 0:]) or "(item)",
             "problem": e["msg"]}
            for e in exc.errors(include_url=False)[:20]]}) from None  # fmt: skip
    if len(items) > MAX_FEEDBACK_ITEMS:
        detail = [{"field": "(body)", "problem": f"at most {MAX_FEEDBACK_ITEMS} items"}]
        raise FeedbackRefusedError(413, {"error": "too much feedback at once", "detail": detail})
    return items
