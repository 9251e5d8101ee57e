// Progress and per-annotator charts (plotly.min.js from the installed plotly package).
(() => {
  const stats = JSON.parse(document.getElementById("stats-data").textContent);
  const layout = (title) => ({title: {text: title}, margin: {t: 40, l: 50, r: 20, b: 60}});
  const config = {displayModeBar: false, staticPlot: false};
  const s = stats.status;
  Plotly.newPlot("chart-status", [{type: "bar", x: ["final", "open", "conflict"], y: [s.final, s.open, s.conflict],
    marker: {color: ["#2d8a4e", "#2d6cdf", "#d08700"]}}], layout("Tasks by status"), config);
  const a = stats.annotators;
  Plotly.newPlot("chart-annotators", [
    {type: "bar", name: "labels", x: a.map((r) => r.annotator), y: a.map((r) => r.labels)},
    {type: "bar", name: "agreement with final (%)", x: a.map((r) => r.annotator),
     y: a.map((r) => r.agreement_with_final === null ? 0 : Math.round(r.agreement_with_final * 100))},
  ], {...layout("Per annotator"), barmode: "group"}, config);
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "l" || e.key === "L") location.href = `/ui/projects/${stats.project}/label`;
    if (e.key === "a" || e.key === "A") location.href = `/ui/projects/${stats.project}/adjudicate`;
  });
})();
