// The BPMN viewer (bpmn-js NavigatedViewer), split into its own chunk: only pages with a diagram load it.
import NavigatedViewer from "bpmn-js/lib/NavigatedViewer";

const HEAT_LEVELS = 5;

function formatSeconds(seconds) {
  if (seconds >= 86400) return `${(seconds / 86400).toFixed(1)}d`;
  if (seconds >= 3600) return `${(seconds / 3600).toFixed(1)}h`;
  return `${Math.max(1, Math.round(seconds / 60))}m`;
}

function mark(canvas, registry, ids, className) {
  for (const id of ids || []) {
    if (registry.get(id)) canvas.addMarker(id, className);
  }
}

export async function renderDiagram(element, xmlUrl, options = {}) {
  const response = await fetch(xmlUrl, { credentials: "same-origin", headers: { Accept: "application/xml" } });
  if (!response.ok) throw new Error(`diagram ${xmlUrl}: HTTP ${response.status}`);
  const xml = await response.text();
  element.textContent = "";
  element.classList.add("jz-diagram-ready");
  const viewer = new NavigatedViewer({ container: element });
  await viewer.importXML(xml);
  const canvas = viewer.get("canvas");
  const registry = viewer.get("elementRegistry");
  const current = new Set(options.current || []);
  const completed = new Set((options.completed || []).filter((id) => !current.has(id)));
  mark(canvas, registry, [...completed], "jz-completed");
  mark(canvas, registry, (options.cancelled || []).filter((id) => !current.has(id) && !completed.has(id)), "jz-cancelled");
  mark(canvas, registry, [...current], "jz-current");
  const heat = options.heat || {};
  const values = Object.values(heat).filter((v) => typeof v === "number" && v > 0);
  if (values.length) {
    const max = Math.max(...values);
    const overlays = viewer.get("overlays");
    for (const [id, seconds] of Object.entries(heat)) {
      if (!registry.get(id) || typeof seconds !== "number" || seconds <= 0) continue;
      const level = Math.max(1, Math.ceil((seconds / max) * HEAT_LEVELS));
      canvas.addMarker(id, `jz-heat-${level}`);
      const badge = document.createElement("span");
      badge.className = "jz-heat-badge";
      badge.textContent = formatSeconds(seconds); // text, never HTML
      overlays.add(id, { position: { bottom: 0, right: 0 }, html: badge });
    }
  }
  canvas.zoom("fit-viewport", "auto");
  // A small margin: a lane or label never ends on (or a pixel past) the box's edge when the page settles.
  canvas.zoom(canvas.zoom() * 0.96, "auto");
  return viewer;
}
