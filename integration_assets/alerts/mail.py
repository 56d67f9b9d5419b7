"""E-mail alerts: one plain-text message per notification over SMTP, with STARTTLS when asked for."""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import logging
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

from integration_assets.alerts.notification import (
    Notification,
    TerminalDeliveryError,
    TransientDeliveryError,
    clip,
)

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 10.0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class EmailChannel:
    """Sends a plain-text e-mail per notification over SMTP, with STARTTLS when asked for.

    Credentials are never sent in clear text to anything but a loopback relay: a username without STARTTLS
    is a configuration error. Fire and resolve mails of one episode share a ``References`` header, so mail
    clients thread them.
    """

    host: str
    port: int
    from_addr: str
    to_addrs: Sequence[str]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    timeout: float = SMTP_TIMEOUT_SECONDS
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    name: str = "email"

    def __post_init__(self) -> None:
        if not self.to_addrs:
            raise ValueError("INTEGRATION_ALERT_SMTP_TO needs at least one address")
        if not self.from_addr:
            raise ValueError("INTEGRATION_ALERT_SMTP_FROM is required for e-mail alerts")
        if self.username and not self.starttls and not _is_loopback(self.host):
            raise ValueError(
                "refusing to send SMTP credentials without STARTTLS (set INTEGRATION_ALERT_SMTP_STARTTLS)"
            )

    def build_message(self, n: Notification) -> EmailMessage:
        domain = self.from_addr.rpartition("@")[2] or "integration-assets.local"
        thread = hashlib.sha256(n.key.encode()).hexdigest()[:16]
        msg = EmailMessage()
        msg["Subject"] = clip(n.headline, 200)
        msg["From"] = self.from_addr
        msg["To"] = ", ".join(self.to_addrs)
        msg["Date"] = email.utils.format_datetime(n.at)
        msg["Message-ID"] = email.utils.make_msgid(idstring=n.id[:16], domain=domain)
        msg["References"] = f"<incident-{thread}-{n.episode}@{domain}>"
        msg["X-Alert-Key"] = n.key
        msg["X-Alert-Kind"] = n.kind
        msg["X-Alert-Severity"] = n.severity
        msg.set_content(n.render_text())
        return msg

    def send(self, notification: Notification) -> None:
        msg = self.build_message(notification)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=self.ssl_context or ssl.create_default_context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self.password or "")
                refused = smtp.send_message(msg)
        except smtplib.SMTPNotSupportedError as exc:
            raise TerminalDeliveryError(self.name, f"server does not support it: {exc}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            cls = TransientDeliveryError if all(400 <= c < 500 for c in codes) else TerminalDeliveryError
            raise cls(self.name, f"all recipients refused (codes {sorted(set(codes))})") from None
        except smtplib.SMTPResponseException as exc:
            cls = TransientDeliveryError if 400 <= exc.smtp_code < 500 else TerminalDeliveryError
            raise cls(self.name, f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from None
        except smtplib.SMTPServerDisconnected as exc:
            raise TransientDeliveryError(self.name, f"server disconnected: {exc}") from None
        except smtplib.SMTPException as exc:
            raise TerminalDeliveryError(self.name, f"{type(exc).__name__}: {exc}") from None
        except ssl.SSLError as exc:  # before OSError: a certificate problem is configuration, not an outage
            raise TerminalDeliveryError(self.name, f"TLS failed: {exc}") from None
        except OSError as exc:  # refused, unreachable, timed out
            raise TransientDeliveryError(self.name, f"{type(exc).__name__}: {exc}") from None
        if refused:
            log.warning("alert mail refused for %d of %d recipients", len(refused), len(self.to_addrs))
