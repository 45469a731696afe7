// The modeller page: bpmn-js Modeler + properties panel (with jzflow's group), dmn-js for decision tables,
// JSON Schema forms with a live preview, and deploy. Deploy posts every file of the version (edited or not)
// to the server, which runs the same validation as `jzflow deploy`; its problems are drawn on the diagram.
// It also sends the version the edit started from (base_versions): if someone deployed since, the server
// answers 409 with who deployed which version when, and the page links to the diff instead of overwriting.
import BpmnModeler from "bpmn-js/lib/Modeler";
import { BpmnPropertiesPanelModule, BpmnPropertiesProviderModule } from "bpmn-js-properties-panel";
import spiffworkflow from "./spiffworkflow.json";
import JzPropertiesModule from "./provider.js";
import { translateModule } from "./translate.js";
import { FormEditor } from "./forms.js";
// The palette's and context pad's icon fonts, embedded as data: URLs (the page's CSP allows data: fonts).
// Imported as text: their .eot/.svg fallbacks are not files esbuild could bundle, and never load.
import bpmnFont from "bpmn-js/dist/assets/bpmn-font/css/bpmn-embedded.css" with { type: "text" };
import dmnFont from "dmn-js/dist/assets/dmn-font/css/dmn-embedded.css" with { type: "text" };

const NEW_BPMN = `<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="Definitions_new" targetNamespace="http://jzflow.local/bpmn" exporter="jzflow modeller" exporterVersion="1.0">
  <bpmn:process id="new_process" name="新流程" isExecutable="true">
    <bpmn:startEvent id="start" name="开始" />
  </bpmn:process>
  <bpmndi:BPMNDiagram id="BPMNDiagram_new">
    <bpmndi:BPMNPlane id="BPMNPlane_new" bpmnElement="new_process">
      <bpmndi:BPMNShape id="start_di" bpmnElement="start"><dc:Bounds x="180" y="160" width="36" height="36" /></bpmndi:BPMNShape>
    </bpmndi:BPMNPlane>
  </bpmndi:BPMNDiagram>
</bpmn:definitions>
`;

function newDmn(id) {
  return `<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" xmlns:dmndi="https://www.omg.org/spec/DMN/20191111/DMNDI/" xmlns:dc="http://www.omg.org/spec/DMN/20180521/DC/" id="Definitions_${id}" name="${id}" namespace="http://jzflow.local/dmn">
  <decision id="${id}" name="${id}">
    <decisionTable id="DecisionTable_${id}" hitPolicy="UNIQUE">
      <input id="Input_${id}" label="input"><inputExpression id="InputExpression_${id}" typeRef="string"><text>value</text></inputExpression></input>
      <output id="Output_${id}" name="result" typeRef="string" />
    </decisionTable>
  </decision>
  <dmndi:DMNDI><dmndi:DMNDiagram id="DMNDiagram_${id}"><dmndi:DMNShape id="DMNShape_${id}" dmnElementRef="${id}"><dc:Bounds height="80" width="180" x="160" y="100" /></dmndi:DMNShape></dmndi:DMNDiagram></dmndi:DMNDI>
</definitions>
`;
}

const NEW_SCHEMA = '{\n  "type": "object",\n  "required": [],\n  "properties": {\n    "opinion": {"type": "string", "title": "意见"}\n  }\n}\n';

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function format(text, values) {
  return text.replace(/%\((\w+)\)s/g, (_m, key) => (values[key] ?? ""));
}

function kindOf(name) {
  const lower = name.toLowerCase();
  if (lower.endsWith(".bpmn") || lower.endsWith(".bpmn20.xml") || lower.endsWith(".xml")) return "bpmn";
  if (lower.endsWith(".dmn")) return "dmn";
  return "form";
}

// bpmn-moddle drops references it cannot resolve; jzflow writes task-data variable names there
// (loopDataInputRef/loopDataOutputRef): keep each as a reference to a placeholder with that id.
function keepUnresolvedReferences(moddle, warnings) {
  for (const warning of warnings || []) {
    if (!/unresolved reference/.test(warning.message || "") || !warning.element || !warning.property) continue;
    const descriptor = warning.element.$descriptor.propertiesByName[warning.property];
    if (descriptor && !descriptor.isMany && !warning.element.get(warning.property)) {
      warning.element.set(warning.property, moddle.create(descriptor.type, { id: warning.value }));
    }
  }
}

// Fit the whole diagram into the canvas, right of the palette that floats over its left edge.
function fitBesidePalette(canvas, palette = 140, margin = 20) {
  const { inner, outer } = canvas.viewbox();
  if (!inner.width || !inner.height) return;
  const scale = Math.min((outer.width - palette - margin) / inner.width, (outer.height - 2 * margin) / inner.height, 1);
  canvas.viewbox({ x: inner.x - palette / scale, y: inner.y - margin / scale, width: outer.width / scale,
    height: outer.height / scale });
}

class Modeller {
  constructor(root) {
    this.root = root;
    this.t = JSON.parse(root.dataset.i18n || "{}");
    this.panelI18n = JSON.parse(root.dataset.panelI18n || "{}");
    this.csrf = root.dataset.csrf;
    this.deployUrl = root.dataset.deployUrl;
    this.previewUrl = root.dataset.previewUrl;
    this.files = new Map(); // name → {name, kind, text, dirty, editor}
    this.main = null;
    this.targets = { roles: [], units: [], services: [], escalation_profiles: [] };
    this.tabs = new Map(); // name → {button, panel}
    this.bases = new Map(); // process key → the version this edit started from (0: a new process)
    this.isNew = !root.dataset.filesUrl;
  }

  async start() {
    this.build();
    const [data, targets] = await Promise.all([this.loadFiles(), this.loadJson(this.root.dataset.targetsUrl)]);
    if (targets) this.targets = targets;
    for (const file of data.files) this.files.set(file.name, { ...file, original: file.text, dirty: false });
    if (data.key) this.bases.set(data.key, data.version);
    this.main = data.main || [...this.files.values()].find((f) => f.kind === "bpmn")?.name || "process.bpmn";
    if (!this.files.has(this.main)) this.files.set(this.main, { name: this.main, kind: "bpmn", text: NEW_BPMN, original: "", dirty: true });
    this.createBpmn();
    const main = this.files.get(this.main);
    await this.importBpmn(main.text);
    main.dirty = !main.original; // importing fires commandStack.changed: nothing was edited yet
    this.renderTabs();
    this.show(this.main);
    this.root.dataset.ready = "1";
  }

  async loadJson(url) {
    if (!url) return null;
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url}: ${response.status}`);
    return response.json();
  }

  async loadFiles() {
    const url = this.root.dataset.filesUrl;
    return url ? this.loadJson(url) : { files: [], main: "new_process.bpmn" };
  }

  build() {
    const t = this.t;
    this.status = el("div", { class: "jz-status", role: "status", "aria-live": "polite" });
    this.problems = el("ul", { class: "jz-problems" });
    this.tabbar = el("div", { class: "jz-tabs", role: "tablist" });
    const fileInput = el("input", { type: "file", accept: ".bpmn,.dmn,.json,.xml", multiple: "", class: "jz-open-input",
      onchange: (event) => this.openFiles(event.target.files) });
    const toolbar = el("div", { class: "jz-toolbar" },
      el("label", { class: "button secondary jz-open" }, t.open_file, fileInput),
      el("button", { type: "button", class: "secondary", "data-action": "download", onclick: () => this.download() }, t.download),
      el("button", { type: "button", class: "secondary", "data-action": "new-dmn", onclick: () => this.addDmn() }, t.new_dmn),
      el("button", { type: "button", class: "secondary", "data-action": "new-form", onclick: () => this.addForm() }, t.new_form));
    if (this.deployUrl) {
      this.deployButton = el("button", { type: "button", class: "jz-deploy", "data-action": "deploy", onclick: () => this.deploy() }, t.deploy);
      toolbar.append(this.deployButton);
    } else {
      toolbar.append(el("span", { class: "muted" }, t.read_only));
    }
    this.canvas = el("div", { class: "jz-canvas" });
    this.properties = el("div", { class: "jz-properties" });
    this.bpmnPanel = el("div", { class: "jz-panel jz-bpmn", role: "tabpanel" }, this.canvas, this.properties);
    this.panels = el("div", { class: "jz-panels" }, this.bpmnPanel);
    this.root.append(toolbar, this.tabbar, this.status, this.problems, this.panels);
  }

  config() {
    const self = this;
    return {
      t: this.t,
      targets: () => self.targets,
      knownTarget: (name) => self.targets.roles.some((r) => r.name === name || r.code === name)
        || self.targets.units.some((u) => u.name === name || u.code === name),
      forms: () => [...self.files.values()].filter((f) => f.kind === "form").map((f) => f.name).sort(),
      decisions: () => {
        const ids = [];
        for (const file of self.files.values()) {
          if (file.kind !== "dmn") continue;
          const text = file.editor ? file.lastText || file.text : file.text;
          for (const match of text.matchAll(/<(?:\w+:)?decision\s[^>]*\bid="([^"]+)"/g)) ids.push(match[1]);
        }
        return ids;
      },
    };
  }

  createBpmn() {
    this.modeler = new BpmnModeler({
      container: this.canvas,
      propertiesPanel: { parent: this.properties, layout: { groups: { jzflow: { open: true }, general: { open: true } } } },
      additionalModules: [BpmnPropertiesPanelModule, BpmnPropertiesProviderModule, JzPropertiesModule,
        translateModule(this.panelI18n)],
      moddleExtensions: { spiffworkflow },
      jzflow: this.config(),
    });
    this.modeler.on("commandStack.changed", () => {
      const file = this.files.get(this.main);
      if (file) file.dirty = true;
    });
    window.jzModeller = this; // for people debugging a diagram in the console
  }

  async importBpmn(text) {
    const result = await this.modeler.importXML(text);
    keepUnresolvedReferences(this.modeler.get("moddle"), result.warnings);
    await new Promise((resolve) => requestAnimationFrame(resolve)); // the properties panel takes its width first
    const canvas = this.modeler.get("canvas");
    canvas.resized();
    fitBesidePalette(canvas);
  }

  renderTabs() {
    this.tabbar.replaceChildren();
    const ordered = [this.main, ...[...this.files.keys()].filter((n) => n !== this.main && !/uischema/i.test(n)).sort()];
    for (const name of ordered) {
      const file = this.files.get(name);
      const label = file.kind === "bpmn" ? this.t.diagram_tab : file.kind === "dmn" ? this.t.dmn_tab : this.t.form_tab;
      const button = el("button", { type: "button", role: "tab", class: "jz-tab", "data-file": name,
        onclick: () => this.show(name) }, `${label} · ${name}`);
      this.tabbar.append(button);
    }
  }

  async show(name) {
    const file = this.files.get(name);
    for (const button of this.tabbar.querySelectorAll(".jz-tab")) {
      button.setAttribute("aria-selected", button.dataset.file === name ? "true" : "false");
    }
    for (const panel of this.panels.children) panel.hidden = true;
    this.active = name;
    if (file.kind === "bpmn") {
      this.bpmnPanel.hidden = false;
      return;
    }
    if (!file.panel) {
      file.panel = el("div", { class: `jz-panel jz-${file.kind}`, role: "tabpanel", "data-file": name });
      this.panels.append(file.panel);
      if (file.kind === "dmn") await this.openDmn(file);
      else this.openForm(file);
    }
    file.panel.hidden = false;
  }

  async openDmn(file) {
    const { default: DmnModeler } = await import("dmn-js/lib/Modeler");
    file.editor = new DmnModeler({ container: file.panel });
    await file.editor.importXML(file.text);
    const table = file.editor.getViews().find((view) => view.type === "decisionTable");
    if (table) await file.editor.open(table);
    const watch = () => {
      const viewer = file.editor.getActiveViewer();
      if (viewer) viewer.on("commandStack.changed", () => { file.dirty = true; });
    };
    file.editor.on("views.changed", watch);
    watch();
  }

  openForm(file) {
    const uiName = file.name.replace(/schema\.json$/i, "uischema.json");
    const ui = uiName !== file.name ? this.files.get(uiName) : null;
    file.editor = new FormEditor(file.panel, { schema: file, ui }, {
      previewUrl: this.previewUrl, csrf: this.csrf, t: this.t,
      onChange: () => { file.dirty = true; if (ui) ui.dirty = true; },
    });
  }

  addDmn() {
    const id = `decision_${Date.now().toString(36)}`;
    const name = `${id}.dmn`;
    this.files.set(name, { name, kind: "dmn", text: newDmn(id), original: "", dirty: true });
    this.renderTabs();
    this.show(name);
  }

  addForm() {
    const base = (window.prompt(this.t.file_name, "new_form") || "").trim().replace(/[^\w.-]/g, "_");
    if (!base) return;
    const schema = `${base}.schema.json`;
    const ui = `${base}.uischema.json`;
    this.files.set(schema, { name: schema, kind: "form", text: NEW_SCHEMA, original: "", dirty: true });
    this.files.set(ui, { name: ui, kind: "form", text: "{}\n", original: "", dirty: true });
    this.renderTabs();
    this.show(schema);
  }

  async openFiles(list) {
    for (const upload of list) {
      const text = await upload.text();
      const kind = kindOf(upload.name);
      const name = kind === "bpmn" && !upload.name.toLowerCase().endsWith(".bpmn") ? upload.name.replace(/\.xml$/i, ".bpmn") : upload.name;
      if (kind === "bpmn") {
        try {
          await this.importBpmn(text);
        } catch (error) {
          this.say(`${this.t.load_failed}: ${upload.name}: ${error.message}`, "error");
          continue;
        }
        this.files.delete(this.main);
        this.main = name;
        this.files.set(name, { name, kind, text, original: "", dirty: true });
      } else {
        const old = this.files.get(name);
        if (old && old.panel) old.panel.remove();
        this.files.set(name, { name, kind, text, original: "", dirty: true });
      }
    }
    this.renderTabs();
    this.show(this.main);
  }

  async textOf(file) {
    if (file.kind === "bpmn" && file.name === this.main) {
      if (!file.dirty) return file.text;
      const { xml } = await this.modeler.saveXML({ format: true });
      return xml;
    }
    if (file.kind === "dmn" && file.editor && file.dirty) {
      const { xml } = await file.editor.saveXML({ format: true });
      file.lastText = xml;
      return xml;
    }
    return file.text;
  }

  async collect() {
    const out = {};
    for (const file of this.files.values()) out[file.name] = await this.textOf(file);
    return out;
  }

  async download() {
    const file = this.files.get(this.active || this.main);
    const text = await this.textOf(file);
    const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "application/octet-stream" })), download: file.name });
    document.body.append(link);
    link.click();
    link.remove();
  }

  say(text, kind = "info") {
    this.status.className = `jz-status flash flash-${kind}`;
    this.status.replaceChildren(text);
  }

  clearProblems() {
    const canvas = this.modeler.get("canvas");
    const overlays = this.modeler.get("overlays");
    for (const kind of ["jz-error", "jz-warning"]) {
      overlays.remove({ type: kind });
      for (const id of this.marked || []) canvas.removeMarker(id, kind);
    }
    this.marked = [];
    this.problems.classList.remove("jz-warnings");
    this.problems.replaceChildren();
  }

  // A refused deploy's problems (kind "jz-error"), or a stored one's warnings ("jz-warning": a unit or user the
  // model names may be created after the deploy), listed under the toolbar and marked on the diagram.
  showProblems(problems, kind = "jz-error") {
    this.problems.classList.toggle("jz-warnings", kind === "jz-warning");
    const registry = this.modeler.get("elementRegistry");
    const canvas = this.modeler.get("canvas");
    const overlays = this.modeler.get("overlays");
    for (const problem of problems) {
      const where = problem.line ? format(this.t.problem_at, { file: problem.file, line: problem.line }) : problem.file;
      const item = el("li", { class: kind === "jz-warning" ? "jz-problem jz-warning-item" : "jz-problem", "data-element-id": problem.element_id || "" },
        el("strong", {}, where), problem.element_id ? el("code", {}, ` [${problem.element_id}] `) : " ", problem.message);
      this.problems.append(item);
      const shape = problem.file === this.main && problem.element_id ? registry.get(problem.element_id) : null;
      if (!shape) continue;
      canvas.addMarker(problem.element_id, kind);
      this.marked.push(problem.element_id);
      overlays.add(problem.element_id, kind, {
        position: { top: -26, left: 0 },
        html: el("div", { class: `${kind}-overlay`, title: problem.message, "data-element-id": problem.element_id }, problem.message),
      });
      if (this.marked.length === 1) canvas.scrollToElement(shape); // bring the first problem into view
      item.addEventListener("click", () => {
        this.show(this.main);
        this.modeler.get("selection").select(shape);
        canvas.scrollToElement(shape);
      });
    }
  }

  // The processes of the main diagram this deploy claims a base for: on a new page every executable process
  // (a new process starts from version 0); on an edit page the process that was loaded, if its id was kept.
  baseVersions() {
    const ids = (this.modeler.getDefinitions()?.rootElements || [])
      .filter((e) => e.$type === "bpmn:Process" && e.isExecutable !== false).map((e) => e.id);
    const bases = {};
    for (const id of ids) {
      if (this.bases.has(id)) bases[id] = this.bases.get(id);
      else if (this.isNew) bases[id] = 0;
    }
    return bases;
  }

  async deploy() {
    this.clearProblems();
    this.deployButton.disabled = true;
    this.say(this.t.deploying);
    try {
      const files = await this.collect();
      const response = await fetch(this.deployUrl, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": this.csrf },
        body: JSON.stringify({ files, base_versions: this.baseVersions() }),
      });
      const body = await response.json().catch(() => ({}));
      if (response.status === 422 && body.problems) {
        this.say(this.t.refused, "error");
        this.showProblems(body.problems);
      } else if (response.status === 409 && body.error === "stale_base_version") {
        this.stale(body);
      } else if (!response.ok) {
        this.say(body.message || `${response.status}`, "error");
      } else {
        this.deployed(body.deployed || [], files);
      }
    } catch (error) {
      this.say(error.message, "error");
    } finally {
      this.deployButton.disabled = false;
    }
  }

  // Someone deployed since this edit's base: say who, which version, when; the diff and the latest version
  // open in a new tab so the edits on this page are kept.
  stale(body) {
    const t = this.t;
    const rows = el("ul", { class: "jz-stale-versions" });
    for (const row of body.since || []) {
      rows.append(el("li", { "data-version": row.version },
        el("a", { href: row.edit_url, target: "_blank", rel: "noopener" }, `v${row.version}`), " ",
        format(t.stale_row, { by: row.deployed_by, at: row.deployed_at_local })));
    }
    const links = el("p", {});
    if (body.diff_url) {
      links.append(el("a", { href: body.diff_url, target: "_blank", rel: "noopener", class: "jz-stale-diff" },
        format(t.view_diff, { old: body.base_version, new: body.latest_version })), " ");
    } else {
      links.append(el("a", { href: body.versions_url, target: "_blank", rel: "noopener" }, t.versions_link), " ");
    }
    links.append(el("a", { href: body.latest_edit_url, target: "_blank", rel: "noopener" },
      format(t.open_latest, { version: body.latest_version })));
    this.status.className = "jz-status flash flash-error jz-stale";
    this.status.dataset.latestVersion = body.latest_version;
    this.status.replaceChildren(el("p", {}, body.message), rows, links);
  }

  deployed(results, files) {
    const parts = [];
    for (const result of results) {
      this.bases.set(result.key, result.version); // the next deploy from this page builds on what it stored
      const text = format(result.created ? this.t.deployed : this.t.unchanged, { key: result.key, version: result.version });
      parts.push(el("span", { class: "jz-deployed", "data-key": result.key, "data-version": result.version }, text, " "),
        el("a", { href: result.url }, this.t.versions_link), " ");
    }
    const warnings = results.flatMap((result) => result.warnings || []);
    this.status.className = `jz-status flash ${warnings.length ? "flash-warning" : "flash-info"}`;
    if (warnings.length) parts.push(el("span", { class: "jz-warned" }, this.t.warned));
    this.status.replaceChildren(...parts);
    if (warnings.length) this.showProblems(warnings, "jz-warning");
    for (const [name, text] of Object.entries(files)) {
      const file = this.files.get(name);
      if (file) Object.assign(file, { text, original: text, dirty: false });
    }
  }
}

function addFonts() {
  if (document.querySelector("style[data-jz-fonts]")) return;
  const style = document.createElement("style");
  style.dataset.jzFonts = "1";
  style.textContent = `${bpmnFont}\n${dmnFont}`;
  document.head.append(style);
}

export async function startModeller(root) {
  addFonts();
  const modeller = new Modeller(root);
  try {
    await modeller.start();
  } catch (error) {
    root.append(el("p", { class: "flash flash-error" }, `${modeller.t.load_failed || "load failed"}: ${error.message}`));
    throw error;
  }
  return modeller;
}
