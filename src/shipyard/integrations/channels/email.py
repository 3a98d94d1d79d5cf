"""Email over SMTP: the server is the admin's (settings ``smtp_*``), with implicit TLS,
STARTTLS or (for a local relay) neither; the channel names the recipients. For a task
waiting for approval, the approvers' addresses are added."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from shipyard.integrations.channels import Delivered, Destination, Transport
from shipyard.integrations.messages import Message
from shipyard.integrations.outbound import SendFailed


@dataclass(frozen=True)
class Mailer:
    host: str
    port: int
    security: str  # "tls" | "starttls" | "none"
    sender: str
    timeout: float
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None

    def send(self, mail: EmailMessage) -> str:
        """Send ``mail``; the server's answer to the message, or SendFailed."""
        context = ssl.create_default_context()
        if self.ca_file is not None:
            context.load_verify_locations(cafile=str(self.ca_file))
        try:
            smtp: smtplib.SMTP
            if self.security == "tls":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                        context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=context)
                if self.username:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(mail)
                if refused:
                    raise SendFailed("the server refused some recipients: "
                                     + ", ".join(sorted(refused)))
                return "accepted"
        except smtplib.SMTPResponseException as exc:
            raise SendFailed(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}",
                             response=str(exc.smtp_error)[:1000]) from exc
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise SendFailed(f"SMTP {type(exc).__name__}: {exc}") from exc


class Email:
    name = "email"
    needs_url = False
    takes_signing_secret = False

    def send(self, message: Message, dest: Destination, transport: Transport,
             delivery_id: str) -> Delivered:
        mailer: Mailer | None = transport.mail
        if mailer is None:
            raise SendFailed("email is not configured on this server (SHIPYARD_SMTP_HOST)",
                             permanent=True)
        recipients = list(dict.fromkeys([*dest.to, *message.to]))
        if not recipients:
            raise SendFailed("no recipients", permanent=True)
        mail = EmailMessage()
        mail["Subject"] = message.headline
        mail["From"] = mailer.sender
        mail["To"] = ", ".join(recipients)
        mail["Date"] = formatdate(transport.clock(), usegmt=True)
        mail["Message-ID"] = make_msgid("shipyard")
        mail["X-Shipyard-Delivery"] = delivery_id
        mail.set_content(message.text() + "\n")
        return Delivered(None, mailer.send(mail))
