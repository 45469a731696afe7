// 掌上办: a table wider than a phone scrolls inside its own box (mobile.css); such a box takes the keyboard
// focus (tabindex=0), so it can be scrolled without a mouse. Checked on load, on resize and on swapped-in HTML.
export function markScrollBoxes(root = document) {
  const scope = root && root.querySelectorAll ? root : document;
  for (const table of scope.querySelectorAll("main table")) {
    const scrolls = table.scrollWidth > table.clientWidth + 1 && getComputedStyle(table).overflowX !== "visible";
    if (scrolls && !table.hasAttribute("tabindex")) {
      table.setAttribute("tabindex", "0");
      table.dataset.jzScrollBox = "1";
    } else if (!scrolls && table.dataset.jzScrollBox) {
      table.removeAttribute("tabindex");
      delete table.dataset.jzScrollBox;
    }
  }
}

export function initScrollBoxes() {
  let timer = 0;
  window.addEventListener("resize", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => markScrollBoxes(document), 150);
  });
}
