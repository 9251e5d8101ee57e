// Conflicts one at a time: 1-9 pick the final label, Enter decides, S shows the next one.
(() => {
  const root = document.getElementById("conflict");
  const project = root.dataset.project, kind = root.dataset.task;
  const schema = JSON.parse(root.dataset.labels || "[]");
  const $ = (id) => document.getElementById(id);
  let queue = [], at = 0, options = [], picked = null;
  const say = (text, bad) => { $("status").textContent = text; $("status").className = bad ? "error" : ""; };
  const show = (v) => typeof v === "string" ? v : JSON.stringify(v);

  async function load() {
    const res = await fetch(`/api/projects/${project}/conflicts`, {credentials: "same-origin"});
    queue = res.ok ? await res.json() : [];
    if (!res.ok) say(`error ${res.status}`, true);
    at = 0; render();
  }

  function render() {
    $("left").textContent = queue.length;
    const task = queue[at];
    $("empty").hidden = !!task; $("body").hidden = !task;
    if (!task) return;
    $("text").textContent = task.text;
    $("votes").textContent = "";
    for (const v of task.votes) {
      const li = document.createElement("li");
      li.textContent = `${v.annotator}: ${show(v.label)}`;
      $("votes").append(li);
    }
    const seen = new Map();
    for (const v of task.votes) seen.set(show(v.label), v.label);
    if (["classification", "preference"].includes(kind)) for (const l of schema) if (!seen.has(l)) seen.set(l, l);
    options = [...seen.values()];
    picked = null;
    const box = $("choices"); box.textContent = "";
    options.forEach((o, i) => {
      const b = document.createElement("button");
      b.type = "button"; b.innerHTML = `<kbd>${i + 1}</kbd> `;
      b.append(document.createTextNode(show(o)));
      b.addEventListener("click", () => choose(i));
      box.append(b);
    });
  }

  function choose(i) {
    if (i >= options.length) return;
    picked = options[i];
    [...$("choices").children].forEach((b, j) => b.classList.toggle("picked", j === i));
  }

  async function decide() {
    const task = queue[at];
    if (!task) return;
    if (picked === null) { say("Pick the final label first.", true); return; }
    const res = await fetch(`/api/projects/${project}/tasks/${task.task_id}/adjudicate`, {
      method: "POST", headers: {"content-type": "application/json"}, credentials: "same-origin",
      body: JSON.stringify({label: picked})});
    const data = await res.json().catch(() => ({}));
    if (!res.ok) { say(`${res.status}: ${data.detail || ""}`, true); return; }
    say(`task ${task.task_id} decided: ${show(data.label)}`);
    queue.splice(at, 1);
    if (at >= queue.length) at = 0;
    render();
  }

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (/^[1-9]$/.test(e.key)) { e.preventDefault(); choose(Number(e.key) - 1); }
    else if (e.key === "Enter") { e.preventDefault(); decide(); }
    else if (e.key === "s" || e.key === "S") { e.preventDefault(); at = queue.length ? (at + 1) % queue.length : 0; render(); }
  });
  load();
})();
