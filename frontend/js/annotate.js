// Notes and tags of a sweep or a run: shown as tag chips and the notes' text, and edited in
// place by whoever may change them (its owner, or an admin; never a viewer or a share link).

import { h, mount, action, errorText } from "./dom.js";

/** True when the signed-in user may change what `owner` (a token id) owns. */
export function canEdit(ctx, owner) {
  return Boolean(!ctx.readOnly && !ctx.share && ctx.me && (ctx.me.role === "admin" || ctx.me.id === owner));
}

/** Tag chips for tables and detail pages. */
export function tagChips(tags) {
  return (tags || []).map((t) => h("span", { class: "tag", "data-tag": t }, t));
}

/** "a, b , ,c" → ["a", "b", "c"] (the API drops duplicates). */
export function parseTags(text) {
  return text.split(",").map((s) => s.trim()).filter(Boolean);
}

/**
 * The notes and tags of `item` ({notes, tags}) with an inline editor when `editable`.
 * save({notes, tags}) → the updated item (the API's answer). Returns {el, update(item)}:
 * update shows a newer item unless the editor is open.
 */
export function annotationBox(item, { editable, save, onSaved }) {
  const el = h("div", { class: "annotations", "data-annotations": "" });
  let current = item;
  let editing = false;

  function show() {
    editing = false;
    const tags = current.tags || [];
    mount(el,
      h("div", { class: "tags" }, tagChips(tags), !tags.length && h("span", { class: "muted" }, "no tags")),
      current.notes ? h("p", { class: "notes", "data-notes": "" }, current.notes) : h("p", { class: "muted notes" }, "No notes."),
      editable && h("button", { class: "btn small", type: "button", "data-action": "edit-notes", onclick: edit }, "Edit notes and tags"));
  }

  function edit() {
    editing = true;
    const tags = h("input", { type: "text", "data-input": "tags", value: (current.tags || []).join(", "), size: 40,
      placeholder: "tags, comma-separated (e.g. baseline, paper:fig3)" });
    const notes = h("textarea", { "data-input": "notes", rows: 3, maxlength: 5000, placeholder: "notes" });
    notes.value = current.notes || "";
    const error = h("div", { class: "field-error", role: "alert" });
    const saveBtn = h("button", { class: "btn small primary", type: "button", "data-action": "save-notes", onclick: action(async () => {
      try {
        current = await save({ notes: notes.value, tags: parseTags(tags.value) });
      } catch (e) {
        error.textContent = errorText(e);
        return;
      }
      if (onSaved) onSaved(current);
      show();
    }) }, "Save");
    mount(el, h("label", { class: "filter" }, "Tags ", tags), notes, error,
      h("div", { class: "actions" }, saveBtn, h("button", { class: "btn small", type: "button", onclick: show }, "Cancel")));
    notes.focus();
  }

  show();
  return {
    el,
    update(next) {
      if (editing) return;
      current = next;
      show();
    },
  };
}
