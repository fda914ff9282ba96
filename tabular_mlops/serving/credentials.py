"""The deployment's tokens: who may send feedback, read the router's own endpoints, and
tag requests as the deployment's own checks.

One JSON file per served model holds a token per role (:data:`ROLES`). On dev
and staging the model deployer writes it at the model's first deploy under the
serving state directory (mode 0600, its directory 0700); on the cluster it is a
Kubernetes Secret mounted into the pods. Servers are given the file's path
(``$TABULAR_TOKENS_FILE``), never a token: nothing that is stored, built or
printed (artifacts, bentos, images, manifests, logs) holds one.

A rotation writes new tokens and keeps the old ones valid for a grace period,
so clients move over without a failed request; servers read the file again
when it changes (:class:`TokenFile`).
"""

from __future__ import annotations

import hmac
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from tabular_mlops.core.files import write_atomically

TOKENS_FILE_ENV = "TABULAR_TOKENS_FILE"
#: where a client of ``/predict`` sends its API key, when the deployment requires one
API_KEY_HEADER = "x-api-key"
Role = Literal["feedback", "admin", "source"]
#: feedback: labels and rewards (``POST /feedback``); admin: the router's ``/-/routes`` and
#: ``/-/metrics``; source: the deployment's own smoke and shadow requests
ROLES: tuple[Role, ...] = ("feedback", "admin", "source")
#: how long the tokens a rotation replaced are still accepted
ROTATION_GRACE = timedelta(hours=1)


class Tokens(BaseModel):
    current: dict[Role, str]
    #: the tokens a rotation replaced, accepted until ``previous_until``
    previous: dict[Role, str] = {}
    previous_until: datetime | None = None
    #: ``/predict``'s keys by client name, when the deployment requires one
    #: (``serving.require_api_key``); each client revoked on its own
    api_keys: dict[str, str] = {}

    def __repr__(self) -> str:  # never a token in a log or a traceback
        return f"Tokens(roles={sorted(self.current)}, previous_until={self.previous_until})"

    __str__ = __repr__

    def accepts(self, role: Role, offered: str, now: datetime | None = None) -> bool:
        """Whether ``offered`` is ``role``'s token (or its previous one, in its grace),
        compared in constant time with each."""
        now = now or datetime.now(UTC)
        valid = [self.current[role]]
        if role in self.previous and self.previous_until and now < self.previous_until:
            valid.append(self.previous[role])
        matched = False
        for token in valid:
            matched |= hmac.compare_digest(offered.encode(), token.encode())
        return matched

    def client_of(self, offered: str) -> str | None:
        """The client whose API key ``offered`` is, compared with every key in constant
        time; None for no key of this deployment."""
        found = None
        for client, key in self.api_keys.items():
            if hmac.compare_digest(offered.encode(), key.encode()):
                found = client
        return found


def new_tokens() -> Tokens:
    return Tokens(current={role: secrets.token_urlsafe(32) for role in ROLES})


def rotated(tokens: Tokens, now: datetime, grace: timedelta = ROTATION_GRACE) -> Tokens:
    """New tokens for every role; the replaced ones are accepted for ``grace`` more. API
    keys are the clients' own: each is replaced or revoked by itself."""
    return Tokens(
        current=new_tokens().current,
        previous=dict(tokens.current),
        previous_until=now + grace,
        api_keys=dict(tokens.api_keys),
    )


def with_api_key(tokens: Tokens, client: str) -> Tokens:
    """``tokens`` with a new key for ``client`` (its old one, if any, no longer valid)."""
    return tokens.model_copy(
        update={"api_keys": {**tokens.api_keys, client: secrets.token_urlsafe(32)}}
    )


def without_api_key(tokens: Tokens, client: str) -> Tokens:
    if client not in tokens.api_keys:
        raise KeyError(f"no API key of client '{client}' (clients: {sorted(tokens.api_keys)})")
    return tokens.model_copy(
        update={"api_keys": {k: v for k, v in tokens.api_keys.items() if k != client}}
    )


def write_tokens(path: Path, tokens: Tokens) -> None:
    """Write ``tokens`` to ``path`` atomically, readable by its owner only."""
    write_atomically(path, tokens.model_dump_json(), private=True)


class TokensFileError(ValueError):
    """The tokens file cannot be read as tokens."""


def read_tokens(path: Path) -> Tokens:
    try:
        return Tokens.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a tokens file"
        raise TokensFileError(f"{path}: {reason}") from None


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class TokenFile:
    """A server's view of the tokens file, read again when it changes (a rotation)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._seen: tuple[int, int, int] | None = None
        self._tokens: Tokens | None = None

    @classmethod
    def from_environment(cls) -> TokenFile:
        return cls(os.environ.get(TOKENS_FILE_ENV))

    def tokens(self) -> Tokens | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            self._seen, self._tokens = None, None
            return None
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            try:
                self._tokens = read_tokens(self.path)
            except TokensFileError:
                self._tokens = None
            self._seen = seen
        return self._tokens

    def accepts(self, role: Role, offered: str | None) -> bool:
        """Whether ``offered`` is ``role``'s token (no tokens file: nothing is)."""
        tokens = self.tokens()
        return bool(offered) and tokens is not None and tokens.accepts(role, str(offered))

    def token(self, role: Role) -> str | None:
        tokens = self.tokens()
        return tokens.current[role] if tokens is not None else None

    def key_refusal(self, offered: str | None) -> tuple[int, dict[str, object]] | None:
        """None when ``offered`` (an ``x-api-key`` header) is a client's API key; else
        401 (none sent) or 403 (not one of this deployment's) and the answer."""
        if not offered:
            return 401, _problem("unauthorized", "send this deployment's API key as x-api-key",
                                 field=API_KEY_HEADER)  # fmt: skip
        tokens = self.tokens()
        if tokens is None or tokens.client_of(offered) is None:
            return 403, _problem("forbidden", "not an API key of this deployment",
                                 field=API_KEY_HEADER)  # fmt: skip
        return None

    def refusal(
        self, role: Role, authorization: str | None
    ) -> tuple[int, dict[str, object]] | None:
        """None when ``authorization`` carries ``role``'s token; else the status (401: no
        token sent, 403: a wrong one, or no tokens to check it against) and the answer."""
        offered = bearer(authorization)
        if offered is None:
            return 401, _problem(
                "unauthorized", f"send `Authorization: Bearer <the deployment's {role} token>`"
            )
        if not self.accepts(role, offered):
            return 403, _problem("forbidden", f"not the deployment's {role} token")
        return None


def _problem(error: str, problem: str, field: str = "authorization") -> dict[str, object]:
    return {"error": error, "detail": [{"field": field, "problem": problem}]}
