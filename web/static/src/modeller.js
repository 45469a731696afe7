// Entry of the 流程建模 pages (web/modeller): the editor and the version diff, each loaded when the page has one.
// The heavy parts (bpmn-js Modeler, the properties panel, dmn-js) are chunks fetched only by these pages.
function start() {
  const editor = document.querySelector("[data-jz-modeller]");
  if (editor) import("./lib/modeller/editor.js").then(({ startModeller }) => startModeller(editor));
  const diff = document.querySelector("[data-jz-diff]");
  if (diff) import("./lib/modeller/diff.js").then(({ startDiff }) => startDiff(diff));
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
