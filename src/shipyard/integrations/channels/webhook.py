"""A generic JSON webhook: the message's fields as JSON. With a signing secret, the
body is signed like GitHub signs its webhooks: ``X-Shipyard-Signature-256:
sha256=<hex HMAC-SHA256(secret, body)>``. ``X-Shipyard-Delivery`` is the same for every
retry of one notification, so a receiver can drop duplicates. Success is any 2xx."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

from shipyard.integrations.channels import Delivered, Destination, Transport, require_2xx
from shipyard.integrations.messages import Message

SIGNATURE_HEADER = "X-Shipyard-Signature-256"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class JsonWebhook:
    name = "webhook"
    needs_url = True
    takes_signing_secret = True

    def send(self, message: Message, dest: Destination, transport: Transport,
             delivery_id: str) -> Delivered:
        assert dest.url is not None
        sent_at = datetime.fromtimestamp(transport.clock(), UTC).isoformat()
        payload = {**message.fields, "text": message.text(), "delivery": delivery_id,
                   "sent_at": sent_at}
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "X-Shipyard-Event": message.event, "X-Shipyard-Delivery": delivery_id}
        if dest.signing_secret:
            headers[SIGNATURE_HEADER] = signature(dest.signing_secret, body)
        return require_2xx(transport.http.post(dest.url, body, headers))
