"""The modeller's texts, translated on the server and handed to the page's script as JSON (data-i18n)."""
from __future__ import annotations

from flask_babel import get_locale
from flask_babel import gettext as _

from web.modeller.panel_zh import PANEL_ZH


def panel_labels() -> dict[str, str]:
    """Return bpmn-js's own texts in the user's language: English → 中文 for Chinese readers, none for English."""
    return dict(PANEL_ZH) if str(get_locale() or "zh") == "zh" else {}


def ui_labels() -> dict[str, str]:
    """Return every text the modeller's script shows, in the user's language."""
    return {
        "deploy": _("部署为新版本"), "deploying": _("正在校验并部署…"), "open_file": _("打开文件"),
        "download": _("下载当前文件"), "new_dmn": _("新建决策表"), "new_form": _("新建表单"),
        "refused": _("部署被拒绝，未保存任何内容"), "deployed": _("已部署 %(key)s 版本 %(version)s"),
        "unchanged": _("文件未变化，%(key)s 仍为版本 %(version)s"), "versions_link": _("查看版本"),
        "warned": _("已保存，但模型中有以下引用不是应有的单位或人员，请核对："),
        "problem_at": _("%(file)s 第 %(line)s 行"), "load_failed": _("无法载入文件"),
        "jzflow": _("jzflow 设置"), "lane_target": _("对应角色或单位"), "lane_other": _("（其他名称）"),
        "roles": _("角色"), "units": _("单位"), "form_schema": _("表单文件 (JSON Schema)"),
        "form_ui": _("表单界面文件 (UI Schema)"), "none": _("（无）"), "sla": _("时限 SLA"),
        "sla_hint": _("例如 5wd（工作日）、2d、48h"), "escalation": _("督办升级方案"),
        "escalation_default": _("（按流程默认）"), "escalation_unit": _("督办升级单位表达式"),
        "escalation_unit_hint": _("Python 表达式，得出单位代码或名称；逾期从该单位负责人起逐级升级"),
        "candidates": _("候选人表达式"),
        "candidates_hint": _("Python 表达式，得出用户名、单位或角色，如 department"), "assignee": _("办理人表达式"),
        "due": _("期限表达式"), "priority": _("优先级"), "instructions": _("办理说明"),
        "pre_script": _("前置脚本 (Python)"), "post_script": _("后置脚本 (Python)"), "script": _("脚本 (Python)"),
        "condition": _("条件 (Python 表达式)"), "condition_hint": _("例如 amount > 5000；留空即无条件"),
        "decision": _("调用的决策 (DMN)"), "service": _("服务"), "service_params": _("服务参数（每行 名称 = 表达式）"),
        "result_variable": _("结果变量"), "timer": _("定时器 (Python 表达式)"),
        "timer_hint": _("字面值须加引号，如 \"P5D\""), "on_instances": _("脚本在每个实例上运行"),
        "schema": _("JSON Schema"), "uischema": _("UI Schema"), "preview": _("预览"),
        "preview_failed": _("无法预览此表单"), "invalid_json": _("JSON 格式错误"), "file_name": _("文件名"),
        "dmn_tab": _("决策表"), "form_tab": _("表单"), "diagram_tab": _("流程图"), "read_only": _("只读：您不能部署"),
        "added": _("新增"), "removed": _("删除"), "changed": _("修改"),
        "stale_row": _("由 %(by)s 于 %(at)s 部署"), "view_diff": _("查看差异 v%(old)s → v%(new)s"),
        "open_latest": _("打开最新版本 v%(version)s"),
    }


__all__ = ["panel_labels", "ui_labels"]
