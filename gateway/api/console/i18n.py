"""The console's labels in Chinese (the default) and English."""

from __future__ import annotations

LANGS = ("zh-CN", "en")

# key: (zh-CN, en)
LABELS: dict[str, tuple[str, str]] = {
    "app": ("Tidings 控制台", "Tidings console"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出登录", "Sign out"),
    "api_key": ("API 密钥", "API key"),
    "sign_in_hint": (
        "用 API 密钥登录；密钥只在服务器端的会话中使用，浏览器只保存会话标识。",
        "Sign in with an API key; it is used only in a server-side session, the browser keeps a session id.",
    ),
    "bad_key": ("API 密钥无效。", "That API key is not valid."),
    "too_many_failures": (
        "错误的密钥太多，请一分钟后再试。",
        "Too many wrong keys; try again in a minute.",
    ),
    "signed_in_as": ("当前密钥", "Signed in with"),
    "tenant": ("租户", "Tenant"),
    "scopes": ("权限", "Scopes"),
    "home": ("概览", "Overview"),
    "notifications": ("通知", "Notifications"),
    "members": ("会员", "Members"),
    "audit": ("审计日志", "Audit log"),
    "optouts": ("退订", "Opt-outs"),
    "campaigns": ("活动", "Campaigns"),
    "series": ("提醒系列", "Series"),
    "dead_letters": ("死信", "Dead letters"),
    "providers": ("服务商", "Providers"),
    "simulator": ("模拟器收件箱", "Simulator inbox"),
    "search": ("搜索", "Search"),
    "query": ("手机号、邮箱或通知 ID", "Phone, email or notification id"),
    "address": ("手机号或邮箱", "Phone or email"),
    "address_hint": (
        "请输入手机号（任意写法，如 13812345678 或 +86 138-1234-5678）或邮箱地址。",
        "Enter a phone number (any form: 13812345678, +86 138-1234-5678) or an email address.",
    ),
    "status": ("状态", "Status"),
    "any": ("全部", "Any"),
    "from": ("开始时间", "From"),
    "to": ("结束时间", "To"),
    "time_hint": ("北京时间，例如 2026-12-01 09:00", "Beijing time, e.g. 2026-12-01 09:00"),
    "type": ("类型", "Type"),
    "time": ("时间", "Time"),
    "channel": ("渠道", "Channel"),
    "brand": ("品牌", "Brand"),
    "template": ("模板", "Template"),
    "content": ("内容", "Content"),
    "recipient": ("收件人", "Recipient"),
    "provider": ("服务商", "Provider"),
    "error": ("错误", "Error"),
    "reasons": ("原因", "Reasons"),
    "metadata": ("元数据", "Metadata"),
    "events": ("事件", "Events"),
    "attempts": ("发送尝试", "Attempts"),
    "details": ("详情", "Details"),
    "no_results": ("没有结果。", "Nothing found."),
    "older": ("更早 →", "Older →"),
    "newest": ("← 最新", "← Newest"),
    "notification": ("通知", "Notification"),
    "not_found": ("未找到。", "Not found."),
    "member": ("会员", "Member"),
    "member_hint": (
        "会员以密钥哈希标识；号码不会出现在网址中。",
        "Members are named by a keyed hash; no number appears in a URL.",
    ),
    "cap_use": ("本月营销频次", "Marketing sends this month"),
    "of": ("/", "of"),
    "opted_out": ("已退订", "Opted out"),
    "not_opted_out": ("未退订", "Not opted out"),
    "scope": ("范围", "Scope"),
    "all_brands": ("所有品牌", "every brand"),
    "all_channels": ("所有渠道", "every channel"),
    "since": ("起始", "Since"),
    "source": ("来源", "Source"),
    "opt_out": ("退订", "Opt out"),
    "opt_in": ("恢复订阅", "Opt back in"),
    "evidence": ("同意凭证", "Consent evidence"),
    "evidence_hint": (
        "恢复订阅必须记录会员重新同意的凭证，例如“2026-12-01 会员在 App 中勾选同意”。",
        "Opting back in needs the member's renewed consent, e.g. 'ticked consent in the app on 2026-12-01'.",
    ),
    "evidence_missing": ("恢复订阅需要填写同意凭证。", "Opting back in needs consent evidence."),
    "reason": ("原因", "Reason"),
    "done": ("已完成。", "Done."),
    "nothing_changed": ("没有变化。", "Nothing changed."),
    "verify": ("校验哈希链", "Verify the hash chain"),
    "verify_ok": ("哈希链完整：已校验 {n} 条事件。", "The chain holds: {n} events checked."),
    "verify_broken": (
        "哈希链断裂：第 {seq} 条事件（{code}）。",
        "The chain is broken at event {seq} ({code}).",
    ),
    "export_csv": ("导出 CSV", "Export CSV"),
    "seq": ("序号", "Seq"),
    "data": ("数据", "Data"),
    "forbidden": ("此 API 密钥没有权限查看此页面。", "This API key may not see this page."),
    "needs_scope": ("需要权限：{scope}", "Needs the scope: {scope}"),
    "csrf_failed": (
        "表单已过期或不是从本控制台提交的，请重新打开页面再试。",
        "The form expired or was not posted from this console; open the page again and retry.",
    ),
    "bad_input": ("输入有误", "Invalid input"),
    "language": ("English", "中文"),
    "replay": ("重新投递", "Replay"),
    "replay_all": ("全部重新投递", "Replay all"),
    "replayed": ("已重新投递 {n} 条。", "{n} replayed."),
    "circuit": ("熔断状态", "Circuit"),
    "failures": ("连续失败", "Consecutive failures"),
    "rate": ("速率上限", "Rate limit"),
    "per_second": ("条/秒", "per second"),
    "unlimited": ("不限", "unlimited"),
    "routes": ("路由", "Routes"),
    "received": ("收到的消息", "Received"),
    "campaign": ("活动", "Campaign"),
    "campaign_hint": ("活动名称，例如 2026-12-points-expiry", "Campaign name, e.g. 2026-12-points-expiry"),
    "funnel": ("转化漏斗", "Funnel"),
    "experiment": ("实验结论", "Experiment verdict"),
    "variant": ("版本", "Variant"),
    "definition": ("定义", "Definition"),
    "steps": ("步骤", "Steps"),
    "due": ("计划时间", "Due"),
    "count": ("数量", "Count"),
    "open": ("打开", "Open"),
    "recent": ("最近", "Recent"),
    "dev_only": ("仅在 tidings dev 中可用。", "Only in tidings dev."),
}

# Status words: the API's, shown in the reader's language (the word itself in the title).
LABELS.update(
    {
        "st_queued": ("排队中", "queued"),
        "st_scheduled": ("已排期", "scheduled"),
        "st_sending": ("发送中", "sending"),
        "st_sent": ("已发送", "sent"),
        "st_delivered": ("已送达", "delivered"),
        "st_undelivered": ("未送达", "undelivered"),
        "st_suppressed": ("已拦截", "suppressed"),
        "st_failed": ("失败", "failed"),
        "st_cancelled": ("已取消", "cancelled"),
        "st_rejected": ("已拒绝", "rejected"),
        "st_expired": ("记录已过期", "record expired"),
        "f_sent": ("已发送", "sent"),
        "f_delivered": ("已送达", "delivered"),
        "f_clicked": ("已点击", "clicked"),
        "f_converted": ("已转化", "converted"),
        "f_opted_out": ("退订", "opted out"),
        "f_complaints": ("投诉", "complaints"),
        "anchor": ("到期时间", "Anchor"),
        "no_winner": ("暂无胜出版本", "No winner yet"),
        "winner": ("胜出版本", "Winner"),
        "guardrails": ("护栏指标", "Guardrails"),
        "min_sample": ("每个版本最少样本", "Minimum per variant"),
    }
)

_INDEX = {lang: i for i, lang in enumerate(LANGS)}


def pick_lang(cookie: str | None) -> str:
    """The language chosen in the console (cookie), else Chinese: the console speaks Chinese first."""
    if cookie in _INDEX:
        return str(cookie)
    return "zh-CN"


def label(lang: str, key: str, **values: object) -> str:
    """One label; an unknown key shows itself (a missing label is seen, not hidden)."""
    pair = LABELS.get(key)
    text = pair[_INDEX.get(lang, 0)] if pair else key
    return text.format(**values) if values else text
