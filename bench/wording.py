"""Scan time per 150-character message with the full term list, beside a naive loop over the terms, same run.

The naive loop normalizes the text the same way and then tests every term with
`in`; Tidings makes one Aho-Corasick pass (and maps positions only on a hit).

    python -m bench.wording [--messages 20000]
"""

from __future__ import annotations

import argparse
import random
import time

from compliance.wording import WordingMatcher, load_allowed, load_terms

FILLER = "尊敬的银卡会员李女士您的积分将于天后清零立即兑换上海三亚经济舱行李升级券机场贵宾厅体验限时兑换码客服回复退订"


def messages(n: int, seed: int = 2026) -> list[str]:
    """Realistic 150-character reminders; one in ten carries a banned term somewhere."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        chars = [rng.choice(FILLER) for _ in range(140)]
        text = "【星耀商城】" + "".join(chars)
        text = text[:100] + f",{rng.randint(1000, 99999)}积分,FLY{rng.randint(10, 99)}。" + text[100:]
        if i % 10 == 0:
            pos = rng.randint(10, 120)
            text = (
                text[:pos] + rng.choice(["全网最低价", "最 低 價", "ＮＯ．１", "销量\u200b第一"]) + text[pos:]
            )
        out.append(text[:150])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    args = ap.parse_args()
    terms, allowed = load_terms(), load_allowed()
    matcher = WordingMatcher(terms, allowed)
    keys = [matcher.normalize(t.text) for t in terms]
    texts = messages(args.messages)

    def naive(text: str) -> list[str]:
        normalized = matcher.normalize(text)
        return [k for k in keys if k in normalized]

    for fn in (matcher.scan, naive):  # warm-up
        for t in texts[:1000]:
            fn(t)
    results = {}
    for name, fn in (("aho-corasick (tidings)", matcher.scan), ("naive loop over terms", naive)):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for t in texts:
                fn(t)
            best = min(best, time.perf_counter() - started)
        results[name] = best / len(texts) * 1e6
    flagged = sum(1 for t in texts if matcher.scan(t))
    print(
        f"wording: {len(texts)} messages of 150 characters, {len(terms)} terms + {len(allowed)} look-alikes, best of 3"
    )
    for name, micros in results.items():
        print(f"{name:<24} {micros:7.2f} us/message")
    print(f"messages flagged: {flagged}   target: <= 10 us/message")


if __name__ == "__main__":
    main()
