// 掌上办: on a narrow screen the main menu folds behind a "菜单" button (mobile.css); without JavaScript it wraps.
export function initMenu(doc = document) {
  const bar = doc.querySelector(".topbar");
  const toggle = bar && bar.querySelector(".menu-toggle");
  const nav = bar && bar.querySelector(".mainnav");
  if (!toggle || !nav || bar.classList.contains("js-menu")) return;
  bar.classList.add("js-menu");
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
