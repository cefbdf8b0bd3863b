"""Marketing email through a real SMTP server (aiosmtpd): MIME parts, headers, one-click unsubscribe."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiosmtpd.controller import Controller

from channels.base import Message, Outcome
from channels.smtp import SmtpEmail
from channels.urls import parse_provider_url
from gateway.state.redisdb import free_port
from tests.conftest import Stack, statuses, wait_for

pytestmark = pytest.mark.integration


class Inbox:
    """An aiosmtpd handler that keeps what it is given."""

    def __init__(self) -> None:
        self.mail: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("bounce@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mail.append(parsed)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def smtp_url(port: int) -> str:
    return f"smtp://127.0.0.1:{port}/?security=none&from={quote('星耀商城 <news@example.com>')}"


def email_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "to": {"email": "li.nvshi@example.com", "user_id": "m-1001"},
        "channel": "email",
        "category": "marketing",
        "brand": "星耀商城",
        "template": "points_expiry",
        "params": {"name": "李女士", "points": 28600, "days": 12},
    }
    body.update(extra)
    return body


def test_marketing_email_reaches_smtp_with_parts_headers_and_a_working_one_click_unsubscribe(
    tmp_path: Path, stack_factory: Callable[..., Stack], smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    providers = tmp_path / "providers.toml"
    providers.write_text(
        f'[providers.mail]\nurl = "{smtp_url(port)}"\n[[routes.email]]\nprovider = "mail"\n', encoding="utf-8"
    )
    stack = stack_factory(providers_path=str(providers))
    with stack.client() as c:
        sent = c.post("/v1/notify", json=email_body())
        assert sent.status_code == 202, sent.text
        ntf_id = sent.json()["id"]
    wait_for(lambda: len(inbox.mail) == 1, timeout=10)
    wait_for(lambda: statuses(stack, [ntf_id]) == {"sent": 1}, timeout=10)
    mail = inbox.mail[0]
    assert inbox.envelopes[0] == ("news@example.com", ["li.nvshi@example.com"])
    assert mail["Subject"] == "李女士,您的28600积分将于12天后清零"
    assert mail["To"] == "li.nvshi@example.com" and "news@example.com" in mail["From"]
    assert mail["X-Tidings-Reference"] == f"acme:{ntf_id}" and ntf_id in mail["Message-ID"]
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(preferencelist=("plain",))
    html = mail.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert "28600积分" in text.get_content() and "<strong>28600</strong>" in html.get_content()
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = str(mail["List-Unsubscribe"]).strip("<>")
    assert link.startswith(f"{stack.api_url}/v1/unsubscribe/")

    def opted_out() -> bool:
        with stack.client() as c:
            return bool(c.get("/v1/optouts/li.nvshi@example.com").json()["opted_out"])

    # Opening the link (or a scanner prefetching it) changes nothing.
    page = httpx.get(link, timeout=5)
    assert page.status_code == 200 and "确认退订" in page.text
    assert not opted_out()
    # A forged or altered link is refused.
    forged = httpx.post(link[:-3] + "abc", content=b"List-Unsubscribe=One-Click", timeout=5)
    assert forged.status_code == 403 and forged.json()["code"] == "invalid_unsubscribe_link"
    assert not opted_out()
    # The client's one-click POST opts the address out of the brand's email; doing it again is harmless.
    form = {"content-type": "application/x-www-form-urlencoded"}
    for changed in (True, False):
        r = httpx.post(link, content=b"List-Unsubscribe=One-Click", headers=form, timeout=5)
        assert r.status_code == 200 and r.json()["changed"] is changed
    assert opted_out()
    with stack.client() as c:
        again = c.post("/v1/notify", json=email_body())
        assert again.status_code == 200 and again.json()["reasons"][0]["code"] == "opted_out"
        # The brand's SMS is another channel: still allowed.
        sms = c.post("/v1/notify", json=email_body(channel="sms", to={"phone": "13812345678"}))
        assert sms.status_code == 202, sms.text


def test_transactional_email_has_no_unsubscribe_header_and_smtp_answers_map_to_outcomes(
    smtp: tuple[Inbox, int],
) -> None:
    import asyncio

    inbox, port = smtp
    adapter = SmtpEmail(parse_provider_url(smtp_url(port), environ={}), name="mail")
    receipt = Message(
        reference="acme:ntf_tx",
        tenant="acme",
        channel="email",
        to="li@example.com",
        category="transactional",
        subject="积分到账通知",
        text="您获得100积分。",
    )
    assert asyncio.run(adapter.send(receipt)).outcome is Outcome.SENT
    assert "List-Unsubscribe" not in inbox.mail[-1] and inbox.mail[-1].get_content_type() == "text/plain"
    bounced = asyncio.run(adapter.send(Message(**{**receipt.__dict__, "to": "bounce@example.com"})))
    assert (bounced.outcome, bounced.code) == (Outcome.REJECTED, "smtp_550")
    closed = SmtpEmail(parse_provider_url(smtp_url(free_port()), environ={}), name="mail", timeout=2)
    assert asyncio.run(closed.send(receipt)).outcome is Outcome.RETRY  # nothing listening: try again later
    assert "secret" not in repr(adapter)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the test's own CA is the certificate itself)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_starttls_and_implicit_tls_with_login(tmp_path: Path, security: str) -> None:
    import asyncio
    import ssl

    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"news", b"pa55")
        return AuthResult(success=ok, handled=False)

    inbox, port = Inbox(), free_port()
    common: dict[str, Any] = {"authenticator": authenticate, "auth_require_tls": True}
    if security == "starttls":
        controller = Controller(
            inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True, **common
        )
    else:
        # aiosmtpd does not count implicit TLS as TLS for auth_require_tls (it only tracks STARTTLS),
        # so it would hide AUTH; the whole connection is TLS here from the first byte.
        common["auth_require_tls"] = False
        controller = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=context, **common)
    controller.start()
    try:

        def adapter(password: str) -> SmtpEmail:
            url = (
                f"smtp://news:{password}@127.0.0.1:{port}/?security={security}&ca_file={cert}"
                f"&from={quote('星耀商城 <news@example.com>')}"
            )
            return SmtpEmail(parse_provider_url(url, environ={}), name="mail")

        mail = Message(
            reference="acme:ntf_tls",
            tenant="acme",
            channel="email",
            to="li@example.com",
            subject="会员日",
            text="会员日快乐",
            html="<p>会员日快乐</p>",
        )
        assert asyncio.run(adapter("pa55").send(mail)).outcome is Outcome.SENT
        assert inbox.mail[-1]["Subject"] == "会员日"
        wrong = asyncio.run(adapter("wrong").send(mail))
        assert (wrong.outcome, wrong.code) == (Outcome.REJECTED, "smtp_535")  # bad credentials: permanent
        assert len(inbox.mail) == 1
    finally:
        controller.stop()
