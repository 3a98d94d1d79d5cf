"""Integrations with the outside: webhooks in from git hosts, notifications out.

    inbound.py              what every git host's delivery becomes (GitEvent), and the
                            provider registry
    github.py gitlab.py     per provider: authenticate a request (constant time), name its
    gitee.py                delivery, parse push / tag push / merged merge request
    rules.py                which rules an event matches (pure)
    messages.py             what a notification says (pure)
    urls.py outbound.py     the outgoing URL guard, and HTTP POST pinned to the checked
                            address
    channels/               per channel kind: the request its receiver documents
    fanout.py               from a task event to notifications for the target's channels
    notify.py               the background deliverer: retry with back-off, record every
                            attempt

The use cases (who may configure what, recording deliveries, creating tasks) live in
``services/webhooks.py`` and ``services/notifications.py``.
"""
