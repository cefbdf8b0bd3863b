"""Verification codes (验证码): ``POST /v1/verifications`` and ``/v1/verifications/check``."""
