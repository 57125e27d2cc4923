// Charts through uPlot (vendor/uplot): a line per series over dates, sized to its container.
import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h } from "./dom.js";

export function lineChart(title, dates, series, { band, unit = "$" } = {}) {
  const box = h("figure", { class: "chart", "aria-label": title },
    h("figcaption", { class: "muted" }, title));
  const xs = dates.map((d) => Date.parse(d.length === 10 ? d + "T00:00:00Z" : d) / 1000);
  const colors = ["#1f5fbf", "#b3261e", "#1e7a3c", "#a66900"];
  const opts = {
    width: 600, height: 220,
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 2, dash: s.dash }))],
    axes: [{}, { size: 80, values: (u, v) => v.map((x) => (unit === "$" ? "$" + x.toLocaleString() : `${x.toLocaleString()} ${unit}`)) }],
  };
  if (band) opts.bands = [{ series: band, fill: "#1f5fbf22" }];
  const plot = new uPlot(opts, [xs, ...series.map((s) => s.values.map((v) => (v === null ? null : Number(v))))], box);
  const fit = () => { const w = box.clientWidth - 16; if (w > 100) plot.setSize({ width: w, height: 220 }); };
  new ResizeObserver(fit).observe(box);
  return box;
}
