"use strict";
// Member dashboard: fetches /v1/me, /v1/kpis and /v1/benchmarks/{kpi}, draws inline SVG charts.
(function () {
  const SVGNS = "http://www.w3.org/2000/svg";
  const COLORS = ["#d1495b", "#edae49", "#00798c", "#66a182", "#8d5b9e", "#2e4057"];
  const KPIS = [
    ["energy_per_good_part_kwh", "Energy per good part", "kWh"],
    ["co2e_per_good_part_kg", "CO2e per good part", "kg"],
    ["utilisation", "Utilisation", "share of time running"],
    ["scrap_rate", "Scrap rate", "share of parts"],
    ["good_parts_per_hour", "Good parts per running hour", "1/h"],
  ];
  // Bands are named after the published figures around the value: below_mean, median_p75, above_p90 ...
  const bandText = (b) => (b || "").replace(/^below_/, "below ").replace(/^above_/, "above ").replace("_", "–");
  const W = 460, H = 210, L = 48, R = 10, T = 10, B = 28;
  const $ = (id) => document.getElementById(id);
  let patterns = 0;

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVGNS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }
  function html(tag, text, cls) {
    const node = document.createElement(tag);
    if (text) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "–";
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toPrecision(2);
  }
  function status(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  async function api(path, token) {
    const res = await fetch(path, { headers: { Authorization: "Bearer " + token, Accept: "application/json" } });
    const body = await res.json();
    if (!res.ok) throw new Error(body.title + ": " + body.detail);
    return body;
  }

  function chart(cells, lines, label) {
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    const defs = el("defs", {}, svg);
    const hatch = "hatch" + ++patterns;
    const pat = el("pattern", { id: hatch, width: 6, height: 6, patternUnits: "userSpaceOnUse",
      patternTransform: "rotate(45)" }, defs);
    el("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch-line" }, pat);
    const times = cells.map((c) => Date.parse(c.period_start));
    const n = cells.length;
    const step = (W - L - R) / Math.max(n, 1);
    const xOf = (i) => L + step * (i + 0.5);
    let top = 0;
    for (const c of cells) if (c.status === "published") top = Math.max(top, c.p90 ?? c.p75 ?? c.median ?? c.mean);
    for (const ln of lines) for (const v of ln.values) if (v !== null) top = Math.max(top, v);
    top = top > 0 ? top * 1.1 : 1;
    const yOf = (v) => T + (H - T - B) * (1 - v / top);
    for (let k = 0; k <= 4; k++) {
      const v = (top * k) / 4;
      el("line", { x1: L, x2: W - R, y1: yOf(v), y2: yOf(v), class: "grid-line" }, svg);
      el("text", { x: L - 4, y: yOf(v) + 3, "text-anchor": "end", class: "tick" }, svg).textContent = fmt(v);
    }
    cells.forEach((c, i) => {
      const x = L + step * i + step * 0.12, w = step * 0.76;
      if (c.status !== "published") {
        const r = el("rect", { x, y: T, width: w, height: H - T - B, class: "suppressed", fill: `url(#${hatch})` }, svg);
        el("title", {}, r).textContent = c.period_start.slice(0, 10) + ": not published — " + c.reason;
        return;
      }
      // What a cell shows grows with its contributors: the mean, then the median, quartiles, p10/p90.
      const g = el("g", { class: "cell" }, svg);
      if (c.p10 !== null && c.p90 !== null)
        el("rect", { x, y: yOf(c.p90), width: w, height: Math.max(yOf(c.p10) - yOf(c.p90), 1), class: "band-outer" }, g);
      if (c.p25 !== null && c.p75 !== null)
        el("rect", { x, y: yOf(c.p75), width: w, height: Math.max(yOf(c.p25) - yOf(c.p75), 1), class: "band-inner" }, g);
      if (c.median !== null)
        el("line", { x1: x, x2: x + w, y1: yOf(c.median), y2: yOf(c.median), class: "median" }, g);
      el("line", { x1: x, x2: x + w, y1: yOf(c.mean), y2: yOf(c.mean), class: "mean" }, g);
      const shown = ["p10", "p25", "median", "p75", "p90"].filter((q) => c[q] !== null)
        .map((q) => `${q} ${fmt(c[q])}`);
      el("title", {}, g).textContent = `${c.period_start.slice(0, 10)}: ${c.contributors} companies, ` +
        [`mean ${fmt(c.mean)}`, ...shown].join(", ") +
        (c.own && c.own.band ? `; you: ${fmt(c.own.value)} (${bandText(c.own.band)})` : "");
    });
    lines.forEach((ln, j) => {
      const color = COLORS[j % COLORS.length];
      const parts = [];
      let pen = "M";
      ln.values.forEach((v, i) => {
        if (v === null) { pen = "M"; return; }  // a gap breaks the line
        parts.push(pen + xOf(i).toFixed(1) + "," + yOf(v).toFixed(1));
        pen = "L";
      });
      el("path", { d: parts.join(" "), class: "own", stroke: color }, svg);
      ln.values.forEach((v, i) => {
        if (v === null) return;
        const dot = el("circle", { cx: xOf(i), cy: yOf(v), r: 3, class: "dot", fill: color }, svg);
        el("title", {}, dot).textContent = `${ln.label} ${cells[i].period_start.slice(0, 10)}: ${fmt(v)}`;
      });
    });
    el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }, svg);
    const labelled = new Set([0, Math.floor((n - 1) / 2), n - 1]);
    for (const i of labelled) {
      if (i < 0 || i >= n) continue;
      const t = new Date(times[i]).toISOString().slice(0, 10);
      const anchor = n > 1 && i === n - 1 ? "end" : n > 1 && i === 0 ? "start" : "middle";
      const x = anchor === "end" ? W - R : anchor === "start" ? L : xOf(i);
      el("text", { x, y: H - B + 14, "text-anchor": anchor, class: "tick" }, svg).textContent = t;
    }
    return svg;
  }

  function card(kpi, title, unit, bench, kpiRows) {
    const box = html("div", "", "card");
    box.appendChild(html("h3", title));
    box.appendChild(html("p", unit + (bench.higher_is_better ? " · higher is better" : " · lower is better"), "sub"));
    // Leave out the empty history before the first period with peer figures or own data.
    const own = new Set(kpiRows.filter((r) => r[kpi] !== null).map((r) => r.period_start));
    const first = bench.cells.findIndex((c) => c.status === "published" || own.has(c.period_start));
    const cells = first < 0 ? bench.cells.slice(-1) : bench.cells.slice(first);
    bench = { ...bench, cells };
    const index = new Map(bench.cells.map((c, i) => [c.period_start, i]));
    const byAsset = new Map();
    for (const row of kpiRows) {
      const i = index.get(row.period_start);
      if (i === undefined) continue;
      if (!byAsset.has(row.asset)) byAsset.set(row.asset, new Array(bench.cells.length).fill(null));
      byAsset.get(row.asset)[i] = row[kpi];
    }
    const lines = [...byAsset.entries()].map(([asset, values]) => ({ label: asset, values }));
    box.appendChild(chart(bench.cells, lines, `${title}: your machines against the peer bands`));
    box.appendChild(dataTable(title, unit, bench.cells, lines));
    const reasons = new Map();
    for (const c of bench.cells) if (c.status !== "published") reasons.set(c.reason, (reasons.get(c.reason) || 0) + 1);
    for (const [reason, count] of reasons) {
      box.appendChild(html("p", `${count} period${count > 1 ? "s" : ""} not published: ${reason}`, "why"));
    }
    const last = [...bench.cells].reverse().find((c) => c.own && c.own.band);
    if (last) box.appendChild(html("p", `Latest published: you ${fmt(last.own.value)}, ` +
      `${bandText(last.own.band)} of peers (${last.period_start.slice(0, 10)})`, "why"));
    return box;
  }

  // The chart's text alternative: the same figures as a table, behind a disclosure widget.
  function dataTable(title, unit, cells, lines) {
    const details = html("details", "", "alt");
    details.appendChild(html("summary", "Figures as a table"));
    const table = html("table");
    table.appendChild(html("caption", `${title} (${unit}) per period`));
    const head = html("tr");
    for (const h of ["Period", "Peers", ...lines.map((l) => "Your " + l.label)]) {
      const th = html("th", h);
      th.scope = "col";
      head.appendChild(th);
    }
    table.appendChild(head);
    cells.forEach((c, i) => {
      const tr = html("tr");
      const th = html("th", c.period_start.slice(0, 10));
      th.scope = "row";
      tr.appendChild(th);
      const peers = c.status === "published"
        ? [`mean ${fmt(c.mean)}`, ...["p10", "p25", "median", "p75", "p90"].filter((q) => c[q] !== null)
          .map((q) => `${q} ${fmt(c[q])}`)].join(", ")
        : "not published: " + c.reason;
      tr.appendChild(html("td", peers));
      for (const ln of lines) tr.appendChild(html("td", fmt(ln.values[i])));
      table.appendChild(tr);
    });
    details.appendChild(table);
    return details;
  }

  // Where a band lies, 0 (lowest) to 1 (highest), from the figures named at its edges.
  const EDGE = { p10: 0.1, p25: 0.25, median: 0.5, mean: 0.5, p75: 0.75, p90: 0.9 };
  function bandPosition(b) {
    const m = /^(below|above)_(\w+)$/.exec(b);
    if (m) return m[1] === "below" ? EDGE[m[2]] / 2 : (EDGE[m[2]] + 1) / 2;
    const [lo, hi] = b.split("_");
    return (EDGE[lo] + EDGE[hi]) / 2;
  }
  function verdict(b, higherIsBetter) {
    const pos = bandPosition(b);
    const good = higherIsBetter ? pos > 0.5 : pos < 0.5;
    const strong = Math.abs(pos - 0.5) >= 0.3;
    return { cls: good ? "good" : "bad", words: good ? (strong ? "well ahead of most peers" : "better than the peer middle")
      : (strong ? "behind most peers" : "worse than the peer middle") };
  }
  // The member's own value in the latest published period against its mean over up to three periods before.
  function direction(cells, higherIsBetter, period) {
    const own = cells.map((c) => (c.own ? c.own.value : null));
    const last = cells.map((c, i) => [c, i]).reverse().find(([c]) => c.status === "published" && c.own);
    if (!last) return null;
    const [, i] = last;
    const before = own.slice(Math.max(0, i - 3), i).filter((v) => v !== null);
    if (!before.length) return { cls: "neutral", words: "no earlier " + period + " to compare with", arrow: "•" };
    const ref = before.reduce((a, b) => a + b, 0) / before.length;
    const span = before.length === 1 ? `the ${period} before` : `the ${before.length} ${period}s before`;
    const change = ref === 0 ? 0 : (own[i] - ref) / Math.abs(ref);
    if (Math.abs(change) < 0.03) return { cls: "neutral", words: `steady against ${span}`, arrow: "→" };
    const better = higherIsBetter ? change > 0 : change < 0;
    const pct = Math.round(Math.abs(change) * 100);
    return { cls: better ? "good" : "bad", arrow: change > 0 ? "▲" : "▼",
      words: `${better ? "improving" : "worsening"}: ${change > 0 ? "up" : "down"} ${pct} % against ${span}` };
  }

  function overview(role, period, byClass) {
    const box = $("overview");
    box.replaceChildren();
    box.appendChild(html("h2", role === "member" ? "Where you stand" : "Latest published peer figures"));
    const list = html("ul", "", "stand");
    KPIS.forEach(([kpi, title, unit], k) => {
      const item = html("li", "", "kpi");
      item.appendChild(html("h3", title));
      for (const [cls, benches] of byClass) {
        const bench = benches[k];
        const cell = [...bench.cells].reverse().find((c) => c.status === "published");
        const line = html("p", "", "line");
        line.appendChild(html("span", cls.replace(/_/g, " ") + ": ", "cls"));
        if (!cell) {
          line.appendChild(html("span", "no published " + period + " yet", "neutral"));
        } else if (role === "member" && cell.own && cell.own.band) {
          const v = verdict(cell.own.band, bench.higher_is_better);
          const badge = html("span", `you ${fmt(cell.own.value)} ${unit}, ${bandText(cell.own.band)} — ${v.words}`,
            "badge " + v.cls);
          line.appendChild(badge);
          const d = direction(bench.cells, bench.higher_is_better, period);
          if (d) {
            const trend = html("span", "", "trend " + d.cls);
            trend.appendChild(html("span", d.arrow + " ", "arrow"));
            trend.lastChild.setAttribute("aria-hidden", "true");
            trend.appendChild(document.createTextNode(d.words));
            line.appendChild(trend);
          }
          line.appendChild(html("span", ` (${period} of ${cell.period_start.slice(0, 10)}, ${cell.contributors} companies)`, "when"));
        } else {
          line.appendChild(html("span", `peers: mean ${fmt(cell.mean)} ${unit}` +
            (cell.median !== null ? `, median ${fmt(cell.median)}` : "") +
            ` (${period} of ${cell.period_start.slice(0, 10)}, ${cell.contributors} companies)`, "neutral"));
        }
        item.appendChild(line);
      }
      list.appendChild(item);
    });
    box.appendChild(list);
    box.hidden = false;
  }

  function totals(rows, member, period) {
    const box = $("totals");
    box.replaceChildren();
    if (!rows.length) { box.hidden = true; return; }
    box.appendChild(html("h2", "Your energy and emissions"));
    const sum = (rs, col) => rs.reduce((a, r) => a + (r[col] || 0), 0);
    const starts = [...new Set(rows.map((r) => r.period_start))].sort();
    const latest = rows.filter((r) => r.period_start === starts[starts.length - 1]);
    const assets = new Set(rows.map((r) => r.asset)).size;
    const dl = html("dl", "", "totals");
    const add = (term, value) => { dl.appendChild(html("dt", term)); dl.appendChild(html("dd", value)); };
    const kwh = (v) => v >= 10000 ? `${(v / 1000).toFixed(1)} MWh` : `${v.toFixed(0)} kWh`;
    const kg = (v) => v >= 10000 ? `${(v / 1000).toFixed(1)} t CO2e` : `${v.toFixed(0)} kg CO2e`;
    add(`Since ${starts[0].slice(0, 10)} (${assets} machine${assets === 1 ? "" : "s"})`,
      `${kwh(sum(rows, "energy_kwh"))} · ${kg(sum(rows, "co2e_kg"))} · ${Math.round(sum(rows, "parts_good")).toLocaleString("en")} good parts`);
    add(`This ${period} so far (from ${starts[starts.length - 1].slice(0, 10)})`,
      `${kwh(sum(latest, "energy_kwh"))} · ${kg(sum(latest, "co2e_kg"))}`);
    box.appendChild(dl);
    const button = html("button", "Download my KPIs (CSV)");
    button.type = "button";
    button.id = "download";
    button.addEventListener("click", () => download(rows, member, period));
    box.appendChild(button);
    box.hidden = false;
  }

  function csv(rows) {
    if (!rows.length) return "";
    const cols = Object.keys(rows[0]);
    const cell = (v) => v === null || v === undefined ? "" : /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v);
    return [cols.join(","), ...rows.map((r) => cols.map((c) => cell(r[c])).join(","))].join("\n") + "\n";
  }
  function download(rows, member, period) {
    const url = URL.createObjectURL(new Blob([csv(rows)], { type: "text/csv" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `kpis-${member}-${period}.csv`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  async function show(token, period) {
    status("Loading…");
    const me = await api("/v1/me", token);
    if (me.role === "admin") throw new Error("This dashboard is for member and analyst tokens.");
    const classes = me.role === "member" ? me.asset_classes : (await api("/v1/catalog", token)).asset_classes
      .map((c) => c.name);
    const kpis = me.role === "member" ? (await api(`/v1/kpis?period=${period}`, token)).data : [];
    const root = $("classes");
    root.replaceChildren();
    const byClass = [];
    for (const cls of classes) {
      const benches = await Promise.all(KPIS.map(([kpi]) =>
        api(`/v1/benchmarks/${kpi}?asset_class=${encodeURIComponent(cls)}&period=${period}`, token)));
      byClass.push([cls, benches]);
    }
    overview(me.role, period, byClass);
    if (me.role === "member") totals(kpis, me.member, period); else $("totals").hidden = true;
    for (const [cls, benches] of byClass) {
      root.appendChild(html("h2", cls.replace(/_/g, " ") + ": your machines against their peers"));
      const grid = html("div", "", "grid");
      root.appendChild(grid);
      const rows = kpis.filter((r) => r.asset_class === cls);
      KPIS.forEach(([kpi, title, unit], k) => grid.appendChild(card(kpi, title, unit, benches[k], rows)));
    }
    $("legend").hidden = false;
    $("logout").hidden = false;
    status(me.role === "member"
      ? `Member ${me.member}: ${classes.length} asset class${classes.length === 1 ? "" : "es"}, by ${period}.`
      : `Analyst view (no own values), by ${period}.`);
  }

  // A link from the cluster office carries the token in its #fragment, which the browser never sends:
  // keep it in this tab's session storage and take it out of the address bar (and its history).
  function tokenFromLink() {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (!m) return false;
    sessionStorage.setItem("mdh-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
    return true;
  }

  function start() {
    tokenFromLink();
    window.addEventListener("hashchange", () => {  // another link opened in this tab
      if (!tokenFromLink()) return;
      const token = sessionStorage.getItem("mdh-token");
      $("token").value = token;
      show(token, $("period").value).catch((err) => status(err.message, true));
    });
    const saved = sessionStorage.getItem("mdh-token");
    if (saved) $("token").value = saved;
    $("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = $("token").value.trim();
      sessionStorage.setItem("mdh-token", token);
      show(token, $("period").value).catch((err) => status(err.message, true));
    });
    $("period").addEventListener("change", () => {
      const token = sessionStorage.getItem("mdh-token");
      if (token) show(token, $("period").value).catch((err) => status(err.message, true));
    });
    $("logout").addEventListener("click", () => {
      sessionStorage.removeItem("mdh-token");
      $("token").value = "";
      $("classes").replaceChildren();
      $("overview").hidden = true;
      $("totals").hidden = true;
      $("legend").hidden = true;
      $("logout").hidden = true;
      status("Token forgotten.");
    });
    if (saved) show(saved, $("period").value).catch((err) => status(err.message, true));
  }
  document.addEventListener("DOMContentLoaded", start);
})();
