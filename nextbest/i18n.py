"""The words on the screens, in English and Simplified Chinese, and which language a person
gets: the page's switch (``?lang=``, then kept in a cookie) before the browser's
``Accept-Language``, English when neither says.

Messages are keyed by a short id; both languages must have every id (tests check). The console
and dashboard scripts get the ids they need as JSON in their page. The counter pop-up runs on
someone else's page and must be able to say "nextbest cannot be reached", so it carries its own
short list (widgets/counter/counter.js).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

__all__ = [
    "DEFAULT_LANG",
    "LANGS",
    "LANG_COOKIE",
    "MESSAGES",
    "Lang",
    "choose_lang",
    "parse_accept_language",
    "subset",
    "translator",
]

Lang = Literal["en", "zh"]
LANGS: tuple[Lang, ...] = ("en", "zh")
DEFAULT_LANG: Lang = "en"
# Not a secret and not a session: a plain preference cookie the switch sets.
LANG_COOKIE = "nextbest_lang"

MESSAGES: dict[Lang, dict[str, str]] = {
    "en": {
        "app.name": "nextbest",
        "app.tagline": "Next-best offers for the front line",
        "lang.switch": "中文",
        "lang.switch_title": "切换到中文",
        "nav.console": "Call console",
        "nav.dashboard": "Supervisor dashboard",
        "nav.crm": "Counter (demo CRM)",
        "nav.api": "API reference",
        "index.lead": "Pick your screen.",
        "index.console": "Outbound agents: work the call queue, one customer at a time.",
        "index.dashboard": "Supervisors: conversion, funnel, lift, failures, audit, approvals.",
        "index.crm": "Store clerks: the counter pop-up inside a mock CRM screen.",
        "signin.title": "Sign in",
        "signin.lead": "Paste the key your administrator gave you. It is exchanged for a "
        "session at once and never stored in this page.",
        "signin.key": "Key",
        "signin.submit": "Sign in",
        "signin.busy": "Signing in…",
        "signin.as": "Signed in as {user} ({role})",
        "signout": "Sign out",
        "signin.ended": "Your session has ended or expired. Sign in again.",
        "signin.wrong_role": "This screen is for {roles}; you are signed in as {role}. "
        "Sign out and sign in with the right key.",
        "role.clerk": "clerk",
        "role.agent": "agent",
        "role.supervisor": "supervisor",
        "role.admin": "admin",
        "error.unreachable": "nextbest cannot be reached. Check the network; nothing was "
        "recorded. Try again in a moment.",
        "error.key_invalid": "This key is unknown, revoked or expired. Ask your administrator "
        "for a new one.",
        "error.session": "Your sign-in has expired. Sign in again; nothing was recorded.",
        "error.forbidden": "Your role may not do this.",
        "error.no_data": "No warehouse data is loaded yet; ask your administrator.",
        "error.rate_limited": "Too many look-ups in a minute. Wait {seconds} s and try again.",
        "error.server": "nextbest had a problem and recorded nothing. Try again; if it "
        "persists, tell your administrator.",
        "error.bad_number": "That is not a valid mobile number (11 digits starting 13-19).",
        "error.already_held": "The customer already has this service.",
        "error.not_found": "Not found: it may have been removed or belong to another queue.",
        "error.generic": "Something went wrong: {detail}",
        # console
        "console.title": "Call console",
        "console.next": "Next customer",
        "console.next_hint": "Press N for the next customer",
        "console.loading": "Fetching the next customer…",
        "console.empty": "No customer is waiting in your queue right now. Try again later.",
        "console.customer": "Customer",
        "console.campaign": "Campaign",
        "console.segment": "Segment",
        "console.selling_point": "What works with them",
        "console.brand": "Brand",
        "console.lifecycle": "Lifecycle",
        "console.services": "Current services",
        "console.none": "none",
        "console.attempt": "Attempt {n}",
        "console.lease": "Reserved for you until {time}",
        "console.offers": "Offers",
        "console.fit": "Fit",
        "console.price": "{price} yuan a month",
        "console.reasons": "Why",
        "console.script": "Script",
        "console.opening": "Opening",
        "console.pitch": "Pitch",
        "console.objections": "If they say…",
        "console.closing": "Closing",
        "console.outcome": "Outcome",
        "console.offer_for_outcome": "Offer",
        "console.dnd_confirm": "This number will never be called again by any campaign.",
        "stage.potential": "potential",
        "stage.active": "active",
        "stage.silent": "silent (3 months unused)",
        "stage.churn_risk": "churn risk",
        "stage.churned": "churned",
        "stage.none": "none",
        "outcome.accepted": "Subscribed",
        "outcome.declined": "Declined",
        "outcome.considering": "Considering",
        "outcome.callback": "Call back",
        "outcome.no_answer": "No answer",
        "outcome.wrong_number": "Wrong number",
        "outcome.do_not_call": "Do not call",
        "console.callback_at": "Call back at",
        "console.callback_missing": "Pick a date and time in the future for the call-back.",
        "console.reason": "Reason",
        "console.confirm": "Record",
        "console.recorded": "Recorded: {outcome}. Press N for the next customer.",
        "console.tally": "Your day",
        "console.tally.calls": "Calls",
        "console.tally.accepted": "Subscribed",
        "console.tally.declined": "Declined",
        "console.tally.callbacks": "Call-backs",
        "console.tally.no_answer": "No answer",
        "console.tally.rate": "Conversion",
        "console.keys": "Keys: N next · S subscribed · D declined · B call back · "
        "U no answer · W wrong number · X do not call",
        # decline reasons, shared with the counter pop-up
        "reason.price": "Too expensive",
        "reason.not_interested": "Not interested",
        "reason.has_similar": "Already has something similar",
        "reason.no_time": "No time now",
        "reason.handset": "Handset does not support it",
        "reason.other": "Other",
        # dashboard
        "dash.title": "Supervisor dashboard",
        "dash.since": "From",
        "dash.until": "To",
        "dash.apply": "Show",
        "dash.period": "{since} to {until} (China Standard Time)",
        "dash.scope_store": "Store {store} only",
        "dash.scope_team": "Team {team} only",
        "dash.contacts": "Contacts",
        "dash.presented": "Offers presented",
        "dash.accepted": "Accepted",
        "dash.rate": "Conversion",
        "dash.revenue": "Monthly revenue",
        "dash.lift": "Lift over control",
        "dash.retention": "Still active at 90 days",
        "dash.series": "Offers presented and accepted per day",
        "dash.conversion_by": "Conversion by",
        "dim.agent": "Agent",
        "dim.store": "Store",
        "dim.channel": "Channel",
        "dim.offer": "Offer",
        "dim.campaign": "Campaign",
        "dim.segment": "Segment",
        "dim.day": "Day",
        "dim.reason": "Reason",
        "dim.flag": "Flag",
        "dim.none": "(none)",
        "col.presented": "Presented",
        "col.accepted": "Accepted",
        "col.rate": "Rate",
        "col.revenue": "Revenue (yuan/month)",
        "col.count": "Count",
        "col.sales": "Sales",
        "col.failed": "Failed",
        "col.share": "Share",
        "col.revenue_lost": "Revenue lost",
        "col.flags": "Flags",
        "col.sales_flagged": "Sales flagged",
        "col.description": "What it means",
        "col.low_high": "Interval",
        "col.gap": "Gap (points)",
        "col.verdict": "Verdict",
        "col.expected": "Expected",
        "col.model": "Ranked",
        "col.control": "Control",
        "col.lift": "Lift",
        "col.when": "When",
        "col.customer": "Customer",
        "col.sold_by": "Sold by",
        "col.status": "Status",
        "col.detail": "Detail",
        "col.period": "Runs",
        "col.submitted_by": "Submitted by",
        "dash.funnel": "Funnel",
        "funnel.targeted": "Targeted",
        "funnel.reached": "Reached",
        "funnel.presented": "Presented",
        "funnel.accepted": "Accepted",
        "funnel.provisioned": "Provisioned",
        "funnel.retained": "Active at 90 days",
        "dash.agents": "Agents against the team",
        "dash.lift_title": "Ranked offers against the control group",
        "dash.failures": "Provisioning failures",
        "dash.failed_sales": "Failed sales",
        "dash.audit": "Commission-audit flags",
        "dash.campaigns": "Campaigns awaiting approval",
        "dash.no_campaigns": "No campaign is waiting for approval.",
        "dash.approve": "Approve",
        "dash.reject": "Reject",
        "dash.note": "Note (optional)",
        "dash.approved": "Approved",
        "dash.rejected": "Rejected",
        "dash.csv": "CSV",
        "dash.no_rows": "Nothing in this period.",
        "dash.retry": "Send again",
        "dash.retried": "Sent again",
        "verdict.below": "behind",
        "verdict.within": "in line",
        "verdict.above": "ahead",
        "verdict.no_data": "no data",
        "verdict.higher": "better than control",
        "verdict.lower": "worse than control",
        "verdict.unclear": "not yet clear",
        "status.pending": "pending",
        "status.active": "active",
        "status.failed": "failed",
        "status.cancelled": "cancelled",
        # demo CRM
        "crm.title": "Customer service — CRM (demo)",
        "crm.search": "Customer number",
        "crm.find": "Find",
        "crm.hint": "Try 13800000001 (a typical customer), 13800000002 (do not disturb) or "
        "13800000009 (unknown to the warehouse).",
        "crm.ticket": "Service request",
        "crm.ticket.type": "Request type",
        "crm.ticket.bill": "Bill enquiry",
        "crm.ticket.sim": "Replace SIM card",
        "crm.ticket.plan": "Change plan",
        "crm.ticket.notes": "Notes",
        "crm.ticket.save": "Save request",
        "crm.ticket.saved": "Request saved.",
        "crm.widget_note": "The round button at the bottom right is nextbest: it lights up "
        "when there is something to offer, and opens only when you click it.",
    },
    "zh": {
        "app.name": "nextbest",
        "app.tagline": "一线精准营销推荐",
        "lang.switch": "English",
        "lang.switch_title": "Switch to English",
        "nav.console": "外呼工作台",
        "nav.dashboard": "主管看板",
        "nav.crm": "营业厅（演示 CRM）",
        "nav.api": "接口文档",
        "index.lead": "请选择您的工作界面。",
        "index.console": "外呼坐席：按队列逐个联系客户。",
        "index.dashboard": "主管：成功率、漏斗、提升度、开通失败、稽核与审批。",
        "index.crm": "营业员：嵌在演示 CRM 页面里的推荐弹窗。",
        "signin.title": "登录",
        "signin.lead": "粘贴管理员发给您的密钥。它会立即换成会话，不会保存在本页面。",
        "signin.key": "密钥",
        "signin.submit": "登录",
        "signin.busy": "正在登录…",
        "signin.as": "已登录：{user}（{role}）",
        "signout": "退出",
        "signin.ended": "会话已结束或过期，请重新登录。",
        "signin.wrong_role": "此界面供{roles}使用；您当前的身份是{role}。"
        "请退出后用正确的密钥登录。",
        "role.clerk": "营业员",
        "role.agent": "坐席",
        "role.supervisor": "主管",
        "role.admin": "管理员",
        "error.unreachable": "无法连接 nextbest。请检查网络；本次操作未记录，请稍后重试。",
        "error.key_invalid": "密钥无效、已吊销或已过期，请向管理员申请新密钥。",
        "error.session": "登录已过期，请重新登录；本次操作未记录。",
        "error.forbidden": "您的角色无权进行此操作。",
        "error.no_data": "尚未加载经营分析数据，请联系管理员。",
        "error.rate_limited": "一分钟内查询过多，请等待 {seconds} 秒后重试。",
        "error.server": "nextbest 出现问题，本次操作未记录。请重试；如仍有问题请联系管理员。",
        "error.bad_number": "号码无效（应为 13-19 开头的 11 位手机号）。",
        "error.already_held": "客户已订购该业务。",
        "error.not_found": "未找到：可能已被删除或属于其他队列。",
        "error.generic": "出现问题：{detail}",
        "console.title": "外呼工作台",
        "console.next": "下一位客户",
        "console.next_hint": "按 N 键获取下一位客户",
        "console.loading": "正在获取下一位客户…",
        "console.empty": "您的队列中暂时没有待联系的客户，请稍后再试。",
        "console.customer": "客户",
        "console.campaign": "营销活动",
        "console.segment": "客户细分",
        "console.selling_point": "打动点",
        "console.brand": "品牌",
        "console.lifecycle": "生命周期",
        "console.services": "已订业务",
        "console.none": "无",
        "console.attempt": "第 {n} 次联系",
        "console.lease": "为您保留至 {time}",
        "console.offers": "推荐业务",
        "console.fit": "匹配度",
        "console.price": "每月 {price} 元",
        "console.reasons": "推荐理由",
        "console.script": "话术",
        "console.opening": "开场白",
        "console.pitch": "推介",
        "console.objections": "客户异议与应对",
        "console.closing": "结束语",
        "console.outcome": "结果",
        "console.offer_for_outcome": "业务",
        "console.dnd_confirm": "此号码将不再被任何营销活动呼叫。",
        "stage.potential": "潜在",
        "stage.active": "活跃",
        "stage.silent": "沉默（3 个月未使用）",
        "stage.churn_risk": "流失风险",
        "stage.churned": "已流失",
        "stage.none": "无",
        "outcome.accepted": "已订购",
        "outcome.declined": "拒绝",
        "outcome.considering": "考虑中",
        "outcome.callback": "预约回呼",
        "outcome.no_answer": "无人接听",
        "outcome.wrong_number": "号码错误",
        "outcome.do_not_call": "勿扰",
        "console.callback_at": "回呼时间",
        "console.callback_missing": "请选择一个将来的回呼日期和时间。",
        "console.reason": "原因",
        "console.confirm": "记录",
        "console.recorded": "已记录：{outcome}。按 N 键联系下一位客户。",
        "console.tally": "今日成绩",
        "console.tally.calls": "通话",
        "console.tally.accepted": "订购",
        "console.tally.declined": "拒绝",
        "console.tally.callbacks": "回呼",
        "console.tally.no_answer": "无人接听",
        "console.tally.rate": "成功率",
        "console.keys": "快捷键：N 下一位 · S 已订购 · D 拒绝 · B 预约回呼 · U 无人接听 · "
        "W 号码错误 · X 勿扰",
        "reason.price": "价格太高",
        "reason.not_interested": "不感兴趣",
        "reason.has_similar": "已有类似业务",
        "reason.no_time": "现在没时间",
        "reason.handset": "手机不支持",
        "reason.other": "其他",
        "dash.title": "主管看板",
        "dash.since": "从",
        "dash.until": "到",
        "dash.apply": "查询",
        "dash.period": "{since} 至 {until}（北京时间）",
        "dash.scope_store": "仅限门店 {store}",
        "dash.scope_team": "仅限班组 {team}",
        "dash.contacts": "接触客户",
        "dash.presented": "推介次数",
        "dash.accepted": "成功订购",
        "dash.rate": "成功率",
        "dash.revenue": "月收入",
        "dash.lift": "相对对照组提升",
        "dash.retention": "90 天在网率",
        "dash.series": "每日推介与订购",
        "dash.conversion_by": "成功率：按",
        "dim.agent": "坐席/营业员",
        "dim.store": "营业厅",
        "dim.channel": "渠道",
        "dim.offer": "业务",
        "dim.campaign": "营销活动",
        "dim.segment": "客户细分",
        "dim.day": "日期",
        "dim.reason": "原因",
        "dim.flag": "稽核项",
        "dim.none": "（无）",
        "col.presented": "推介",
        "col.accepted": "订购",
        "col.rate": "成功率",
        "col.revenue": "收入（元/月）",
        "col.count": "数量",
        "col.sales": "销售",
        "col.failed": "失败",
        "col.share": "占比",
        "col.revenue_lost": "损失收入",
        "col.flags": "稽核次数",
        "col.sales_flagged": "涉及销售",
        "col.description": "含义",
        "col.low_high": "置信区间",
        "col.gap": "差距（百分点）",
        "col.verdict": "结论",
        "col.expected": "预期",
        "col.model": "模型推荐",
        "col.control": "对照组",
        "col.lift": "提升度",
        "col.when": "时间",
        "col.customer": "客户",
        "col.sold_by": "销售人",
        "col.status": "状态",
        "col.detail": "说明",
        "col.period": "起止日期",
        "col.submitted_by": "提交人",
        "dash.funnel": "营销漏斗",
        "funnel.targeted": "目标客户",
        "funnel.reached": "接触",
        "funnel.presented": "推介",
        "funnel.accepted": "订购",
        "funnel.provisioned": "开通",
        "funnel.retained": "90 天仍在用",
        "dash.agents": "坐席与团队对比",
        "dash.lift_title": "模型推荐与对照组对比",
        "dash.failures": "开通失败",
        "dash.failed_sales": "失败的销售",
        "dash.audit": "佣金稽核",
        "dash.campaigns": "待审批的营销活动",
        "dash.no_campaigns": "没有待审批的营销活动。",
        "dash.approve": "批准",
        "dash.reject": "驳回",
        "dash.note": "备注（可选）",
        "dash.approved": "已批准",
        "dash.rejected": "已驳回",
        "dash.csv": "导出 CSV",
        "dash.no_rows": "此期间没有数据。",
        "dash.retry": "重新开通",
        "dash.retried": "已重新提交",
        "verdict.below": "落后",
        "verdict.within": "持平",
        "verdict.above": "领先",
        "verdict.no_data": "无数据",
        "verdict.higher": "优于对照组",
        "verdict.lower": "不如对照组",
        "verdict.unclear": "尚不明确",
        "status.pending": "处理中",
        "status.active": "已开通",
        "status.failed": "失败",
        "status.cancelled": "已取消",
        "crm.title": "客户服务 — CRM（演示）",
        "crm.search": "客户号码",
        "crm.find": "查询",
        "crm.hint": "试试 13800000001（普通客户）、13800000002（勿扰客户）"
        "或 13800000009（系统中无此客户）。",
        "crm.ticket": "服务请求",
        "crm.ticket.type": "请求类型",
        "crm.ticket.bill": "账单查询",
        "crm.ticket.sim": "补换 SIM 卡",
        "crm.ticket.plan": "变更套餐",
        "crm.ticket.notes": "备注",
        "crm.ticket.save": "保存请求",
        "crm.ticket.saved": "请求已保存。",
        "crm.widget_note": "右下角的圆形按钮就是 nextbest：有可推荐的业务时会亮起，"
        "只有点击时才会打开。",
    },
}


def parse_accept_language(header: str | None) -> list[tuple[str, float]]:
    """``zh-CN,zh;q=0.9,en;q=0.8`` -> [("zh-cn", 1.0), ("zh", 0.9), ("en", 0.8)], best
    first; malformed parts are skipped."""
    ranked: list[tuple[str, float]] = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        if not tag:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = -1.0
        if 0 < quality <= 1:
            ranked.append((tag, quality - position * 1e-6))
    ranked.sort(key=lambda item: item[1], reverse=True)
    return [(tag, round(q, 3)) for tag, q in ranked]


def _supported(value: str | None) -> Lang | None:
    if not value:
        return None
    primary = value.strip().lower().split("-")[0].split("_")[0]
    for lang in LANGS:
        if primary == lang:
            return lang
    return None


def choose_lang(
    query: str | None = None, cookie: str | None = None, accept_language: str | None = None
) -> Lang:
    """The switch (query, then its cookie) wins over the browser; unknown values are ignored."""
    for explicit in (query, cookie):
        if (lang := _supported(explicit)) is not None:
            return lang
    for tag, _quality in parse_accept_language(accept_language):
        if tag == "*":
            break
        if (lang := _supported(tag)) is not None:
            return lang
    return DEFAULT_LANG


def translator(lang: Lang) -> Callable[..., str]:
    """``t("signin.as", user="ana", role="agent")``; an unknown id shows itself, so a missing
    message is visible on the page rather than an empty gap."""
    table = MESSAGES[lang]

    def t(message_id: str, /, **values: object) -> str:
        text = table.get(message_id, message_id)
        return text.format(**values) if values else text

    return t


def subset(lang: Lang, prefixes: Iterable[str]) -> dict[str, str]:
    """The messages whose ids start with one of ``prefixes``, for a page's script."""
    wanted = tuple(prefixes)
    return {key: text for key, text in MESSAGES[lang].items() if key.startswith(wanted)}
