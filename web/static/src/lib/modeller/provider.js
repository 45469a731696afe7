// jzflow's group in the bpmn-js properties panel: what the engine reads from a diagram, without touching XML.
// Lanes → a role or org unit; user tasks → forms, SLA, escalation, candidates, assignee, due, priority,
// instructions; scripts and pre/post scripts (Python); conditions on a gateway's flows (Python); the DMN
// decision of a business rule task; the service of a service task. Values go into spiffworkflow extension
// elements (the SpiffArena convention SpiffWorkflow parses) through the command stack, so undo works.
import { h } from "@bpmn-io/properties-panel/preact";
import {
  CheckboxEntry,
  Group,
  SelectEntry,
  TextAreaEntry,
  TextFieldEntry,
  isCheckboxEntryEdited,
  isSelectEntryEdited,
  isTextAreaEntryEdited,
  isTextFieldEntryEdited,
} from "@bpmn-io/properties-panel";
import { useService } from "bpmn-js-properties-panel";
import { getBusinessObject, is, isAny } from "bpmn-js/lib/util/ModelUtil";

const MULTI = "properties-panel.multi-command-executor";
const SCRIPTED = ["bpmn:Activity", "bpmn:Event"];

function update(element, moddleElement, properties) {
  return { cmd: "element.updateModdleProperties", context: { element, moddleElement, properties } };
}

function extensions(bo) {
  const ext = bo.get("extensionElements");
  return ext ? ext.get("values") : [];
}

function findExtension(bo, type) {
  return extensions(bo).find((value) => value.$instanceOf(type));
}

// Return the extension element of `type` on the business object, adding commands that create it if needed.
function ensureExtension(injector, element, bo, type, attrs, commands) {
  const factory = injector.get("bpmnFactory");
  let ext = bo.get("extensionElements");
  if (!ext) {
    ext = factory.create("bpmn:ExtensionElements", { values: [] });
    ext.$parent = bo;
    commands.push(update(element, bo, { extensionElements: ext }));
  }
  let found = ext.get("values").find((value) => value.$instanceOf(type));
  if (!found) {
    found = factory.create(type, attrs);
    found.$parent = ext;
    commands.push(update(element, ext, { values: [...ext.get("values"), found] }));
  }
  return found;
}

function run(injector, commands) {
  if (commands.length) injector.get("commandStack").execute(MULTI, commands);
}

export function getSpiffProperty(element, name) {
  const props = findExtension(getBusinessObject(element), "spiffworkflow:Properties");
  const found = props && props.get("properties").find((p) => p.name === name);
  return found ? found.value || "" : "";
}

export function setSpiffProperty(injector, element, name, value) {
  const bo = getBusinessObject(element);
  const current = findExtension(bo, "spiffworkflow:Properties");
  const existing = current && current.get("properties").find((p) => p.name === name);
  const commands = [];
  value = (value || "").trim();
  if (!value) {
    if (existing) commands.push(update(element, current, { properties: current.get("properties").filter((p) => p !== existing) }));
  } else if (existing) {
    commands.push(update(element, existing, { value }));
  } else {
    const props = ensureExtension(injector, element, bo, "spiffworkflow:Properties", { properties: [] }, commands);
    const prop = injector.get("bpmnFactory").create("spiffworkflow:Property", { name, value });
    prop.$parent = props;
    commands.push(update(element, props, { properties: [...props.get("properties"), prop] }));
  }
  run(injector, commands);
}

function getBody(element, type) {
  const found = findExtension(getBusinessObject(element), type);
  return found ? found.value || "" : "";
}

function setBody(injector, element, type, value) {
  const bo = getBusinessObject(element);
  const existing = findExtension(bo, type);
  const commands = [];
  if (!value || !value.trim()) {
    if (existing) {
      const ext = bo.get("extensionElements");
      commands.push(update(element, ext, { values: ext.get("values").filter((v) => v !== existing) }));
    }
  } else if (existing) {
    commands.push(update(element, existing, { value }));
  } else {
    const created = ensureExtension(injector, element, bo, type, {}, commands);
    commands.push(update(element, created, { value }));
  }
  run(injector, commands);
}

// --- entries -------------------------------------------------------------------------------------------

function PropertyText(props) {
  const { element, id, name, label, description } = props;
  const injector = useService("injector");
  const debounce = useService("debounceInput");
  return h(TextFieldEntry, {
    element, id, label, description, debounce,
    getValue: () => getSpiffProperty(element, name),
    setValue: (value) => setSpiffProperty(injector, element, name, value),
  });
}

function PropertySelect(props) {
  const { element, id, name, label, options } = props;
  const injector = useService("injector");
  return h(SelectEntry, {
    element, id, label,
    getValue: () => getSpiffProperty(element, name),
    setValue: (value) => setSpiffProperty(injector, element, name, value),
    getOptions: () => {
      const current = getSpiffProperty(element, name);
      const list = options();
      return current && !list.some((o) => o.value === current) ? [...list, { value: current, label: current }] : list;
    },
  });
}

function BodyArea(props) {
  const { element, id, type, label, description, rows } = props;
  const injector = useService("injector");
  const debounce = useService("debounceInput");
  return h(TextAreaEntry, {
    element, id, label, description, debounce, rows: rows || 4, monospace: true,
    getValue: () => getBody(element, type),
    setValue: (value) => setBody(injector, element, type, value),
  });
}

function LaneTarget(props) {
  const { element, id, config, t } = props;
  const modeling = useService("modeling");
  return h(SelectEntry, {
    element, id, label: t.lane_target,
    getValue: () => {
      const name = getBusinessObject(element).name || "";
      return config.knownTarget(name) ? name : "";
    },
    setValue: (value) => { if (value) modeling.updateProperties(element, { name: value }); },
    getOptions: () => [{ value: "", label: t.lane_other },
      ...config.targets().roles.map((r) => ({ value: r.name, label: `${t.roles}: ${r.name} (${r.code})` })),
      ...config.targets().units.map((u) => ({ value: u.name, label: `${t.units}: ${u.name} (${u.code})` }))],
  });
}

function Condition(props) {
  const { element, id, t } = props;
  const modeling = useService("modeling");
  const factory = useService("bpmnFactory");
  const debounce = useService("debounceInput");
  return h(TextAreaEntry, {
    element, id, label: t.condition, description: t.condition_hint, debounce, rows: 2, monospace: true,
    getValue: () => {
      const expr = getBusinessObject(element).get("conditionExpression");
      return expr ? expr.get("body") || "" : "";
    },
    setValue: (value) => {
      const text = (value || "").trim();
      modeling.updateProperties(element, {
        conditionExpression: text ? factory.create("bpmn:FormalExpression", { body: text }) : undefined,
      });
    },
  });
}

function Script(props) {
  const { element, id, t } = props;
  const modeling = useService("modeling");
  const debounce = useService("debounceInput");
  return h(TextAreaEntry, {
    element, id, label: t.script, debounce, rows: 6, monospace: true,
    getValue: () => getBusinessObject(element).get("script") || "",
    setValue: (value) => modeling.updateProperties(element, { script: value || "", scriptFormat: "python" }),
  });
}

function Decision(props) {
  const { element, id, config, t } = props;
  const injector = useService("injector");
  return h(SelectEntry, {
    element, id, label: t.decision,
    getValue: () => getBody(element, "spiffworkflow:CalledDecisionId"),
    setValue: (value) => setBody(injector, element, "spiffworkflow:CalledDecisionId", value),
    getOptions: () => [{ value: "", label: t.none }, ...config.decisions().map((d) => ({ value: d, label: d }))],
  });
}

function operatorOf(element) {
  return findExtension(getBusinessObject(element), "spiffworkflow:ServiceTaskOperator");
}

function setOperator(injector, element, changes) {
  const bo = getBusinessObject(element);
  const commands = [];
  const operator = ensureExtension(injector, element, bo, "spiffworkflow:ServiceTaskOperator", {}, commands);
  if (!operator.get("parameterList")) {
    const list = injector.get("bpmnFactory").create("spiffworkflow:Parameters", { parameters: [] });
    list.$parent = operator;
    changes = { parameterList: list, ...changes };
  }
  commands.push(update(element, operator, changes));
  run(injector, commands);
}

function Service(props) {
  const { element, id, config, t } = props;
  const injector = useService("injector");
  return h(SelectEntry, {
    element, id, label: t.service,
    getValue: () => (operatorOf(element) && operatorOf(element).get("id")) || "",
    setValue: (value) => setOperator(injector, element, { id: value }),
    getOptions: () => [{ value: "", label: t.none }, ...config.targets().services.map((s) => ({ value: s, label: s }))],
  });
}

function ServiceParams(props) {
  const { element, id, t } = props;
  const injector = useService("injector");
  const debounce = useService("debounceInput");
  return h(TextAreaEntry, {
    element, id, label: t.service_params, debounce, rows: 3, monospace: true,
    getValue: () => {
      const list = operatorOf(element) && operatorOf(element).get("parameterList");
      return list ? list.get("parameters").map((p) => `${p.id} = ${p.value || ""}`).join("\n") : "";
    },
    setValue: (value) => {
      const factory = injector.get("bpmnFactory");
      const list = factory.create("spiffworkflow:Parameters", { parameters: [] });
      for (const line of (value || "").split("\n")) {
        const at = line.indexOf("=");
        if (at < 1) continue;
        const param = factory.create("spiffworkflow:Parameter", { id: line.slice(0, at).trim(), type: "any", value: line.slice(at + 1).trim() });
        param.$parent = list;
        list.get("parameters").push(param);
      }
      setOperator(injector, element, { parameterList: list });
    },
  });
}

function ResultVariable(props) {
  const { element, id, t } = props;
  const injector = useService("injector");
  const debounce = useService("debounceInput");
  return h(TextFieldEntry, {
    element, id, label: t.result_variable, debounce,
    getValue: () => (operatorOf(element) && operatorOf(element).get("resultVariable")) || "",
    setValue: (value) => setOperator(injector, element, { resultVariable: value || undefined }),
  });
}

const TIME_KINDS = ["timeDuration", "timeDate", "timeCycle"];

function timerOf(element) {
  return (getBusinessObject(element).get("eventDefinitions") || []).find((d) => is(d, "bpmn:TimerEventDefinition"));
}

function Timer(props) {
  const { element, id, t } = props;
  const factory = useService("bpmnFactory");
  const commandStack = useService("commandStack");
  const debounce = useService("debounceInput");
  return h(TextFieldEntry, {
    element, id, label: t.timer, description: t.timer_hint, debounce,
    getValue: () => {
      const definition = timerOf(element);
      const kind = TIME_KINDS.find((k) => definition.get(k));
      return kind ? definition.get(kind).get("body") || "" : "";
    },
    setValue: (value) => {
      const definition = timerOf(element);
      const kind = TIME_KINDS.find((k) => definition.get(k)) || "timeDuration";
      const expression = factory.create("bpmn:FormalExpression", { body: (value || "").trim() });
      expression.$parent = definition;
      commandStack.execute("element.updateModdleProperties",
        { element, moddleElement: definition, properties: { [kind]: expression } });
    },
  });
}

function ScriptsOnInstances(props) {
  const { element, id, t } = props;
  const commandStack = useService("commandStack");
  const loop = () => getBusinessObject(element).get("loopCharacteristics");
  return h(CheckboxEntry, {
    element, id, label: t.on_instances,
    getValue: () => Boolean(loop().get("spiffworkflow:scriptsOnInstances")),
    setValue: (value) => commandStack.execute("element.updateModdleProperties",
      { element, moddleElement: loop(), properties: { "spiffworkflow:scriptsOnInstances": value || undefined } }),
  });
}

// --- the group -----------------------------------------------------------------------------------------

function entries(element, config, t) {
  const list = [];
  const bo = getBusinessObject(element);
  const add = (id, component, isEdited, extra = {}) => list.push({ id, component, isEdited, element, config, t, ...extra });
  if (is(element, "bpmn:Lane")) add("jz-lane-target", LaneTarget, isSelectEntryEdited);
  if (is(element, "bpmn:UserTask")) {
    const forms = (ui) => () => [{ value: "", label: t.none },
      ...config.forms().filter((n) => ui === /uischema/i.test(n)).map((n) => ({ value: n, label: n }))];
    add("jz-form-schema", PropertySelect, isSelectEntryEdited, { name: "formJsonSchemaFilename", label: t.form_schema, options: forms(false) });
    add("jz-form-ui", PropertySelect, isSelectEntryEdited, { name: "formUiSchemaFilename", label: t.form_ui, options: forms(true) });
    add("jz-sla", PropertyText, isTextFieldEntryEdited, { name: "sla", label: t.sla, description: t.sla_hint });
    add("jz-escalation", PropertySelect, isSelectEntryEdited, {
      name: "escalation", label: t.escalation,
      options: () => [{ value: "", label: t.escalation_default }, ...config.targets().escalation_profiles.map((p) => ({ value: p, label: p }))],
    });
    add("jz-escalation-unit", PropertyText, isTextFieldEntryEdited, { name: "escalationUnit", label: t.escalation_unit, description: t.escalation_unit_hint });
    add("jz-candidates", PropertyText, isTextFieldEntryEdited, { name: "candidates", label: t.candidates, description: t.candidates_hint });
    add("jz-assignee", PropertyText, isTextFieldEntryEdited, { name: "assignee", label: t.assignee });
    add("jz-due", PropertyText, isTextFieldEntryEdited, { name: "due", label: t.due });
    add("jz-priority", PropertyText, isTextFieldEntryEdited, { name: "priority", label: t.priority });
    add("jz-instructions", BodyArea, isTextAreaEntryEdited, { type: "spiffworkflow:InstructionsForEndUser", label: t.instructions });
  }
  if (is(element, "bpmn:ScriptTask")) add("jz-script", Script, isTextAreaEntryEdited);
  if (is(element, "bpmn:BusinessRuleTask")) add("jz-decision", Decision, isSelectEntryEdited);
  if (is(element, "bpmn:ServiceTask")) {
    add("jz-service", Service, isSelectEntryEdited);
    add("jz-service-params", ServiceParams, isTextAreaEntryEdited);
    add("jz-result-variable", ResultVariable, isTextFieldEntryEdited);
  }
  if (is(element, "bpmn:SequenceFlow") && bo.sourceRef && isAny(bo.sourceRef, ["bpmn:ExclusiveGateway", "bpmn:InclusiveGateway"])) {
    add("jz-condition", Condition, isTextAreaEntryEdited);
  }
  if (timerOf(element)) add("jz-timer", Timer, isTextFieldEntryEdited);
  const loop = bo.get && bo.get("loopCharacteristics");
  if (loop && is(loop, "bpmn:MultiInstanceLoopCharacteristics")) add("jz-scripts-on-instances", ScriptsOnInstances, isCheckboxEntryEdited);
  if (isAny(element, SCRIPTED) && !is(element, "bpmn:Process")) {
    add("jz-pre-script", BodyArea, isTextAreaEntryEdited, { type: "spiffworkflow:PreScript", label: t.pre_script });
    add("jz-post-script", BodyArea, isTextAreaEntryEdited, { type: "spiffworkflow:PostScript", label: t.post_script });
  }
  return list;
}

class JzPropertiesProvider {
  constructor(propertiesPanel, injector, config) {
    this._config = config;
    propertiesPanel.registerProvider(400, this);
  }

  getGroups(element) {
    return (groups) => {
      const { t } = this._config;
      const list = entries(element, this._config, t);
      if (list.length) groups.unshift({ id: "jzflow", label: t.jzflow, component: Group, entries: list });
      return groups;
    };
  }
}
JzPropertiesProvider.$inject = ["propertiesPanel", "injector", "config.jzflow"];

export default {
  __init__: ["jzPropertiesProvider"],
  jzPropertiesProvider: ["type", JzPropertiesProvider],
};
