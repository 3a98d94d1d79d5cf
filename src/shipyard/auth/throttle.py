"""Login throttling. Failures are counted per address and per (account, address), never
per account alone: a stranger can slow down their own guesses, but cannot lock a real
user out from the user's own address. Lockouts grow with repeated failures and are
capped, so nothing stays locked forever."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from shipyard.errors import RateLimited
from shipyard.models import LoginThrottle

WINDOW = timedelta(minutes=15)
MAX_LOCK = timedelta(minutes=15)
LIMITS = {"acct": 5, "addr": 30}  # failures within WINDOW before a lockout


def keys(username: str, address: str | None) -> list[str]:
    addr = address or "unknown"
    return [f"acct:{username.lower()}@{addr}", f"addr:{addr}"]


def check(db: Session, keys_: list[str], now: datetime) -> None:
    """Raise RateLimited if any key is locked now."""
    for key in keys_:
        row = db.get(LoginThrottle, key)
        if row and row.locked_until and row.locked_until > now:
            wait = int((row.locked_until - now).total_seconds()) + 1
            raise RateLimited(f"too many failed logins; try again in {wait} s",
                              retry_after=wait)


def failed(db: Session, keys_: list[str], now: datetime) -> None:
    for key in keys_:
        row = db.get(LoginThrottle, key)
        if row is None:
            row = LoginThrottle(key=key, failures=0, window_start=now)
            db.add(row)
        if now - row.window_start > WINDOW:
            row.failures, row.window_start = 0, now
        row.failures += 1
        limit = LIMITS[key.split(":", 1)[0]]
        if row.failures >= limit:
            # 30 s, 60 s, 120 s, ... capped at MAX_LOCK.
            extra = row.failures - limit
            row.locked_until = now + min(timedelta(seconds=30 * 2 ** min(extra, 10)), MAX_LOCK)


def succeeded(db: Session, username: str, address: str | None) -> None:
    row = db.get(LoginThrottle, keys(username, address)[0])
    if row is not None:
        db.delete(row)
