"""The reply table: opt-outs in every case, width and wording; chatter is not one."""

from __future__ import annotations

import pytest

from compliance.replies import ReplyKind, classify

OPT_OUT = [
    "TD",
    "td",
    "Td",
    "ＴＤ",
    "ｔｄ",
    " TD ",
    "TD。",
    "TD!",
    "【TD】",
    "TD 不要再发",
    "TD不要再发了",
    "T",
    "t",
    "R",
    "r",
    "N",
    "Ｒ",
    "退订",
    "退订谢谢",
    "我要退订",
    "请帮我退订",
    "退订!!!",
    "  退 订",
    "拒收",
    "取消订阅",
    "STOP",
    "stop",
    "Stop please",
    "UNSUBSCRIBE",
    "unsubscribe me",
    "0000",
    "00000",
    "T\u200bD",
]
NOT_OPT_OUT = [
    "好的谢谢",
    "怎么兑换",
    "收到",
    "谢谢提醒",
    "Thanks",
    "Thank you",
    "Tomorrow",
    "Really?",
    "NO",
    "不要退订",
    "别退订我",
    "积分怎么用",
    "OK",
    "123",
    "",
    "   ",
    "TDX",
    "Refund",
]


@pytest.mark.parametrize("text", OPT_OUT)
def test_opt_outs(text: str) -> None:
    assert classify(text) is ReplyKind.OPT_OUT


@pytest.mark.parametrize("text", NOT_OPT_OUT)
def test_not_opt_outs(text: str) -> None:
    assert classify(text) is not ReplyKind.OPT_OUT


def test_resubscribe_only_when_unambiguous() -> None:
    assert classify("START") is ReplyKind.RESUBSCRIBE
    assert classify("订阅") is ReplyKind.RESUBSCRIBE
    assert classify("我想订阅吗") is ReplyKind.OTHER


def test_table_size() -> None:
    assert len(OPT_OUT) + len(NOT_OPT_OUT) >= 40
