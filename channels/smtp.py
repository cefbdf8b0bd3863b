"""Email over SMTP (aiosmtplib): multipart text + HTML, one-click unsubscribe headers on marketing.

URL: ``smtp://user:password@smtp.example.com:587/?security=starttls&from=星耀商城 <news@example.com>``
``security``: ``starttls`` (default, port 587), ``tls`` (implicit TLS, port 465) or ``none``
(a relay on a trusted network). ``ca_file=`` trusts a private CA (an internal relay); the
certificate is always checked. Our id goes out as ``X-Tidings-Reference`` and in the
``Message-ID``; a send that timed out is sent again (SMTP has no look-up): at least once.
"""

from __future__ import annotations

import email.utils
from email.message import EmailMessage
from typing import Any, ClassVar

import aiosmtplib

from channels.base import Message, Outcome, SendResult
from channels.urls import ProviderURL

SECURITY = ("starttls", "tls", "none")


class SmtpEmail:
    """One SMTP transaction per message."""

    channels: ClassVar[frozenset[str]] = frozenset({"email"})

    def __init__(self, url: ProviderURL, *, name: str = "smtp", timeout: float = 10.0, **_: Any) -> None:
        self.name = name
        self.url = url
        self.timeout = timeout
        self.security = url.option("security", "starttls") or "starttls"
        if self.security not in SECURITY:
            raise ValueError(f"{url.redacted()}: security must be one of {', '.join(SECURITY)}")
        sender = url.option("from")
        if not sender or "@" not in sender:
            raise ValueError(f"{url.redacted()}: from= must name the sender address")
        self.sender = sender
        self.domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "tidings.invalid"

    def __repr__(self) -> str:
        return f"SmtpEmail({self.url.redacted()})"

    def mime(self, message: Message) -> EmailMessage:
        """The MIME message: text/plain, with an HTML alternative when there is HTML."""
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject or ""
        mail["Date"] = email.utils.formatdate(localtime=False)
        local = message.reference.replace(":", ".")
        mail["Message-ID"] = f"<{local}@{self.domain}>"
        mail["X-Tidings-Reference"] = message.reference
        if message.unsubscribe_url:
            # RFC 8058 one-click: the client POSTs "List-Unsubscribe=One-Click" to the URL.
            mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        mail.set_content(message.text or "")
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    async def send(self, message: Message) -> SendResult:
        """Hand the message to the SMTP server; 4xx and transport trouble retry, 5xx is permanent."""
        mail = self.mime(message)
        port = self.url.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]
        try:
            await aiosmtplib.send(
                mail,
                hostname=self.url.host,
                port=port,
                username=self.url.user or None,
                password=self.url.secret or None,
                use_tls=self.security == "tls",
                start_tls=self.security == "starttls",
                cert_bundle=self.url.option("ca_file") or None,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            code = codes[0] if codes else 550
            return self._failed(code, str(exc))
        except aiosmtplib.SMTPResponseException as exc:
            return self._failed(exc.code, exc.message)
        except aiosmtplib.SMTPTimeoutError:
            return SendResult(
                Outcome.RETRY, self.name, code="timeout", detail="SMTP server did not answer in time"
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}"[:200]
            return SendResult(Outcome.RETRY, self.name, code="transport_error", detail=detail)
        return SendResult(Outcome.SENT, self.name, provider_message_id=str(mail["Message-ID"]))

    def _failed(self, code: int, detail: str) -> SendResult:
        outcome = Outcome.REJECTED if code >= 500 else Outcome.RETRY
        return SendResult(outcome, self.name, code=f"smtp_{code}", detail=detail[:200])

    async def aclose(self) -> None:
        """Nothing pooled: one connection per message."""
