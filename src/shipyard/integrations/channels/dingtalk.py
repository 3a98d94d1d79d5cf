"""DingTalk (钉钉) custom group robot: a markdown message; with "加签" signing, the
``timestamp`` (ms) and ``sign`` = urlencoded base64(HMAC-SHA256(secret,
timestamp + "\\n" + secret)) go in the query string. Success is ``{"errcode": 0}``."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shipyard.integrations.channels import (
    Delivered,
    Destination,
    Transport,
    post_json,
    require_code,
)
from shipyard.integrations.messages import Message


def sign(secret: str, timestamp_ms: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*query, *params.items()])))


class DingTalk:
    name = "dingtalk"
    needs_url = True
    takes_signing_secret = True

    def send(self, message: Message, dest: Destination, transport: Transport,
             delivery_id: str) -> Delivered:
        assert dest.url is not None
        url = dest.url
        if dest.signing_secret:
            timestamp = str(int(transport.clock() * 1000))
            url = with_query(url, timestamp=timestamp, sign=sign(dest.signing_secret,
                                                                 timestamp))
        payload = {"msgtype": "markdown",
                   "markdown": {"title": message.headline, "text": message.markdown()}}
        return require_code(post_json(transport, url, payload), "errcode")
