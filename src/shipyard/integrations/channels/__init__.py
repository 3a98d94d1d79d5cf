"""Channel kinds: how one rendered message reaches one kind of receiver, as that
receiver documents it. Each kind builds its request, signs it where the receiver asks,
sends it through the :class:`Transport`, and reads the answer (several robots answer
HTTP 200 with an error code in the body). Failures raise ``SendFailed``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from shipyard.integrations.messages import Message
from shipyard.integrations.outbound import Answer, Outbound, SendFailed


@dataclass(frozen=True)
class Destination:
    """One channel, decrypted, as a kind needs it."""

    name: str
    url: str | None = None
    signing_secret: str | None = None
    to: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Delivered:
    """The receiver accepted the message: what it said."""

    http_status: int | None
    response: str = ""


@dataclass(frozen=True)
class Transport:
    """What sending needs from the settings: HTTP (guarded, pinned), mail, a clock."""

    http: Outbound
    mail: Any = None  # channels.email.Mailer, or None when SMTP is not configured
    clock: Callable[[], float] = time.time


class Kind(Protocol):
    name: str
    needs_url: bool
    takes_signing_secret: bool

    def send(self, message: Message, dest: Destination, transport: Transport,
             delivery_id: str) -> Delivered: ...


def post_json(transport: Transport, url: str, payload: Any,
              headers: Mapping[str, str] | None = None) -> Answer:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return transport.http.post(url, body, {"Content-Type": "application/json; charset=utf-8",
                                           **(headers or {})})


def require_2xx(answer: Answer) -> Delivered:
    if not answer.ok:
        raise SendFailed(f"the receiver answered HTTP {answer.status}",
                         http_status=answer.status, response=answer.body)
    return Delivered(answer.status, answer.body)


def require_code(answer: Answer, *keys: str) -> Delivered:
    """For robots that answer 200 with ``{"errcode": 0}`` (or another key) on success."""
    delivered = require_2xx(answer)
    try:
        data = json.loads(answer.body)
    except ValueError:
        raise SendFailed("the receiver did not answer JSON", http_status=answer.status,
                         response=answer.body) from None
    if not isinstance(data, dict):
        raise SendFailed("the receiver answered unexpected JSON", http_status=answer.status,
                         response=answer.body)
    code = next((data[k] for k in keys if k in data), None)
    if code != 0:
        message = data.get("errmsg") or data.get("msg") or data.get("StatusMessage") or ""
        raise SendFailed(f"the receiver refused the message: code {code} {message}".strip(),
                         http_status=answer.status, response=answer.body)
    return delivered


def kinds() -> dict[str, Kind]:
    from shipyard.integrations.channels import dingtalk, email, feishu, slack, webhook, wecom

    found: list[Kind] = [dingtalk.DingTalk(), wecom.WeCom(), feishu.Feishu(), slack.Slack(),
                         email.Email(), webhook.JsonWebhook()]
    return {k.name: k for k in found}


KIND_NAMES = ("dingtalk", "wecom", "feishu", "slack", "email", "webhook")
