"""Local stand-ins that speak each provider's protocol and check its signature (tests only).

One raw ASGI app per instance; ``kind`` picks the protocol. Every request is recorded with the
time it arrived; ``fault`` makes it answer an HTTP error (all or a share of requests) and
``delay`` makes it slow.

The signature checks below are written from each provider's published algorithm (and, for our
own webhook, from the format docs/providers.md documents), never with the signing code in
``channels/``: a mistake in the gateway's signer must make these stand-ins refuse its requests,
not be mirrored by them. This module imports nothing from ``channels/``;
tests/unit/test_provider_signatures.py pins both sides to the providers' worked examples.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

Scope = dict[str, Any]

# Numbers every stand-in refuses as invalid.
BAD_NUMBER = "+8617000000000"


# -- Alibaba Cloud: RPC signature (SignatureMethod HMAC-SHA1, SignatureVersion 1.0) ---------------
# Every parameter but Signature, sorted by name; each name and value percent-encoded as UTF-8 with
# only A-Z a-z 0-9 - _ . ~ left as they are (so a space is %20, "*" is %2A, "~" stays "~"), joined
# as name=value with "&". StringToSign = HTTPMethod & pct("/") & pct(that query); the signature is
# the Base64 of its HMAC-SHA1 under the key AccessKeySecret + "&".
_RFC3986_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def alibaba_percent_encode(text: str) -> str:
    """Alibaba's percent-encoding of one name or value, byte by byte."""
    return "".join(chr(b) if b in _RFC3986_UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def alibaba_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """The RPC StringToSign of a request with these parameters."""
    pairs = sorted((name, value) for name, value in params.items() if name != "Signature")
    query = "&".join(f"{alibaba_percent_encode(n)}={alibaba_percent_encode(v)}" for n, v in pairs)
    return method.upper() + "&" + alibaba_percent_encode("/") + "&" + alibaba_percent_encode(query)


def alibaba_rpc_signature(access_key_secret: str, method: str, params: Mapping[str, str]) -> str:
    """The Signature parameter Alibaba expects for these parameters."""
    key = (access_key_secret + "&").encode("utf-8")
    mac = hmac.new(key, alibaba_string_to_sign(method, params).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def alibaba_signature_ok(access_key_secret: str, method: str, params: Mapping[str, str]) -> bool:
    """Whether ``params`` (Signature included) are signed with HMAC-SHA1 1.0 and this secret."""
    if params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
        return False
    expected = alibaba_rpc_signature(access_key_secret, method, params)
    return hmac.compare_digest(params.get("Signature", "").encode(), expected.encode())


# -- Tencent Cloud API 3.0: TC3-HMAC-SHA256 -------------------------------------------------------
# CanonicalRequest = Method \n URI \n Query \n CanonicalHeaders \n SignedHeaders \n
#   lowercase hex SHA-256 of the body; CanonicalHeaders is "name:value\n" for each signed header
#   (name and value lowercased and trimmed, names sorted), SignedHeaders the names joined by ";"
#   (content-type and host at least).
# StringToSign = "TC3-HMAC-SHA256" \n X-TC-Timestamp \n Date/service/tc3_request \n
#   hex SHA-256 of CanonicalRequest, Date being the UTC date of the timestamp.
# SecretDate = HMAC-SHA256("TC3" + SecretKey, Date), SecretService = HMAC-SHA256(SecretDate,
#   service), SecretSigning = HMAC-SHA256(SecretService, "tc3_request"); Signature = hex
#   HMAC-SHA256(SecretSigning, StringToSign).
# Authorization = "TC3-HMAC-SHA256 Credential=" SecretId/Date/service/tc3_request
#   ", SignedHeaders=" SignedHeaders ", Signature=" Signature.
_TC3_AUTHORIZATION = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/,\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z0-9-]+)"
    r"/tc3_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})"
)


def tc3_canonical_request(
    method: str, uri: str, query: str, headers: Mapping[str, str], signed: Sequence[str], body: bytes
) -> str:
    """The CanonicalRequest over the named headers (``headers`` keyed by lowercase name)."""
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip().lower()}\n" for name in signed)
    lines = [
        method.upper(),
        uri,
        query,
        canonical_headers,
        ";".join(signed),
        hashlib.sha256(body).hexdigest(),
    ]
    return "\n".join(lines)


def tc3_string_to_sign(timestamp: int, service: str, canonical_request: str) -> str:
    """The StringToSign; the credential date is the UTC date of the timestamp."""
    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n{digest}"


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    """The hex signature, with the key derived from the SecretKey, date and service."""

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    signing_key = mac(mac(mac(("TC3" + secret_key).encode("utf-8"), date), service), "tc3_request")
    return hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def tencent_authorization_ok(
    secret_id: str,
    secret_key: str,
    service: str,
    method: str,
    uri: str,
    headers: Mapping[str, str],
    body: bytes,
    query: str = "",
) -> bool:
    """Whether the request's Authorization header is a TC3-HMAC-SHA256 signature of it by this key."""
    match = _TC3_AUTHORIZATION.fullmatch(headers.get("authorization", ""))
    timestamp = headers.get("x-tc-timestamp", "")
    if match is None or not re.fullmatch(r"[0-9]{1,12}", timestamp):
        return False
    signed = match["signed"].split(";")
    if (
        match["id"] != secret_id
        or match["service"] != service
        or match["date"] != time.strftime("%Y-%m-%d", time.gmtime(int(timestamp)))
        or not {"content-type", "host"} <= set(signed)
        or signed != sorted(set(signed))
    ):
        return False
    canonical = tc3_canonical_request(method, uri, query, headers, signed, body)
    expected = tc3_signature(
        secret_key, match["date"], service, tc3_string_to_sign(int(timestamp), service, canonical)
    )
    return hmac.compare_digest(match["signature"].encode(), expected.encode())


# -- Twilio: HTTP Basic authentication, AccountSid as user and AuthToken as password (RFC 7617) --
def basic_auth_ok(header: str | None, user: str, password: str) -> bool:
    """Whether an Authorization header is ``Basic base64(user ":" password)`` for these."""
    scheme, _, credentials = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    given_user, colon, given_password = decoded.partition(":")
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    return bool(colon) and user_ok and password_ok


# -- Tidings' webhook signature (docs/providers.md, "The webhook signature") ----------------------
# X-Tidings-Signature: t=<unix seconds>,v1=<lowercase hex HMAC-SHA256, keyed with the secret's UTF-8
# bytes, of the ASCII digits of t, ".", then the body bytes as sent>; refused when t is more than
# 300 seconds away from the receiver's clock.
WEBHOOK_SIGNATURE_HEADER = "x-tidings-signature"
WEBHOOK_TOLERANCE = 300


def webhook_signature_ok(
    secret: str, body: bytes, header: str | None, now: float, tolerance: float = WEBHOOK_TOLERANCE
) -> bool:
    """Whether an X-Tidings-Signature value signs this body with this secret, recently."""
    fields: dict[str, str] = {}
    for item in (header or "").split(","):
        name, equals, value = item.partition("=")
        if not equals or name in fields:
            return False
        fields[name] = value
    stamp, given = fields.get("t", ""), fields.get("v1", "")
    if not re.fullmatch(r"[0-9]{1,12}", stamp) or not re.fullmatch(r"[0-9a-f]{64}", given):
        return False
    if abs(now - int(stamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode("utf-8"), stamp.encode("ascii") + b"." + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest().encode(), given.encode())


# -- FCM: the OAuth 2.0 JWT bearer assertion of a Google service account -------------------------
# RS256, iss = the service account's client_email, scope = the FCM scope, aud = Google's token
# endpoint (whatever URL the exchange is sent to), exp at most one hour after iat.
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def google_assertion_claims(
    assertion: str, public_key: PublicKeyTypes, client_email: str
) -> dict[str, Any] | None:
    """The claims of a service-account assertion signed with the key, or None when Google would
    refuse it as an invalid grant (signature, issuer, audience, times)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion,
            public_key,  # type: ignore[arg-type]
            algorithms=["RS256"],
            audience=GOOGLE_TOKEN_AUDIENCE,
            issuer=client_email,
            options={"require": ["iss", "aud", "iat", "exp"]},
        )
    except jwt.PyJWTError:
        return None
    issued, expires = claims["iat"], claims["exp"]
    if not isinstance(issued, int) or not isinstance(expires, int) or not 0 < expires - issued <= 3600:
        return None
    return claims


class Disconnected(Exception):
    """The client went away before its whole request body arrived (say, a worker killed mid-send)."""


async def read_body(receive: Any) -> bytes:
    """A whole ASGI request body; raises :class:`Disconnected` when the client left before sending it."""
    body = b""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise Disconnected
        chunk: bytes = msg.get("body", b"")
        body += chunk
        if not msg.get("more_body"):
            return body


@dataclass
class Received:
    """One request the stand-in accepted or refused."""

    at: float
    path: str
    fields: dict[str, Any]
    ok: bool


@dataclass
class ProviderServer:
    """A provider stand-in: alibaba, alibaba-voice, tencent, tencent-voice, twilio, webhook, wechat (user
    the AppID, secret the AppSecret) or fcm (whose secret is the service account's private key, PEM)."""

    kind: str
    user: str = "test-id"
    secret: str = "test-secret"
    fault_status: int | None = None
    fault_share: float = 1.0
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    token_requests: int = 0
    issued: set[str] = field(default_factory=set)
    # WeChat: how long a token lives (expires_in), the tokens expired early (42001), sends refused so.
    token_ttl: int = 7200
    expired: set[str] = field(default_factory=set)
    token_refusals: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[Received]:
        """Requests that were sent successfully."""
        with self._lock:
            return [r for r in self.received if r.ok]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            body = await read_body(receive)
        except Disconnected:
            return  # the sender went away: nothing was delivered
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
        query = dict(parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True))
        if self.kind == "wechat" and scope["path"] == "/cgi-bin/token":
            status, answer = self._wechat_token(scope["method"], query)
            if "access_token" not in answer:
                with self._lock:
                    self.received.append(Received(arrived, scope["path"], {}, False))
            await _answer(send, status, answer)
            return
        if self.kind == "wechat":
            headers["x-query-access-token"] = query.get("access_token", "")
        if self.kind == "fcm" and scope["path"] == "/token":
            status, answer = self._fcm_token(headers, body)
            if status != 200:  # a refused exchange is a refused request; granted ones are counted apart
                with self._lock:
                    self.received.append(Received(arrived, scope["path"], {}, False))
            await _answer(send, status, answer)
            return
        status, answer, fields = getattr(self, f"_{self.kind.replace('-', '_')}")(
            scope["path"], headers, body
        )
        extra = [(b"apns-id", headers.get("apns-id", "").encode())] if self.kind == "apns" else []
        if status < 300 and self.fault_status and random.random() < self.fault_share:
            status, answer = self.fault_status, {"code": "injected", "message": "injected fault"}
        with self._lock:
            self.received.append(Received(arrived, scope["path"], fields, status < 300 and _ok(answer)))
        await _answer(send, status, answer, extra)

    # -- protocols ------------------------------------------------------------------------------
    def _alibaba(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, Any]]:
        params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        signed = alibaba_signature_ok(self.secret, "POST", params)
        params.pop("Signature", None)
        if params.get("AccessKeyId") != self.user:
            return (
                404,
                {"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."},
                params,
            )
        if not signed:
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

    def _alibaba_voice(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, Any]]:
        """Alibaba Cloud dyvmsapi SingleCallByTts: the same RPC signature as SendSms."""
        params = dict(parse_qsl(body.decode(), keep_blank_values=True))
        signed = alibaba_signature_ok(self.secret, "POST", params)
        params.pop("Signature", None)
        if params.get("AccessKeyId") != self.user:
            return (
                404,
                {"Code": "InvalidAccessKeyId.NotFound", "Message": "Specified access key is not found."},
                params,
            )
        if not signed:
            return (
                400,
                {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched."},
                params,
            )
        if params.get("Action") != "SingleCallByTts" or params.get("Version") != "2017-05-25":
            return 400, {"Code": "InvalidAction", "Message": "bad action"}, params
        if not params.get("TtsCode", "").startswith("TTS_"):
            return 200, {"Code": "isv.TTS_TEMPLATE_ILLEGAL", "Message": "TTS模板不合法"}, params
        if len(params.get("TtsParam", "")) >= 250:
            return 200, {"Code": "isv.PARAM_LENGTH_LIMIT", "Message": "参数长度受限"}, params
        if "+86" + params.get("CalledNumber", "") == BAD_NUMBER:
            return 200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "号码格式非法"}, params
        call_id = f"{random.randint(10**11, 10**12)}^{random.randint(10**10, 10**11)}"
        return 200, {"Code": "OK", "Message": "OK", "RequestId": str(uuid.uuid4()), "CallId": call_id}, params

    def _tencent_voice(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, Any]]:
        """Tencent Cloud VMS SendTtsVoice: TC3-HMAC-SHA256 for the service "vms"."""
        payload = json.loads(body)
        signed = tencent_authorization_ok(self.user, self.secret, "vms", "POST", path, headers, body)
        request_id = str(uuid.uuid4())
        if headers.get("x-tc-action") != "SendTtsVoice" or headers.get("x-tc-version") != "2020-09-02":
            return 200, {"Response": {"Error": {"Code": "InvalidAction", "Message": "bad"}}}, payload
        if not signed:
            error = {
                "Code": "AuthFailure.SignatureFailure",
                "Message": "The provided credentials could not be validated.",
            }
            return 200, {"Response": {"Error": error, "RequestId": request_id}}, payload
        if payload.get("CalledNumber") == BAD_NUMBER:
            error = {"Code": "FailedOperation.InvalidParameters", "Message": "无效参数"}
            return 200, {"Response": {"Error": error, "RequestId": request_id}}, payload
        status = {"CallId": uuid.uuid4().hex, "SessionContext": payload.get("SessionContext", "")}
        return 200, {"Response": {"SendStatus": status, "RequestId": request_id}}, payload

    def _tencent(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, Any]]:
        payload = json.loads(body)
        signed = tencent_authorization_ok(self.user, self.secret, "sms", "POST", path, headers, body)
        if headers.get("x-tc-action") != "SendSms" or headers.get("x-tc-version") != "2021-01-11":
            return 200, {"Response": {"Error": {"Code": "InvalidAction", "Message": "bad"}}}, payload
        if not signed:
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
        if not basic_auth_ok(headers.get("authorization"), self.user, self.secret):
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
        claims = google_assertion_claims(form.get("assertion", ""), public, self.user)
        if claims is None:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if form.get("grant_type") != JWT_BEARER_GRANT or claims.get("scope") != FCM_SCOPE:
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

    # -- WeChat: GET /cgi-bin/token, POST /cgi-bin/message/subscribe/send?access_token= ---------------
    def expire_tokens(self) -> None:
        """Every token issued so far is expired: sends with one are answered 42001."""
        with self._lock:
            self.expired |= self.issued

    def _wechat_token(self, method: str, query: dict[str, str]) -> tuple[int, Any]:
        if method != "GET" or query.get("grant_type") != "client_credential":
            return 200, {"errcode": 40002, "errmsg": "invalid grant_type"}
        if query.get("appid") != self.user:
            return 200, {"errcode": 40013, "errmsg": "invalid appid"}
        if query.get("secret") != self.secret:
            return 200, {
                "errcode": 40001,
                "errmsg": "invalid credential, access_token is invalid or not latest",
            }
        token = "wx." + uuid.uuid4().hex
        with self._lock:
            self.token_requests += 1
            self.issued.add(token)
        return 200, {"access_token": token, "expires_in": self.token_ttl}

    def _wechat(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, Any]]:
        payload = json.loads(body)
        token = headers.get("x-query-access-token", "")
        with self._lock:
            known, expired = token in self.issued, token in self.expired
            if not known or expired:
                self.token_refusals += 1
        if not known:
            return 200, {"errcode": 40001, "errmsg": "invalid credential"}, payload
        if expired:
            return 200, {"errcode": 42001, "errmsg": "access_token expired"}, payload
        if path != "/cgi-bin/message/subscribe/send":
            return 404, {"errcode": 404, "errmsg": "not found"}, payload
        if not payload.get("template_id"):
            return 200, {"errcode": 40037, "errmsg": "invalid template_id"}, payload
        if payload.get("miniprogram_state") not in ("developer", "trial", "formal"):
            return 200, {"errcode": 47001, "errmsg": "data format error"}, payload
        touser = str(payload.get("touser", ""))
        if touser == BAD_NUMBER or touser.startswith("oBad"):
            return 200, {"errcode": 40003, "errmsg": "invalid openid"}, payload
        if touser.startswith("oRefuse"):
            return 200, {"errcode": 43101, "errmsg": "user refuse to accept the msg"}, payload
        data = payload.get("data")
        if not isinstance(data, dict) or not data:
            return 200, {"errcode": 47003, "errmsg": "argument invalid! data is empty"}, payload
        for key, item in data.items():
            value = item.get("value") if isinstance(item, dict) else None
            if not isinstance(value, str) or (key.startswith("thing") and len(value) > 20):
                return (
                    200,
                    {"errcode": 47003, "errmsg": f"argument invalid! data.{key}.value invalid"},
                    payload,
                )
        return 200, {"errcode": 0, "errmsg": "ok", "msgid": random.randint(10**17, 10**18)}, payload

    def _webhook(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, Any]]:
        payload = json.loads(body)
        if not webhook_signature_ok(self.secret, body, headers.get(WEBHOOK_SIGNATURE_HEADER), time.time()):
            return 401, {"code": "bad_signature", "message": "signature does not verify"}, payload
        if payload.get("to") == BAD_NUMBER:
            return 422, {"code": "invalid_number", "message": "not a mobile number"}, payload
        return 200, {"id": "wh_" + uuid.uuid4().hex}, payload


def _ok(answer: Any) -> bool:
    if not isinstance(answer, dict):
        return False
    if "errcode" in answer:
        return bool(answer["errcode"] == 0)
    if "Response" in answer:
        if "SendStatus" in answer["Response"]:  # VMS: one call
            return bool(answer["Response"]["SendStatus"].get("CallId"))
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
