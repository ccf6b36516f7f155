// tailrace console: live tail (server-sent events), live cards and charts
// (polling JSON). Record text is only ever put in the page with textContent,
// never as markup.
"use strict";

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? n.toFixed(0) + " B" : n.toFixed(1) + " " + units[i];
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  if (cls) {
    const pre = document.createElement("pre");
    pre.className = cls;
    pre.textContent = text;
    td.appendChild(pre);
  } else {
    td.textContent = text;
  }
  row.appendChild(td);
  return td;
}

function startTail(button) {
  const state = document.getElementById("tail-state");
  const body = document.querySelector("#records tbody");
  const url = button.dataset.url + "?offset=" + encodeURIComponent(button.dataset.offset) +
    "&format=" + encodeURIComponent(button.dataset.format);
  const source = new EventSource(url);
  // the newest records only, a line each (the whole record: its offset's
  // link browses from there): what the browser lays out and paints per event
  // is bounded, and on a small machine shared with the broker that is most
  // of what a tail costs
  const maxRows = 20;
  source.addEventListener("records", (ev) => {
    // one insertion and one trim per event: the table is laid out once
    const rows = document.createDocumentFragment();
    let next = button.dataset.offset;
    for (const r of JSON.parse(ev.data)) {
      const row = document.createElement("tr");
      row.dataset.offset = r.offset;
      row.className = "new";
      const at = document.createElement("a");
      at.href = "?from=offset&offset=" + r.offset + "&limit=20&format=" +
        encodeURIComponent(button.dataset.format);
      at.textContent = String(r.offset);
      cell(row, "").appendChild(at);
      cell(row, r.time).className = "nowrap";
      cell(row, r.key, "key");
      const v = cell(row, r.value, "value");
      if (r.value_truncated) {
        const a = document.createElement("a");
        a.className = "more";
        a.href = button.dataset.url.replace(/\/tail$/, "/records/" + r.offset + "/value");
        a.textContent = "of " + fmtBytes(r.value_size) + ": download the whole value";
        v.appendChild(a);
      }
      const h = cell(row, r.headers.map((kv) => kv[0] + ": " + kv[1]).join("\n"), "headers");
      h.dataset.count = r.headers.length;
      rows.appendChild(row);
      next = r.offset + 1;
    }
    button.dataset.offset = next;  // one attribute change per event, not one per row
    body.appendChild(rows);
    const extra = body.rows.length - maxRows;
    if (extra > 0) {
      const range = document.createRange();
      range.setStartBefore(body.rows[0]);
      range.setEndAfter(body.rows[extra - 1]);
      range.deleteContents();
    }
    state.textContent = "following: next offset " + button.dataset.offset;
  });
  let skipped = 0;
  source.addEventListener("skipped", (ev) => {
    skipped += Number(JSON.parse(ev.data));
    document.getElementById("tail-skipped").textContent =
      skipped + " records skipped to keep up with the log end";
  });
  source.addEventListener("failed", (ev) => {
    state.textContent = "stopped: " + JSON.parse(ev.data);
    source.close();
  });
  source.onopen = () => { state.textContent = "following: next offset " + button.dataset.offset; };
  source.onerror = () => { state.textContent = "reconnecting…"; };
  button.textContent = "Stop tail";
  button.onclick = () => {
    source.close();
    state.textContent = "stopped";
    button.textContent = "Live tail";
    button.onclick = () => startTail(button);
  };
}

function drawChart(canvas, points, keys, unit) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 44;
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px sans-serif";
  ctx.strokeStyle = "#ccd";
  ctx.strokeRect(pad, 8, w - pad - 8, h - 28);
  const colors = ["#2b6cb0", "#dd6b20"];
  let max = 0;
  for (const p of points) for (const k of keys) if (p[k] != null) max = Math.max(max, p[k]);
  max = max > 0 ? max * 1.1 : 1;
  ctx.fillStyle = "#556";
  ctx.fillText(unit === "bytes" ? fmtBytes(max) : max.toPrecision(3), 2, 16);
  ctx.fillText("0", 2, h - 20);
  if (points.length < 2) return;
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  keys.forEach((k, i) => {
    ctx.strokeStyle = colors[i % colors.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    for (const p of points) {
      if (p[k] == null) { started = false; continue; }
      const x = pad + (w - pad - 8) * (p.t - t0) / Math.max(t1 - t0, 1);
      const y = 8 + (h - 28) * (1 - p[k] / max);
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    }
    ctx.stroke();
  });
}

async function pollJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!r.ok) throw new Error("HTTP " + r.status);
  return r.json();
}

function every(ms, fn) {
  fn();
  setInterval(fn, ms);
}

document.addEventListener("DOMContentLoaded", () => {
  const tail = document.getElementById("tail-toggle");
  if (tail) tail.onclick = () => startTail(tail);

  const charts = document.getElementById("charts");
  if (charts) {
    every(1000, async () => {
      const data = await pollJSON(charts.dataset.url);
      for (const c of charts.querySelectorAll("canvas")) {
        drawChart(c, data.points, c.dataset.series.split(","), c.dataset.unit);
      }
      charts.dataset.points = data.points.length;
      const last = data.points[data.points.length - 1];
      if (last) document.getElementById("last-point").textContent = JSON.stringify(last);
    });
  }

  const cards = document.querySelectorAll(".card.live");
  if (cards.length) {
    every(2000, async () => {
      const data = await pollJSON("/api/metrics");
      const last = data.points[data.points.length - 1];
      if (!last) return;
      for (const c of cards) {
        const v = last[c.dataset.metric];
        c.querySelector(".big").textContent = c.dataset.unit === "bytes" ? fmtBytes(v) : String(v);
      }
    });
  }

  const lag = document.getElementById("lag-chart");
  if (lag) {
    every(2000, async () => {
      const data = await pollJSON(lag.dataset.url);
      const points = data.series.map(([t, v]) => ({ t: t, lag: v }));
      drawChart(lag, points, ["lag"]);
      document.getElementById("total-lag").textContent = String(data.lag);
    });
  }
});
