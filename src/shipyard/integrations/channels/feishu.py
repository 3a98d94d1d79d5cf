"""Feishu / Lark custom bot: a ``post`` (rich text) message; with signature
verification, ``timestamp`` (seconds) and ``sign`` = base64(HMAC-SHA256 keyed with
timestamp + "\\n" + secret, over an empty message) go in the JSON body. Success is
``{"code": 0}`` (older deployments answer ``{"StatusCode": 0}``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from shipyard.integrations.channels import (
    Delivered,
    Destination,
    Transport,
    post_json,
    require_code,
)
from shipyard.integrations.messages import Message


def sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class Feishu:
    name = "feishu"
    needs_url = True
    takes_signing_secret = True

    def send(self, message: Message, dest: Destination, transport: Transport,
             delivery_id: str) -> Delivered:
        assert dest.url is not None
        content: list[list[dict[str, str]]] = [[{"tag": "text", "text": line}]
                                               for line in message.lines]
        content.append([{"tag": "a", "text": "Open in Shipyard", "href": message.link}])
        payload: dict[str, Any] = {
            "msg_type": "post",
            "content": {"post": {"zh_cn": {"title": message.headline, "content": content}}},
        }
        if dest.signing_secret:
            timestamp = str(int(transport.clock()))
            payload = {"timestamp": timestamp, "sign": sign(dest.signing_secret, timestamp),
                       **payload}
        return require_code(post_json(transport, dest.url, payload), "code", "StatusCode")
