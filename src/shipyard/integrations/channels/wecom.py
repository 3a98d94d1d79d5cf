"""WeCom (企业微信) group robot: the key is in the URL; a ``markdown`` message whose
content is at most 4096 bytes. Success is ``{"errcode": 0}``."""

from __future__ import annotations

from shipyard.integrations.channels import (
    Delivered,
    Destination,
    Transport,
    post_json,
    require_code,
)
from shipyard.integrations.messages import Message

MAX_BYTES = 4096


def clip(text: str, limit: int = MAX_BYTES) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:limit - 3].decode("utf-8", "ignore") + "..."


class WeCom:
    name = "wecom"
    needs_url = True
    takes_signing_secret = False

    def send(self, message: Message, dest: Destination, transport: Transport,
             delivery_id: str) -> Delivered:
        assert dest.url is not None
        payload = {"msgtype": "markdown", "markdown": {"content": clip(message.markdown())}}
        return require_code(post_json(transport, dest.url, payload), "errcode")
