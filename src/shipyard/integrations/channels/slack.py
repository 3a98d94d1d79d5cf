"""Slack incoming webhook: ``text`` (the notification fallback) and ``blocks`` in
mrkdwn. Slack answers 200 ``ok``, or 4xx with a reason such as ``invalid_payload``."""

from __future__ import annotations

from shipyard.integrations.channels import (
    Delivered,
    Destination,
    Transport,
    post_json,
    require_2xx,
)
from shipyard.integrations.messages import Message


def escape(text: str) -> str:
    """Slack's mrkdwn control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack:
    name = "slack"
    needs_url = True
    takes_signing_secret = False

    def send(self, message: Message, dest: Destination, transport: Transport,
             delivery_id: str) -> Delivered:
        assert dest.url is not None
        body = "\n".join(escape(line) for line in message.lines)
        payload = {
            "text": escape(message.headline),
            "blocks": [
                {"type": "section",
                 "text": {"type": "mrkdwn", "text": f"*{escape(message.headline)}*\n{body}"}},
                {"type": "context",
                 "elements": [{"type": "mrkdwn",
                               "text": f"<{message.link}|Open in Shipyard>"}]},
            ],
        }
        return require_2xx(post_json(transport, dest.url, payload))
