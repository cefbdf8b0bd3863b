"""Firebase Cloud Messaging, HTTP v1: push with a service account's OAuth token.

URL: ``fcm://fcm.googleapis.com/?service_account=/etc/tidings/firebase.json`` (the service-account
JSON key; ``project_id`` from it unless ``?project_id=`` says otherwise).

The token: a JWT signed RS256 with the service account's key is exchanged at its ``token_uri``
for an access token, which is kept until shortly before it expires and shared by every send
(one exchange at a time). A 401 drops it and the send is retried once with a new one.
Errors: UNREGISTERED (404) and INVALID_ARGUMENT are permanent (the token is dead or the message
wrong); QUOTA_EXCEEDED, UNAVAILABLE and INTERNAL are transient. Our id rides in ``data.reference``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx
import jwt

from channels.base import Message, SendResult
from channels.http import HttpAdapter, TokenCache, json_or_none
from channels.urls import ProviderURL

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# The audience Google's token endpoint requires in the service-account JWT.
TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret
TRANSIENT = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})


class FcmPush(HttpAdapter):
    """``POST /v1/projects/{project}/messages:send``."""

    channels: ClassVar[frozenset[str]] = frozenset({"push"})
    title_maxlen: ClassVar[int] = 256

    def __init__(self, url: ProviderURL, *, name: str = "fcm", timeout: float = 5.0, **kw: Any) -> None:
        super().__init__(name, timeout=timeout, **kw)
        url.require("service_account")
        try:
            account = json.loads(Path(url.option("service_account") or "").read_text())
            self.client_email = str(account["client_email"])
            self.private_key = str(account["private_key"])
            self.key_id = str(account.get("private_key_id", ""))
            self.token_uri = str(account.get("token_uri", "https://oauth2.googleapis.com/token"))
            self.project = url.option("project_id") or str(account["project_id"])
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(
                f"{url.redacted()}: unusable service account file ({type(exc).__name__})"
            ) from None
        self.url = url
        self.tokens = TokenCache()

    def __repr__(self) -> str:
        return f"FcmPush({self.url.redacted()}, project={self.project!r})"

    async def _access_token(self) -> str | SendResult:
        """The cached token, or a new one (one exchange however many sends wait)."""
        return await self.tokens.get(self._exchange)

    async def _exchange(self) -> tuple[str, float] | SendResult:
        """The service account's signed JWT for an OAuth access token."""
        now = int(time.time())
        claims = {
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": TOKEN_AUDIENCE,  # Google's, wherever the exchange is sent (a proxy, a stand-in)
            "iat": now,
            "exp": now + 3600,
        }
        assertion = jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.key_id})
        resp = await self.request(
            "POST",
            self.token_uri,
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
        )
        if isinstance(resp, SendResult):
            return resp
        data = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(data, dict) or not data.get("access_token"):
            detail = (
                str(data.get("error_description") or data.get("error")) if isinstance(data, dict) else None
            )
            # Bad credentials stay bad: permanent. The token endpoint in trouble: transient.
            return self.by_status(resp, "oauth_" + str(resp.status_code), detail)
        return str(data["access_token"]), float(data.get("expires_in", 3600))

    async def send(self, message: Message) -> SendResult:
        """Send; on 401 renew the token once and try again."""
        for fresh in (False, True):
            token = await self._access_token()
            if isinstance(token, SendResult):
                return token
            resp = await self.request(
                "POST",
                f"{self.url.base}/v1/projects/{self.project}/messages:send",
                json=self.payload(message),
                headers={"authorization": f"Bearer {token}"},
            )
            if isinstance(resp, SendResult):
                return resp
            if resp.status_code == 401 and not fresh:
                await self.tokens.drop(token)
                continue
            return self.result(resp)
        raise AssertionError("unreachable")

    @staticmethod
    def payload(message: Message) -> dict[str, Any]:
        """The v1 message."""
        return {
            "message": {
                "token": message.to,
                "notification": {"title": message.title or "", "body": message.text or ""},
                "data": {"reference": message.reference},
            }
        }

    def result(self, resp: httpx.Response) -> SendResult:
        """200 names the message; FCM's errorCode decides the rest."""
        data = json_or_none(resp)
        if resp.status_code == 200 and isinstance(data, dict) and data.get("name"):
            return self.sent(str(data["name"]))
        error = data.get("error") if isinstance(data, dict) else None
        code, detail = None, None
        if isinstance(error, dict):
            detail = str(error.get("message", ""))
            code = str(error.get("status", "")) or None
            for d in error.get("details") or []:
                if isinstance(d, dict) and d.get("errorCode"):
                    code = str(d["errorCode"])
        if code in TRANSIENT:
            return self.retry(code, detail)
        if code in ("UNREGISTERED", "INVALID_ARGUMENT", "SENDER_ID_MISMATCH"):
            return self.rejected(code, detail)
        return self.by_status(resp, code, detail)
