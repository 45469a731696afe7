// bpmn-js's `translate` service in the reader's language: the page hands the map (English → 中文) in
// data-panel-i18n (web/modeller/panel_zh.py); a text not in the map stays as bpmn-js wrote it.
export function translateModule(map) {
  const dictionary = map || {};
  function translate(template, replacements) {
    const text = Object.prototype.hasOwnProperty.call(dictionary, template) ? dictionary[template] : template;
    return text.replace(/{([^}]+)}/g, (_, key) => (replacements && key in replacements ? replacements[key] : `{${key}}`));
  }
  return { translate: ["value", translate] };
}
