// jzflow's front-end entry: htmx for partial page updates, and the BPMN diagram viewer (loaded on demand).
// The pages work without any of this; the CSP allows only 'self' scripts, so data comes in data-* attributes.
import htmx from "htmx.org";
import { initMenu } from "./lib/menu.js";
import { initPickers } from "./lib/picker.js";
import { initScrollBoxes, markScrollBoxes } from "./lib/scrollbox.js";

htmx.config.allowEval = false; // no hx-on / js: expressions: the CSP forbids eval anyway
htmx.config.allowScriptTags = false; // swapped-in HTML never runs scripts
htmx.config.includeIndicatorStyles = false; // indicator styles come from jzflow.css, not an inline <style>
htmx.config.historyCacheSize = 0; // pages hold CSRF tokens and personal data: keep them out of localStorage
window.htmx = htmx;

const scriptUrl = import.meta.url;

function ensureStylesheet() {
  const href = new URL("jzflow.css", scriptUrl).href;
  if (![...document.querySelectorAll("link[rel=stylesheet]")].some((link) => link.href === href)) {
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    document.head.appendChild(link);
  }
}

/**
 * Draw a process diagram into `element`: load the BPMN XML, zoom to fit, mark steps.
 * options: {current: [bpmnId], completed: [bpmnId], heat: {bpmnId: seconds}}
 * Returns the bpmn-js viewer.
 */
async function showDiagram(element, xmlUrl, options = {}) {
  ensureStylesheet();
  const { renderDiagram } = await import("./lib/diagram.js");
  return renderDiagram(element, xmlUrl, options);
}

function parseList(value, fallback) {
  if (!value) return fallback;
  try {
    return JSON.parse(value);
  } catch {
    return fallback;
  }
}

// <div data-jz-diagram="/tasks/7/diagram.bpmn" data-current='["a"]' data-completed='["b"]' data-heat='{"a": 3600}'>
function initDiagrams(root) {
  const scope = root && root.querySelectorAll ? root : document;
  const found = [...scope.querySelectorAll("[data-jz-diagram]")];
  if (scope.matches && scope.matches("[data-jz-diagram]")) found.push(scope);
  for (const element of found) {
    if (element.dataset.jzDiagramDone) continue;
    element.dataset.jzDiagramDone = "1";
    showDiagram(element, element.dataset.jzDiagram, {
      current: parseList(element.dataset.current, []),
      completed: parseList(element.dataset.completed, []),
      cancelled: parseList(element.dataset.cancelled, []),
      heat: parseList(element.dataset.heat, {}),
    }).catch((error) => {
      element.textContent = element.dataset.errorText || "流程图加载失败 (the diagram could not be loaded)";
      console.error(error);
    });
  }
}

window.jzflow = Object.assign(window.jzflow || {}, { showDiagram, initDiagrams });
htmx.onLoad(initDiagrams); // on the first load and on every swapped-in fragment

// <button data-jz-print>: print the page (the print stylesheet leaves only the document); no inline script (CSP).
document.addEventListener("click", (event) => {
  const button = event.target.closest && event.target.closest("[data-jz-print]");
  if (button) window.print();
});

htmx.onLoad(initPickers);
htmx.onLoad(markScrollBoxes);
initMenu();
initScrollBoxes();
