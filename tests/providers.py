"""Local stand-ins that speak each provider's protocol and check its signature (tests only).

One raw ASGI app per instance; ``kind`` picks the protocol. Every request is recorded with the
time it arrived; ``fault`` makes it answer an HTTP error (all or a share of requests) and
``delay`` makes it slow.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import jwt
from cryptography.hazmat.primitives import serialization

from channels.aliyun import rpc_signature
from channels.fcm import SCOPE as FCM_SCOPE
from channels.signing import SIGNATURE_HEADER, verify_timestamped
from channels.tencent import authorization

Scope = dict[str, Any]

# Numbers every stand-in refuses as invalid.
BAD_NUMBER = "+8617000000000"


@dataclass
class Received:
    """One request the stand-in accepted or refused."""

    at: float
    path: str
    fields: dict[str, Any]
    ok: bool


@dataclass
class ProviderServer:
    """A provider stand-in: alibaba, tencent, twilio, webhook or fcm (whose secret is the service
    account's private key, PEM)."""

    kind: str
    user: str = "test-id"
    secret: str = "test-secret"
    fault_status: int | None = None
    fault_share: float = 1.0
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    token_requests: int = 0
    issued: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[Received]:
        """Requests that were sent successfully."""
        with self._lock:
            return [r for r in self.received if r.ok]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        arrived = time.time()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if scope["method"] == "GET" and scope["path"] == "/__received":
            # For a test driving this stand-in in another process.
            with self._lock:
                rows = [
                    {"at": r.at, "reference": r.fields.get("reference"), "ok": r.ok} for r in self.received
                ]
            await _answer(send, 200, rows)
            return
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.kind == "fcm" and scope["path"] == "/token":
            status, answer = self._fcm_token(headers, body)
            if status != 200:  # a refused exchange is a refused request; granted ones are counted apart
                with self._lock:
                    self.received.append(Received(arrived, scope["path"], {}, False))
            await _answer(send, status, answer)
            return
        status, answer, fields = getattr(self, f"_{self.kind}")(scope["path"], headers, body)
        extra = [(b"apns-id", headers.get("apns-id", "").encode())] if self.kind == "apns" else []
        if status < 300 and self.fault_status and random.random() < self.fault_share:
            status, answer = self.fault_status, {"code": "injected", "message": "injected fault"}
        with self._lock:
            self.received.append(Received(arrived, scope["path"], fields, status < 300 and _ok(answer)))
        await _answer(send, status, answer, extra)

    # -- protocols ------------------------------------------------------------------------------
    def _alibaba(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, Any]]:
        params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        given = params.pop("Signature", "")
        expected = rpc_signature(self.secret, "POST", params)
        if params.get("AccessKeyId") != self.user:
            return (
                404,
                {"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."},
                params,
            )
        if not hmac.compare_digest(given, expected):
            return (
                400,
                {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched."},
                params,
            )
        if params.get("Action") != "SendSms" or params.get("Version") != "2017-05-25":
            return 400, {"Code": "InvalidAction", "Message": "bad action"}, params
        if "+86" + params.get("PhoneNumbers", "") == BAD_NUMBER:
            return 200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号"}, params
        return 200, {"Code": "OK", "Message": "OK", "BizId": f"{random.randint(10**15, 10**16)}^0"}, params

    def _tencent(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, Any]]:
        payload = json.loads(body)
        ts = int(headers.get("x-tc-timestamp", "0"))
        expected = authorization(
            self.user, self.secret, "sms", headers.get("host", ""), headers.get("content-type", ""), body, ts
        )
        if headers.get("x-tc-action") != "SendSms" or headers.get("x-tc-version") != "2021-01-11":
            return 200, {"Response": {"Error": {"Code": "InvalidAction", "Message": "bad"}}}, payload
        if not hmac.compare_digest(headers.get("authorization", ""), expected):
            error = {
                "Code": "AuthFailure.SignatureFailure",
                "Message": "The provided credentials could not be validated.",
            }
            return 200, {"Response": {"Error": error, "RequestId": str(uuid.uuid4())}}, payload
        number = payload["PhoneNumberSet"][0]
        code, message = (
            ("InvalidParameterValue.IncorrectPhoneNumber", "手机号格式错误")
            if number == BAD_NUMBER
            else ("Ok", "send success")
        )
        status = {
            "SerialNo": uuid.uuid4().hex,
            "PhoneNumber": number,
            "Fee": 1,
            "SessionContext": payload.get("SessionContext", ""),
            "Code": code,
            "Message": message,
            "IsoCode": "CN",
        }
        return 200, {"Response": {"SendStatusSet": [status], "RequestId": str(uuid.uuid4())}}, payload

    def _twilio(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, Any]]:
        form: dict[str, Any] = {}
        for k, v in parse_qsl(body.decode(), keep_blank_values=True):
            form.setdefault(k, []).append(v)
        fields = {k: v[0] if len(v) == 1 else v for k, v in form.items()}
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.secret}".encode()).decode()
        if not hmac.compare_digest(headers.get("authorization", ""), expected):
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}, fields
        if path != f"/2010-04-01/Accounts/{self.user}/Messages.json":
            return 404, {"code": 20404, "message": "not found", "status": 404}, fields
        if fields.get("To") == BAD_NUMBER:
            return (
                400,
                {"code": 21211, "message": "The 'To' number is not a valid phone number.", "status": 400},
                fields,
            )
        return 201, {"sid": "SM" + uuid.uuid4().hex, "status": "queued", "to": fields.get("To")}, fields

    def _fcm_token(self, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        form = dict(parse_qsl(body.decode()))
        public = serialization.load_pem_private_key(self.secret.encode(), password=None).public_key()
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                public,  # type: ignore[arg-type]
                algorithms=["RS256"],
                audience="https://oauth2.googleapis.com/token",  # what Google's endpoint requires
                issuer=self.user,
            )
        except jwt.PyJWTError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if (
            form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer"
            or claims.get("scope") != FCM_SCOPE
        ):
            return 400, {"error": "invalid_scope", "error_description": "bad grant or scope"}
        token = "ya29." + uuid.uuid4().hex
        with self._lock:
            self.token_requests += 1
            self.issued.add(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _fcm(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, Any]]:
        payload = json.loads(body)
        message = payload.get("message", {})
        fields = {**message, "reference": message.get("data", {}).get("reference")}
        if headers.get("authorization", "").removeprefix("Bearer ") not in self.issued:
            return (
                401,
                {"error": {"code": 401, "message": "invalid token", "status": "UNAUTHENTICATED"}},
                fields,
            )
        if path != "/v1/projects/tidings-test/messages:send":
            return 404, {"error": {"code": 404, "message": "no such project", "status": "NOT_FOUND"}}, fields
        if message.get("token") == BAD_NUMBER or str(message.get("token")).startswith("dead-"):
            detail = {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "UNREGISTERED",
            }
            error = {
                "code": 404,
                "message": "Requested entity was not found.",
                "status": "NOT_FOUND",
                "details": [detail],
            }
            return 404, {"error": error}, fields
        return 200, {"name": f"projects/tidings-test/messages/0:{uuid.uuid4().int % 10**16}"}, fields

    def _apns(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, Any]]:
        payload = json.loads(body)
        token = path.removeprefix("/3/device/")
        fields = {**payload, "token": token, "topic": headers.get("apns-topic")}
        public = serialization.load_pem_private_key(self.secret.encode(), password=None).public_key()
        try:
            claims = jwt.decode(
                headers.get("authorization", "").removeprefix("bearer "),
                public,  # type: ignore[arg-type]
                algorithms=["ES256"],
            )
        except jwt.PyJWTError:
            return 403, {"reason": "InvalidProviderToken"}, fields
        if claims.get("iss") != self.user:
            return 403, {"reason": "InvalidProviderToken"}, fields
        if headers.get("apns-topic") != "com.example.loyalty":
            return 400, {"reason": "BadTopic"}, fields
        if token == BAD_NUMBER or token.startswith("dead-"):
            return 410, {"reason": "Unregistered", "timestamp": int(time.time() * 1000)}, fields
        return 200, {}, fields

    def _webhook(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, Any]]:
        payload = json.loads(body)
        if not verify_timestamped(self.secret, body, headers.get(SIGNATURE_HEADER), time.time()):
            return 401, {"code": "bad_signature", "message": "signature does not verify"}, payload
        if payload.get("to") == BAD_NUMBER:
            return 422, {"code": "invalid_number", "message": "not a mobile number"}, payload
        return 200, {"id": "wh_" + uuid.uuid4().hex}, payload


def _ok(answer: Any) -> bool:
    if not isinstance(answer, dict):
        return False
    if "Response" in answer:
        statuses = answer["Response"].get("SendStatusSet") or []
        return bool(statuses) and statuses[0].get("Code") == "Ok"
    if "name" in answer or answer == {}:
        return True
    if "Code" in answer:
        return bool(answer.get("Code") == "OK")
    return "code" not in answer


async def _answer(
    send: Any, status: int, answer: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    raw = json.dumps(answer, ensure_ascii=False).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(raw)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


if __name__ == "__main__":
    # python -m tests.providers KIND PORT: a stand-in in its own process, so its clock stamps
    # arrivals without sharing a GIL with the gateway under test.
    import sys

    import uvicorn

    uvicorn.run(ProviderServer(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
