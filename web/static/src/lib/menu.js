// 掌上办: on a narrow screen the main menu folds behind a "菜单" button (mobile.css); without JavaScript it wraps.
// On a wide screen a menu that does not fit beside the brand (a long English menu) takes a row of its own.

function wraps(nav) {
  const tops = new Set([...nav.querySelectorAll("a")].map((a) => Math.round(a.getBoundingClientRect().top)));
  return tops.size > 1;
}

export function fitMenu(bar) {
  const nav = bar.querySelector(".mainnav");
  if (!nav || !nav.offsetParent) return; // folded (phone): nothing to fit
  bar.classList.remove("nav-row");
  if (wraps(nav)) bar.classList.add("nav-row");
}

export function initMenu(doc = document) {
  const bar = doc.querySelector(".topbar");
  const toggle = bar && bar.querySelector(".menu-toggle");
  const nav = bar && bar.querySelector(".mainnav");
  if (!toggle || !nav || bar.classList.contains("js-menu")) return;
  bar.classList.add("js-menu");
  fitMenu(bar);
  let timer = 0;
  window.addEventListener("resize", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => fitMenu(bar), 100);
  });
  toggle.hidden = false;
  toggle.setAttribute("aria-expanded", "false");
  toggle.addEventListener("click", () => {
    const open = bar.classList.toggle("open");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });
  doc.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && bar.classList.contains("open")) {
      bar.classList.remove("open");
      toggle.setAttribute("aria-expanded", "false");
      toggle.focus();
    }
  });
}
