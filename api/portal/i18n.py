"""The portal's messages in Chinese and English: one dict catalog, a translator per request.

The language is the ``lang`` cookie (set by the switch link on every page), else the first
language of ``Accept-Language`` the portal speaks, else Chinese.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

__all__ = ["DEFAULT_LANG", "LANGS", "MESSAGES", "Lang", "negotiate", "parse_lang", "translator"]

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = get_args(Lang)
DEFAULT_LANG: Lang = "zh"
LANG_NAMES: dict[Lang, str] = {"zh": "中文", "en": "English"}

MESSAGES: dict[str, dict[Lang, str]] = {
    "app.title": {"zh": "智造监测门户", "en": "zhizao portal"},
    "nav.home": {"zh": "首页", "en": "Home"},
    "nav.logout": {"zh": "退出", "en": "Log out"},
    "nav.language": {"zh": "语言", "en": "Language"},
    "nav.signed_in_as": {"zh": "当前用户：{name}（{role}）", "en": "Signed in as {name} ({role})"},
    "role.engineer": {"zh": "工程师", "en": "engineer"},
    "role.factory_admin": {"zh": "工厂管理员", "en": "factory admin"},
    "role.commission": {"zh": "经信委", "en": "commission"},
    "role.admin": {"zh": "管理员", "en": "administrator"},
    "login.title": {"zh": "登录", "en": "Log in"},
    "login.token": {"zh": "API 令牌", "en": "API token"},
    "login.hint": {
        "zh": "粘贴管理员发给您的令牌（以 zz_ 开头）。令牌不会保存在浏览器中。",
        "en": "Paste the token your administrator gave you (it starts with zz_). "
        "The browser never stores it.",
    },
    "login.submit": {"zh": "登录", "en": "Log in"},
    "login.wrong": {
        "zh": "该令牌未知、已吊销或已过期；请检查后重新输入。",
        "en": "This token is unknown, revoked or expired; check it and try again.",
    },
    "login.empty": {"zh": "请输入 API 令牌。", "en": "Enter an API token."},
    "login.expired": {
        "zh": "会话已结束，请重新登录。",
        "en": "Your session has ended; log in again.",
    },
    "logout.done": {"zh": "您已退出。", "en": "You have logged out."},
    "csrf.refused": {
        "zh": "表单已过期或并非来自本门户；请刷新页面后重新提交。",
        "en": "This form has expired or did not come from this portal; reload the page and "
        "submit it again.",
    },
    "error.title": {"zh": "出错了", "en": "Something is wrong"},
    "error.not_found": {
        "zh": "未找到该页面或工厂，或您无权查看。",
        "en": "This page or factory does not exist, or your token may not see it.",
    },
    "error.forbidden": {
        "zh": "您的角色不能打开此页面（{policy}）。",
        "en": "Your role may not open this page ({policy}).",
    },
    "error.unavailable": {
        "zh": "数据库暂时无法访问，请稍后刷新。",
        "en": "The time-series database cannot be reached right now; reload in a moment.",
    },
    "error.bad_at": {
        "zh": "时间参数 at 无效：请使用 ISO 8601 格式，例如 2026-03-02T10:00:00+08:00。",
        "en": "The time parameter at is not valid: use ISO 8601, e.g. 2026-03-02T10:00:00+08:00.",
    },
    "home.title": {"zh": "工厂", "en": "Factories"},
    "home.none": {"zh": "您的令牌看不到任何工厂。", "en": "Your token sees no factory."},
    "home.line_overview": {"zh": "产线概览", "en": "Line overview"},
    "home.district": {"zh": "区", "en": "District"},
    "home.no_telemetry": {
        "zh": "经信委用户只能查看汇总指标，不能查看车间实时数据。",
        "en": "Commission users see aggregates only, never live shop-floor data.",
    },
    "site.title": {"zh": "{site} 产线概览", "en": "{site}: line overview"},
    "site.as_of": {"zh": "数据时间：{now}", "en": "As of {now}"},
    "site.refresh": {"zh": "每 {s} 秒自动刷新", "en": "Refreshes every {s} s"},
    "site.line": {"zh": "产线 {line}", "en": "Line {line}"},
    "site.shift": {
        "zh": "当前班次：{name}（{date}，{start}–{end}）",
        "en": "Current shift: {name} ({date}, {start}–{end})",
    },
    "site.no_shift": {"zh": "当前不在任何班次内。", "en": "No shift is running now."},
    "site.line_total": {"zh": "产线合计（本班次）", "en": "Line total (this shift)"},
    "site.no_kpis": {"zh": "本班次尚无 KPI 数据。", "en": "No KPI data for this shift yet."},
    "col.machine": {"zh": "设备", "en": "Machine"},
    "col.state": {"zh": "状态", "en": "State"},
    "col.in_state": {"zh": "持续时间", "en": "In state for"},
    "col.oee": {"zh": "OEE", "en": "OEE"},
    "col.availability": {"zh": "可用率 A", "en": "Availability A"},
    "col.effectiveness": {"zh": "效率 E", "en": "Effectiveness E"},
    "col.quality": {"zh": "质量率 Q", "en": "Quality Q"},
    "col.parts": {"zh": "良品 / 产量", "en": "Good / produced"},
    "col.target": {"zh": "目标产量", "en": "Target"},
    "col.attainment": {"zh": "目标达成", "en": "Attainment"},
    "col.kwh_per_good": {"zh": "单件能耗", "en": "Energy per good part"},
    "col.data_age": {"zh": "数据延迟", "en": "Data age"},
    "flag.e_above": {
        "zh": "E 大于 {limit}：请检查理想节拍（PRI）",
        "en": "E above {limit}: check the ideal cycle time (PRI)",
    },
    "state.IN_CYCLE": {"zh": "加工中", "en": "in cycle"},
    "state.IDLE": {"zh": "空闲", "en": "idle"},
    "state.SETUP": {"zh": "换型调整", "en": "setup"},
    "state.DELAY": {"zh": "停机", "en": "stopped"},
    "state.NO_DATA": {"zh": "无数据", "en": "no data"},
    "report.list_title": {"zh": "{site} 企业报表", "en": "{site}: factory reports"},
    "report.title": {"zh": "{site} 报表 {period}", "en": "{site}: report {period}"},
    "report.history_title": {
        "zh": "{site} 报表 {period} 修订记录",
        "en": "{site}: report {period}, revisions",
    },
    "report.reports": {"zh": "报表", "en": "Reports"},
    "report.period": {"zh": "报告期", "en": "Period"},
    "report.period_hint": {
        "zh": "年报 YYYY，月报 YYYY-MM",
        "en": "YYYY for an annual report, YYYY-MM for a month",
    },
    "report.open": {"zh": "打开", "en": "Open"},
    "report.kind.annual": {"zh": "年报", "en": "annual"},
    "report.kind.monthly": {"zh": "月报", "en": "monthly"},
    "report.revision": {"zh": "修订", "en": "Revision"},
    "report.author": {"zh": "提交人", "en": "By"},
    "report.when": {"zh": "时间", "en": "When"},
    "report.reason": {"zh": "修改原因", "en": "Reason"},
    "report.reason_hint": {
        "zh": "更正已提交的报表时必填。",
        "en": "Required when you correct a report that was already submitted.",
    },
    "report.changed": {"zh": "修改的字段", "en": "Changed fields"},
    "report.current": {
        "zh": "当前为修订 {revision}（{author}，{when}）",
        "en": "Current: revision {revision} ({author}, {when})",
    },
    "report.new": {"zh": "该报告期尚未提交。", "en": "Nothing has been reported for this period."},
    "report.none": {"zh": "报告期 {period} 没有报表。", "en": "There is no report for {period}."},
    "report.none_yet": {"zh": "尚无报表。", "en": "No reports yet."},
    "report.submit": {"zh": "提交", "en": "Submit"},
    "report.required": {"zh": "必填", "en": "required"},
    "report.refused": {
        "zh": "报表未保存：请修改标出的字段后重新提交。",
        "en": "The report was not stored: correct the fields marked below and submit again.",
    },
    "report.saved": {"zh": "已保存为修订 {revision}。", "en": "Stored as revision {revision}."},
    "report.unchanged": {
        "zh": "与修订 {revision} 相同，未保存新修订。",
        "en": "Identical to revision {revision}; nothing new was stored.",
    },
    "report.history": {"zh": "修订记录", "en": "Revision history"},
    "report.read_only": {
        "zh": "您的角色只能查看报表。",
        "en": "Your role may read reports but not submit them.",
    },
    "report.bad_period": {
        "zh": "报告期无效：年报用 YYYY，月报用 YYYY-MM。",
        "en": "Not a report period: use YYYY for a year or YYYY-MM for a month.",
    },
    "import.title": {"zh": "{site} 导入报表", "en": "{site}: import reports"},
    "import.upload": {"zh": "上传已填写的模板", "en": "Upload a filled template"},
    "import.template": {"zh": "下载 XLSX 模板", "en": "Download the XLSX template"},
    "import.file": {"zh": "文件（XLSX 或 CSV）", "en": "File (XLSX or CSV)"},
    "import.store_valid": {
        "zh": "文件有错误时仍保存正确的报告期",
        "en": "Store the valid periods even if the file has errors",
    },
    "import.submit": {"zh": "导入", "en": "Import"},
    "import.no_file": {"zh": "请选择要上传的文件。", "en": "Choose a file to upload."},
    "import.too_large": {
        "zh": "文件超过 10 MiB，请按年份拆分。",
        "en": "The file is larger than 10 MiB; split it by year.",
    },
    "import.ok": {"zh": "{name} 已导入。", "en": "{name} was imported."},
    "import.refused": {
        "zh": "{name} 有 {n} 处错误，未保存任何内容。",
        "en": "{name} has {n} problems; nothing was stored.",
    },
    "import.refused_partly": {
        "zh": "{name} 有 {n} 处错误；正确的报告期已保存。",
        "en": "{name} has {n} problems; the valid periods were stored.",
    },
    "import.stored": {"zh": "已保存", "en": "Stored"},
    "import.unchanged": {"zh": "未变化", "en": "Unchanged"},
    "import.sheet": {"zh": "工作表", "en": "Sheet"},
    "import.row": {"zh": "行", "en": "Row"},
    "import.column": {"zh": "列", "en": "Column"},
    "import.field": {"zh": "字段", "en": "Field"},
    "import.message": {"zh": "问题", "en": "Problem"},
    "import.warnings": {"zh": "提示", "en": "Warnings"},
    "commission.title": {"zh": "示范工厂指标", "en": "Demonstration-factory indicators"},
    "commission.cohort": {"zh": "企业组", "en": "Cohort"},
    "commission.year": {"zh": "年份", "en": "Year"},
    "commission.show": {"zh": "显示", "en": "Show"},
    "commission.about": {
        "zh": "{cohort}，{year} 年（基期 {base}）；配置 {version} 修订 {revision}",
        "en": "{cohort}, {year} (base year {base}); configuration {version} revision {revision}",
    },
    "commission.xlsx": {"zh": "下载 XLSX", "en": "Download XLSX"},
    "commission.cohort_level": {"zh": "全体：{name}", "en": "Whole cohort: {name}"},
    "commission.district": {"zh": "{district}区", "en": "District {district}"},
    "commission.district_title": {"zh": "{district}区的工厂", "en": "Factories in {district}"},
    "commission.factories": {"zh": "工厂明细", "en": "Factories"},
    "commission.indicator": {"zh": "指标", "en": "Indicator"},
    "commission.value": {"zh": "数值", "en": "Value"},
    "commission.target": {"zh": "{year} 目标", "en": "{year} target"},
    "commission.coverage": {"zh": "覆盖（已报/应报）", "en": "Coverage (reported / cohort)"},
    "commission.flags": {"zh": "标记", "en": "Flags"},
    "commission.met": {"zh": "达标", "en": "met"},
    "commission.not_met": {"zh": "未达标", "en": "not met"},
    "commission.incomplete": {"zh": "不完整", "en": "incomplete"},
    "commission.missing": {"zh": "缺报", "en": "missing"},
    "commission.report_rev": {
        "zh": "报表修订 {revision}（{author}）",
        "en": "Report revision {revision} ({author})",
    },
    "commission.not_reported": {"zh": "{year} 年未报送。", "en": "Nothing reported for {year}."},
    "commission.metered": {
        "zh": "全年计量合计（{days} 天有数据）",
        "en": "Yearly metered totals ({days} days with data)",
    },
    "commission.no_telemetry": {
        "zh": "此处只显示企业报送的数据和全年汇总，不显示车间实时数据。",
        "en": "Only reported inputs and yearly totals are shown here, never shop-floor data.",
    },
    "commission.no_factories": {
        "zh": "该区没有本企业组的工厂。",
        "en": "The cohort has no factory in this district.",
    },
    "commission.no_district": {
        "zh": "本企业组在“{district}”区没有工厂。",
        "en": "The cohort has no factory in district {district}.",
    },
    "commission.no_config": {
        "zh": "经信委尚未保存指标配置（企业组、目标、系数），请先通过 API 上传配置。",
        "en": "The commission has no indicator configuration yet (cohorts, targets, factors); "
        "store one through the API first.",
    },
    "commission.bad_cohort": {
        "zh": "没有该企业组；请从列表中选择。",
        "en": "There is no such cohort; choose one from the list.",
    },
    "commission.bad_year": {
        "zh": "年份无效：请给出 1990 到 2100 之间的年份。",
        "en": "Not a valid year: give a year between 1990 and 2100.",
    },
    "home.commission": {"zh": "指标总览", "en": "Indicator table"},
    "unit.s": {"zh": "{v} 秒", "en": "{v} s"},
    "unit.min": {"zh": "{v} 分", "en": "{v} min"},
    "unit.h": {"zh": "{v} 小时", "en": "{v} h"},
    "value.none": {"zh": "—", "en": "—"},
}


def parse_lang(value: str | None) -> Lang | None:
    """``value`` when it names a language of the portal."""
    for lang in LANGS:
        if value == lang:
            return lang
    return None


def negotiate(cookie: str | None, accept_language: str | None) -> Lang:
    """The cookie's language, else the best of ``Accept-Language`` the portal speaks."""
    chosen = parse_lang(cookie)
    if chosen is not None:
        return chosen
    best: tuple[float, int, Lang] | None = None
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            key, _, val = p.strip().partition("=")
            if key == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        found = parse_lang(tag.strip().lower().split("-")[0])
        # the highest q wins; among equals, the one listed first
        if found is not None and q > 0 and (best is None or (q, -i) > (best[0], best[1])):
            best = (q, -i, found)
    return best[2] if best is not None else DEFAULT_LANG


def translator(lang: Lang) -> Callable[..., str]:
    """``t(key, **values)``: the message in ``lang``; an unknown key shows itself (a bug to see,
    never a crash)."""

    def t(key: str, **values: object) -> str:
        entry = MESSAGES.get(key)
        if entry is None:
            return key
        text = entry[lang]
        return text.format(**values) if values else text

    return t


# a report validation issue (``api.reports.validate.FieldIssue.code``) in Chinese: the sentence
# says what to fix in the reader's language; the validator's own English sentence, which carries
# the exact figures, follows in parentheses where it adds them
_ISSUES_ZH: dict[str, str] = {
    "type_error": "{label}须为数值（单位：{unit}）",
    "value_error": "{label}须为有限数值",
    "range": "{label}超出允许范围",
    "integer": "{label}须为整数",
    "missing": "{label}为必填项",
    "unit": "{label}的单位不符，应为 {unit}",
    "identity": "增加值与“工业总产值 − 中间投入 + 应交增值税”不符，请更正其中一项",
    "future": "报告期尚未结束，不能提前报送",
    "period": "报告期格式有误，应为 YYYY（年报）或 YYYY-MM（月报）",
    "unknown_field": "{label}不是本表的字段",
    "kind": "{label}不属于这类报表",
    "length": "{label}过长（最多 256 个字符）",
    "month_sum": "各月合计与年报不一致",
    "suspicious": "{label}的数值可疑，请核对",
}
_DETAILED = frozenset({"range", "identity", "month_sum", "suspicious", "unit", "type_error"})


def issue_text(code: str, message: str, lang: Lang, label: str = "", unit: str = "") -> str:
    """The issue's sentence for ``lang`` (English: the validator's own)."""
    template = _ISSUES_ZH.get(code) if lang == "zh" else None
    if template is None:
        return message
    text = template.format(label=label or "该字段", unit=unit or "—")
    return f"{text}（{message}）" if code in _DETAILED else text
