// The task queue, usable with the keyboard alone: 1-9 pick, Enter submit, S skip, U undo.
(() => {
  const root = document.getElementById("task");
  const project = root.dataset.project, kind = root.dataset.task;
  const $ = (id) => document.getElementById(id);
  let task = null, picked = [], spans = [], started = 0, done = 0;

  const api = async (method, path, body) => {
    const res = await fetch(`/api/projects/${project}${path}`, {
      method, headers: body ? {"content-type": "application/json"} : {},
      body: body ? JSON.stringify(body) : undefined, credentials: "same-origin"});
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    return {ok: res.ok, status: res.status, data};
  };
  const say = (text, bad) => { $("status").textContent = text; $("status").className = bad ? "error" : ""; };
  const labelText = (v) => typeof v === "string" ? v : JSON.stringify(v);

  function renderText() {
    const el = $("text");
    el.textContent = "";
    const text = task.text;
    let at = 0;
    for (const s of [...spans].sort((a, b) => a.start - b.start)) {
      el.append(document.createTextNode(text.slice(at, s.start)));
      const mark = document.createElement("mark");
      mark.className = "span";
      mark.textContent = text.slice(s.start, s.end);
      const tag = document.createElement("small");
      tag.textContent = s.label;
      mark.append(tag);
      el.append(mark);
      at = s.end;
    }
    el.append(document.createTextNode(text.slice(at)));
    $("spans").textContent = spans.map((s) => `${s.label}: "${text.slice(s.start, s.end)}"`).join(" · ");
  }

  function renderChoices() {
    const box = $("choices");
    box.textContent = "";
    task.labels.forEach((label, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.label = label;
      b.innerHTML = `<kbd>${i + 1}</kbd> `;
      b.append(document.createTextNode(label));
      if (picked.includes(label)) b.classList.add("picked");
      b.addEventListener("click", () => pick(i));
      box.append(b);
    });
  }

  async function load() {
    const res = await api("GET", "/next");
    picked = []; spans = [];
    if (!res.ok || !res.data) {
      task = null;
      $("empty").hidden = false; $("body").hidden = true;
      if (!res.ok) say(res.data?.detail || `error ${res.status}`, true);
      return;
    }
    task = res.data; started = performance.now();
    $("empty").hidden = true; $("body").hidden = false;
    $("prompt").textContent = task.prompt && task.prompt !== task.text ? task.prompt : "";
    renderText();
    const s = task.suggestion;
    $("suggestion").textContent = s ? `Suggestion: ${labelText(s.label)} (confidence ${(s.confidence * 100).toFixed(0)}%, ${s.source})` : "";
    const response = $("response");
    response.hidden = kind !== "response";
    response.value = task.prefill || "";
    if (s && (kind === "classification" || kind === "preference")) picked = [s.label];
    if (s && kind === "multilabel") picked = [...s.label];
    renderChoices();
    $("text").focus();
  }

  // Character offset in the record's text of a DOM point, skipping the span tags' labels.
  function offsetOf(el, node, offset) {
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    let total = 0;
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
      const isTag = t.parentElement && t.parentElement.tagName === "SMALL";
      if (t === node) return total + (isTag ? 0 : offset);
      if (!isTag) total += t.textContent.length;
    }
    return total;
  }

  function pick(i) {
    if (!task || i >= task.labels.length) return;
    const label = task.labels[i];
    if (kind === "spans") {
      const sel = window.getSelection();
      const el = $("text");
      if (!sel || sel.isCollapsed || !el.contains(sel.anchorNode)) { say("Select text first, then press a number.", true); return; }
      const range = sel.getRangeAt(0);
      const start = offsetOf(el, range.startContainer, range.startOffset);
      const end = offsetOf(el, range.endContainer, range.endOffset);
      if (end <= start) { say("Select text first, then press a number.", true); return; }
      spans = spans.filter((s) => s.end <= start || s.start >= end);
      spans.push({start, end, label});
      sel.removeAllRanges();
      renderText();
      say(`span ${label} added`);
      return;
    }
    if (kind === "multilabel") picked = picked.includes(label) ? picked.filter((l) => l !== label) : [...picked, label];
    else picked = [label];
    renderChoices();
  }

  function value() {
    if (kind === "spans") return spans;
    if (kind === "response") return $("response").value;
    if (kind === "rating") return picked.length ? Number(picked[0]) : null;
    if (kind === "multilabel") return picked;
    return picked[0] ?? null;
  }

  async function submit() {
    if (!task) return;
    const label = value();
    if (label === null || (Array.isArray(label) && !label.length && kind !== "spans")) { say("Pick a label first.", true); return; }
    const res = await api("POST", `/tasks/${task.task_id}/answer`, {label, seconds: (performance.now() - started) / 1000});
    if (!res.ok) { say(res.data?.detail ? `${res.status}: ${typeof res.data.detail === "string" ? res.data.detail : JSON.stringify(res.data.detail)}` : `error ${res.status}`, true); return; }
    done += 1; $("done").textContent = done;
    await load();  // the next task is on screen before the message: keys go to it
    say(`saved ${labelText(res.data.label)} (task ${res.data.task_id}: ${res.data.status})`);
  }

  async function skip() {
    if (!task) return;
    await api("POST", `/tasks/${task.task_id}/skip`);
    const skipped = task.task_id;
    await load();
    say(`skipped task ${skipped}`);
  }

  async function undo() {
    const res = await api("POST", "/undo");
    if (!res.ok) { say(res.data?.detail || `error ${res.status}`, true); return; }
    done = Math.max(0, done - 1); $("done").textContent = done;
    await load();
    say(`undone: task ${res.data.task_id}`);
  }

  document.addEventListener("keydown", (e) => {
    const inAnswer = e.target === $("response");
    if (inAnswer) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit(); }
      if (e.key === "Escape") $("response").blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (/^[1-9]$/.test(e.key)) { e.preventDefault(); pick(Number(e.key) - 1); }
    else if (e.key === "Enter") { e.preventDefault(); submit(); }
    else if (e.key === "s" || e.key === "S") { e.preventDefault(); skip(); }
    else if (e.key === "u" || e.key === "U") { e.preventDefault(); undo(); }
    else if (e.key === "e" && kind === "response") { e.preventDefault(); $("response").focus(); }
  });
  load();
})();
