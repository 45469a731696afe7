// 选人: enhance a people <select> (grouped by unit, rendered by the server from the actor's scope) with a
// search by name, pinyin initials (lzy → 林志远), full pinyin or unit. The search asks the server
// (/people/search), which answers only people of the actor's scope; without JavaScript the select works alone.
//
// <div class="jz-picker" data-jz-picker="/people/search" data-task="7" data-search-label="…" data-none-text="…"
//      data-chosen-text="…"><label for="x">转办给</label><select id="x" name="to_username">…</select></div>

let counter = 0;

function optionFor(select, person) {
  let option = [...select.options].find((o) => o.value === person.username);
  if (!option) {
    option = new Option(person.label, person.username);
    select.appendChild(option);
  }
  return option;
}

function chosenText(select) {
  return [...select.selectedOptions].filter((o) => o.value).map((o) => o.textContent.trim()).join("、");
}

export function enhancePicker(root) {
  if (root.dataset.jzPickerDone) return;
  const select = root.querySelector("select");
  if (!select) return;
  root.dataset.jzPickerDone = "1";
  const id = `jz-picker-${++counter}`;
  const input = document.createElement("input");
  input.type = "search";
  input.className = "jz-picker-search";
  input.autocomplete = "off";
  input.placeholder = root.dataset.searchLabel || "";
  input.setAttribute("aria-label", root.dataset.searchLabel || "search");
  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-expanded", "false");
  input.setAttribute("aria-controls", `${id}-list`);
  const list = document.createElement("ul");
  list.id = `${id}-list`;
  list.className = "jz-picker-results";
  list.setAttribute("role", "listbox");
  list.setAttribute("aria-label", root.dataset.searchLabel || "results");
  list.hidden = true;
  const chosen = document.createElement("p");
  chosen.className = "jz-picker-chosen";
  chosen.setAttribute("aria-live", "polite");
  select.before(input, list);
  select.after(chosen);

  let results = [];
  let active = -1;
  let timer = 0;
  let asked = 0;

  const showChosen = () => {
    const text = chosenText(select);
    const colon = (document.documentElement.lang || "zh").startsWith("zh") ? "：" : ": ";
    chosen.textContent = text ? `${root.dataset.chosenText || "✓"}${colon}${text}` : "";
  };
  const close = () => {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  };
  const highlight = (index) => {
    active = index;
    [...list.children].forEach((li, i) => li.setAttribute("aria-selected", i === index ? "true" : "false"));
    if (index >= 0 && list.children[index]) input.setAttribute("aria-activedescendant", list.children[index].id);
  };
  const choose = (person) => {
    const option = optionFor(select, person);
    if (select.multiple) option.selected = true;
    else select.value = person.username;
    select.dispatchEvent(new Event("change", { bubbles: true }));
    input.value = "";
    close();
    showChosen();
  };
  const render = () => {
    list.replaceChildren();
    if (!results.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = root.dataset.noneText || "—";
      list.appendChild(li);
    }
    results.forEach((person, i) => {
      const li = document.createElement("li");
      li.id = `${id}-o${i}`;
      li.setAttribute("role", "option");
      li.dataset.username = person.username;
      const name = document.createElement("strong");
      name.textContent = person.name;
      li.appendChild(name);
      if (person.unit) {
        const unit = document.createElement("span");
        unit.className = "unit";
        unit.textContent = person.unit;
        li.append(" ", unit);
      }
      li.addEventListener("mousedown", (event) => {
        event.preventDefault(); // keep the focus in the search box
        choose(person);
      });
      list.appendChild(li);
    });
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    highlight(results.length ? 0 : -1);
  };
  const ask = async () => {
    const q = input.value.trim();
    if (!q) {
      close();
      return;
    }
    const url = new URL(root.dataset.jzPicker, window.location.href);
    url.searchParams.set("q", q);
    if (root.dataset.task) url.searchParams.set("task", root.dataset.task);
    const mine = ++asked;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(`${response.status}`);
      const body = await response.json();
      if (mine !== asked) return; // a later search has been sent: its answer wins
      results = Array.isArray(body.people) ? body.people : [];
      render();
    } catch (error) {
      console.error("people search failed", error);
      close();
    }
  };

  input.addEventListener("input", () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(ask, 150);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" && results.length) {
      event.preventDefault();
      if (list.hidden) render();
      highlight(Math.min(active + 1, results.length - 1));
    } else if (event.key === "ArrowUp" && results.length) {
      event.preventDefault();
      highlight(Math.max(active - 1, 0));
    } else if (event.key === "Enter" && !list.hidden) {
      event.preventDefault(); // choosing a person never submits the form
      if (active >= 0 && results[active]) choose(results[active]);
    } else if (event.key === "Escape") {
      close();
    }
  });
  input.addEventListener("blur", () => window.setTimeout(close, 100));
  select.addEventListener("change", showChosen);
  showChosen();
}

export function initPickers(root) {
  const scope = root && root.querySelectorAll ? root : document;
  const found = [...scope.querySelectorAll("[data-jz-picker]")];
  if (scope.matches && scope.matches("[data-jz-picker]")) found.push(scope);
  found.forEach(enhancePicker);
}
