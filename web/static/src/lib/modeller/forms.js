// A task form's JSON Schema and UI schema side by side with a live preview, rendered by the server exactly
// as the task page will render it (web/formrender.py). The preview HTML is the server's escaped output.

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function parse(text) {
  if (!text.trim()) return { value: null };
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { error: error.message };
  }
}

function area(label, value, onInput) {
  const wrap = document.createElement("label");
  wrap.className = "jz-json";
  wrap.textContent = label;
  const textarea = document.createElement("textarea");
  textarea.spellcheck = false;
  textarea.rows = 18;
  textarea.value = value;
  textarea.addEventListener("input", onInput);
  wrap.appendChild(textarea);
  return { wrap, textarea };
}

export class FormEditor {
  // files: {schema: {name, text}, ui: {name, text} | null}; previewUrl may be "" (read-only: no preview)
  constructor(container, files, { previewUrl, csrf, t, onChange }) {
    this.files = files;
    this.t = t;
    this.previewUrl = previewUrl;
    this.csrf = csrf;
    this.onChange = onChange;
    container.classList.add("jz-form-editor");
    const editors = document.createElement("div");
    editors.className = "jz-form-sources";
    this.schema = area(`${t.schema} · ${files.schema.name}`, files.schema.text, () => this.changed());
    editors.appendChild(this.schema.wrap);
    if (files.ui) {
      this.ui = area(`${t.uischema} · ${files.ui.name}`, files.ui.text, () => this.changed());
      editors.appendChild(this.ui.wrap);
    }
    this.error = document.createElement("p");
    this.error.className = "jz-form-error";
    this.error.setAttribute("role", "alert");
    const preview = document.createElement("div");
    preview.className = "jz-form-preview";
    const heading = document.createElement("h3");
    heading.textContent = t.preview;
    this.output = document.createElement("form");
    this.output.className = "jz-form-output";
    this.output.addEventListener("submit", (event) => event.preventDefault());
    preview.append(heading, this.error, this.output);
    container.append(editors, preview);
    this.refresh = debounce(() => this.render(), 400);
    this.render();
  }

  changed() {
    this.files.schema.text = this.schema.textarea.value;
    if (this.ui) this.files.ui.text = this.ui.textarea.value;
    this.onChange();
    this.refresh();
  }

  async render() {
    const schema = parse(this.schema.textarea.value);
    const ui = this.ui ? parse(this.ui.textarea.value) : { value: null };
    const broken = schema.error || ui.error;
    this.error.textContent = broken ? `${this.t.invalid_json}: ${broken}` : "";
    if (broken || !this.previewUrl) return;
    try {
      const response = await fetch(this.previewUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": this.csrf, Accept: "text/html" },
        body: JSON.stringify({ schema: schema.value || {}, uischema: ui.value }),
      });
      const text = await response.text();
      if (!response.ok) {
        this.error.textContent = `${this.t.preview_failed}: ${response.status}`;
        return;
      }
      this.output.innerHTML = text; // the server's rendering: escaped, no scripts (and the CSP forbids inline ones)
    } catch (error) {
      this.error.textContent = `${this.t.preview_failed}: ${error.message}`;
    }
  }
}
