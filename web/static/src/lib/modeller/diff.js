// Two read-only viewers side by side, the old version left and the new right, with the server's element diff
// as markers: removed (left), added (right), changed (both). Scrolling or zooming one moves the other too.
import NavigatedViewer from "bpmn-js/lib/NavigatedViewer";

async function load(container, url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  const viewer = new NavigatedViewer({ container });
  await viewer.importXML(await response.text());
  viewer.get("canvas").zoom("fit-viewport", "auto");
  return viewer;
}

function mark(viewer, markers, kinds) {
  const registry = viewer.get("elementRegistry");
  const canvas = viewer.get("canvas");
  for (const [id, kind] of Object.entries(markers)) {
    if (kinds.includes(kind) && registry.get(id)) canvas.addMarker(id, `jz-diff-${kind}`);
  }
}

export async function startDiff(root) {
  const markers = JSON.parse(root.dataset.markers || "{}");
  const [left, right] = await Promise.all([
    load(root.querySelector('[data-side="old"]'), root.dataset.oldUrl),
    load(root.querySelector('[data-side="new"]'), root.dataset.newUrl),
  ]);
  mark(left, markers, ["removed", "changed"]);
  mark(right, markers, ["added", "changed"]);
  let syncing = false;
  const follow = (from, to) => from.on("canvas.viewbox.changed", ({ viewbox }) => {
    if (syncing) return;
    syncing = true;
    to.get("canvas").viewbox(viewbox);
    syncing = false;
  });
  follow(left, right);
  follow(right, left);
  for (const row of document.querySelectorAll("tr[data-element-id]")) {
    row.addEventListener("click", () => {
      for (const viewer of [left, right]) {
        const shape = viewer.get("elementRegistry").get(row.dataset.elementId);
        if (shape) viewer.get("canvas").scrollToElement(shape);
      }
    });
  }
  root.dataset.ready = "1";
  return { left, right };
}
