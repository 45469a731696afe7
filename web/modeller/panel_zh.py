"""Chinese for bpmn-js's own texts (palette, context pad, properties panel): English source → 中文.

bpmn-js translates through its `translate` service; the modeller page hands this map to a custom
translate module when the reader's language is Chinese (web/static/src/lib/modeller/translate.js). A text
missing here stays English; tests/e2e/test_office_visuals_e2e.py checks the panel of a user task and the
palette in zh.
"""
from __future__ import annotations

PANEL_ZH: dict[str, str] = {
    # properties panel: groups and entries of the base BPMN provider
    "General": "常规", "Name": "名称", "ID": "ID", "Documentation": "说明", "Element documentation": "元素说明",
    "Process documentation": "流程说明", "Executable": "可执行", "Version tag": "版本标签", "Process ID": "流程 ID",
    "Process name": "流程名称", "Participant Name": "参与者名称", "Properties": "属性",
    "Select an element to edit its properties.": "选择一个元素以编辑其属性。",
    "Multiple elements are selected. Select a single element to edit its properties.":
        "已选择多个元素，请只选一个以编辑其属性。",
    "Condition": "条件", "Condition Expression": "条件表达式", "Condition expression": "条件表达式", "Type": "类型",
    "Expression": "表达式", "Script": "脚本", "Format": "格式", "Script type": "脚本类型", "Inline script": "内联脚本",
    "External resource": "外部资源", "Resource": "资源", "Timer": "定时器", "Date": "日期", "Duration": "时长",
    "Cycle": "周期", "Value": "值", "Message": "消息", "Global message reference": "全局消息引用", "Signal": "信号",
    "Global signal reference": "全局信号引用", "Error": "错误", "Global error reference": "全局错误引用", "Code": "代码",
    "Escalation": "升级", "Global escalation reference": "全局升级引用", "Link": "链接", "Compensation": "补偿",
    "Wait for completion": "等待完成", "Activity reference": "活动引用", "Multi-instance": "多实例",
    "Loop cardinality": "循环次数", "Completion condition": "完成条件", "Collection": "集合",
    "Element variable": "元素变量", "Inputs": "输入", "Outputs": "输出", "Input": "输入", "Output": "输出",
    "Data object reference": "数据对象引用", "Data store reference": "数据存储引用", "Category value": "分类值",
    "Create new ...": "新建…", "<none>": "<无>", "<empty>": "<空>", "Create": "新建", "Delete": "删除",
    "ID must be unique.": "ID 不能重复。", "ID must not be empty.": "ID 不能为空。",
    "ID must not contain spaces.": "ID 不能包含空格。", "ID must be a valid QName.": "ID 须为合法的 QName。",
    "ID must not contain prefix.": "ID 不能带前缀。", "Learn more.": "了解更多。", "Label": "标签",
    "Implementation": "实现方式", "Called element": "被调用元素", "Text": "文本", "Event type": "事件类型",
    "Open minimap": "打开缩略图", "Close minimap": "关闭缩略图", "Toggle section": "展开/收起",
    "Collapse": "收起", "Expand": "展开", "Search": "搜索",
    # the panel header: the selected element's type
    "Collaboration": "协作", "Process": "流程", "Participant": "参与者（池）", "Lane": "泳道", "Task": "任务",
    "User Task": "用户任务", "Service Task": "服务任务", "Script Task": "脚本任务", "Business Rule Task": "业务规则任务",
    "Send Task": "发送任务", "Receive Task": "接收任务", "Manual Task": "人工任务", "Call Activity": "调用活动",
    "Start Event": "开始事件", "End Event": "结束事件", "Intermediate Throw Event": "中间抛出事件",
    "Intermediate Catch Event": "中间捕获事件", "Boundary Event": "边界事件",
    "Timer Start Event": "定时开始事件", "Message Start Event": "消息开始事件", "Signal Start Event": "信号开始事件",
    "Conditional Start Event": "条件开始事件", "Timer Intermediate Catch Event": "定时中间捕获事件",
    "Message Intermediate Catch Event": "消息中间捕获事件", "Signal Intermediate Catch Event": "信号中间捕获事件",
    "Message Intermediate Throw Event": "消息中间抛出事件", "Signal Intermediate Throw Event": "信号中间抛出事件",
    "Timer Boundary Event": "定时边界事件", "Timer Boundary Event (Non Interrupting)": "定时边界事件（不中断）",
    "Message Boundary Event": "消息边界事件", "Message Boundary Event (Non Interrupting)": "消息边界事件（不中断）",
    "Error Boundary Event": "错误边界事件", "Signal Boundary Event": "信号边界事件",
    "Escalation Boundary Event": "升级边界事件", "Message End Event": "消息结束事件", "Error End Event": "错误结束事件",
    "Terminate End Event": "终止结束事件", "Signal End Event": "信号结束事件", "Escalation End Event": "升级结束事件",
    "Exclusive Gateway": "排他网关", "Parallel Gateway": "并行网关", "Inclusive Gateway": "包容网关",
    "Event Based Gateway": "事件网关", "Complex Gateway": "复杂网关", "Sequence Flow": "顺序流",
    "Conditional Flow": "条件流", "Default Flow": "默认流", "Message Flow": "消息流", "Association": "关联",
    "Expanded Sub Process": "展开的子流程", "Collapsed Sub Process": "折叠的子流程", "Event Sub Process": "事件子流程",
    "Transaction": "事务", "Text Annotation": "文本注释", "Group": "分组", "Data Object Reference": "数据对象引用",
    "Data Store Reference": "数据存储引用", "Data Input Association": "数据输入关联",
    "Data Output Association": "数据输出关联",
    # palette
    "Activate hand tool": "启用抓手工具", "Activate lasso tool": "启用套索工具",
    "Activate create/remove space tool": "启用插入/删除空间工具", "Activate global connect tool": "启用全局连线工具",
    "Create start event": "创建开始事件", "Create intermediate/boundary event": "创建中间/边界事件",
    "Create end event": "创建结束事件", "Create gateway": "创建网关", "Create task": "创建任务",
    "Create data object reference": "创建数据对象引用", "Create data store reference": "创建数据存储引用",
    "Create expanded sub-process": "创建展开的子流程", "Create pool/participant": "创建池/参与者",
    "Create group": "创建分组",
    # context pad
    "Append end event": "追加结束事件", "Append gateway": "追加网关", "Append task": "追加任务",
    "Append intermediate/boundary event": "追加中间/边界事件", "Append text annotation": "追加文本注释",
    "Add text annotation": "添加文本注释", "Append receive task": "追加接收任务",
    "Append message intermediate catch event": "追加消息中间捕获事件",
    "Append timer intermediate catch event": "追加定时器中间捕获事件",
    "Append conditional intermediate catch event": "追加条件中间捕获事件",
    "Append signal intermediate catch event": "追加信号中间捕获事件", "Append compensation activity": "追加补偿活动",
    "Change element": "更改元素类型", "Change type": "更改类型", "Connect to other element": "连接到其他元素",
    "Connect using association": "用关联连接", "Connect using data input association": "用数据输入关联连接",
    "Add lane above": "在上方添加泳道", "Add lane below": "在下方添加泳道", "Divide into two lanes": "分为两条泳道",
    "Divide into three lanes": "分为三条泳道", "Remove": "删除",
}
