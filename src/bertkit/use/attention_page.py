"""One self-contained HTML page of a text's attention: no network, no CDN, the data and the script inline.

A person picks a layer and a head (or the mean of a layer's heads), hovers a token on the left to see where it
looks (lines to the keys it attends, the keys shaded by weight, its row outlined in the matrix) or a token on the
right to see what looks at it (its column); a click keeps the choice until the next click. [CLS]/[SEP] are red,
padding grey and struck through, the pair's second text has an orange bar.

The probabilities travel as little-endian uint16 (p × 65535, so within 8e-6 of the JSON's), base64 in a JSON
script block: a quarter of the size of decimal text, which matters for 12 layers × 12 heads × T². The page keeps
its state in `window.attentionView` (layer, head, focus) for tests and for a person's console.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np

PAGE = """<!doctype html>
<html lang="zh">
<head>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>attention: __TITLE__</title>
<style>
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "PingFang SC",
       "Microsoft YaHei", sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px 0; }
.sub { color: #666; font-size: 13px; margin-bottom: 10px; }
#controls { margin: 8px 0 12px 0; font-size: 14px; }
#controls select { font-size: 14px; margin-right: 14px; }
#views { display: flex; gap: 32px; align-items: flex-start; }
#lines { display: flex; align-items: flex-start; }
.col { display: flex; flex-direction: column; }
.tok { height: 20px; line-height: 20px; padding: 0 6px; font-size: 14px; cursor: pointer; white-space: nowrap;
       border-left: 3px solid transparent; }
#left .tok { text-align: right; }
.tok.special { color: #c0392b; font-weight: bold; }
.tok.pad { color: #999; text-decoration: line-through; }
.tok.seg1 { border-left-color: #f0a030; }
.tok.active { outline: 2px solid #1f6feb; }
#matrix { image-rendering: pixelated; border: 1px solid #ccc; }
#status { font-size: 13px; margin-top: 10px; min-height: 18px; color: #333; }
.legend { font-size: 12px; color: #666; margin-top: 6px; }
</style>
</head>
<body>
<h1>attention</h1>
<div class="sub" id="sub"></div>
<div id="controls">
  <label>layer <select id="layer"></select></label>
  <label>head <select id="head"></select></label>
</div>
<div id="views">
  <div id="lines"><div class="col" id="left"></div><canvas id="wires"></canvas><div class="col" id="right"></div></div>
  <div><canvas id="matrix"></canvas>
  <div class="legend">rows: the token looking (query) &middot; columns: the token looked at (key)</div></div>
</div>
<div id="status"></div>
<div class="legend"><span style="color:#c0392b;font-weight:bold">[CLS] / [SEP]</span> &middot;
<span style="color:#999;text-decoration:line-through">padding</span> &middot;
<span style="border-left:3px solid #f0a030;padding-left:4px">second text</span> &middot;
hover a token on the left: where it looks; on the right: what looks at it; click to keep it.</div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const T = D.tokens.length, L = D.layers, H = D.heads, ROW = 20, WIRE = 180;
  const raw = atob(D.probs);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  const q = new Uint16Array(bytes.buffer);
  const state = { layer: D.layer, head: D.head, focus: null, locked: false };
  function p(l, h, i, j) {  // l, h from 1; h = 0: the mean of the layer's heads
    if (h === 0) { let s = 0; for (let k = 1; k <= H; k++) s += p(l, k, i, j); return s / H; }
    return q[(((l - 1) * H + (h - 1)) * T + i) * T + j] / 65535;
  }
  document.getElementById("sub").textContent = D.text + (D.pair === null ? "" : "  |  " + D.pair) +
    "  \\u00b7  " + D.model + "  \\u00b7  " + L + " layers, " + H + " heads, " + T + " tokens";
  const layerSel = document.getElementById("layer"), headSel = document.getElementById("head");
  for (let l = 1; l <= L; l++) layerSel.add(new Option(String(l), String(l)));
  headSel.add(new Option("mean of heads", "0"));
  for (let h = 1; h <= H; h++) headSel.add(new Option(String(h), String(h)));
  layerSel.value = String(state.layer); headSel.value = String(state.head);
  function column(id, side) {
    const el = document.getElementById(id);
    D.tokens.forEach(function (t, i) {
      const s = document.createElement("div");
      s.className = "tok " + D.kinds[i] + (D.segments[i] === 1 ? " seg1" : "");
      s.textContent = t; s.dataset.index = String(i);
      s.addEventListener("mouseenter", function () { if (!state.locked) setFocus(side, i); });
      s.addEventListener("mouseleave", function () { if (!state.locked) setFocus(null, null); });
      s.addEventListener("click", function () {  // keeps this token; a second click on it lets go
        const same = state.locked && state.focus && state.focus.side === side && state.focus.index === i;
        state.locked = !same; setFocus(side, i);
      });
      el.appendChild(s);
    });
    return Array.from(el.children);
  }
  const left = column("left", "query"), right = column("right", "key");
  const wires = document.getElementById("wires"), matrix = document.getElementById("matrix");
  const cell = Math.max(4, Math.min(24, Math.floor(480 / T)));
  wires.width = WIRE; wires.height = T * ROW; matrix.width = matrix.height = T * cell;
  function setFocus(side, index) { state.focus = side === null ? null : { side: side, index: index }; draw(); }
  function shade(els, weights) {
    els.forEach(function (e, k) {
      const v = weights ? weights[k] : 0;  // below 0.5%: no shade, so padding (exactly 0) stays clear
      e.style.backgroundColor = v >= 0.005 ? "rgba(31,111,235," + (0.15 + 0.6 * v).toFixed(3) + ")" : "";
    });
  }
  function draw() {
    const l = state.layer, h = state.head, f = state.focus;
    const w = wires.getContext("2d");
    w.clearRect(0, 0, wires.width, wires.height);
    w.strokeStyle = "rgb(31,111,235)"; w.lineWidth = 2;
    for (let i = 0; i < T; i++) {
      if (f && f.side === "query" && f.index !== i) continue;
      for (let j = 0; j < T; j++) {
        if (f && f.side === "key" && f.index !== j) continue;
        const v = p(l, h, i, j);
        if (v < 0.01) continue;
        w.globalAlpha = Math.min(1, v);
        w.beginPath(); w.moveTo(0, i * ROW + ROW / 2); w.lineTo(WIRE, j * ROW + ROW / 2); w.stroke();
      }
    }
    w.globalAlpha = 1;
    const m = matrix.getContext("2d");
    m.clearRect(0, 0, matrix.width, matrix.height);
    for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) {
      const v = p(l, h, i, j);
      m.fillStyle = "rgb(" + Math.round(255 - 224 * v) + "," + Math.round(255 - 144 * v) + "," +
        Math.round(255 - 20 * v) + ")";
      m.fillRect(j * cell, i * cell, cell, cell);
    }
    left.forEach(function (e, i) { e.classList.toggle("active", !!f && f.side === "query" && f.index === i); });
    right.forEach(function (e, j) { e.classList.toggle("active", !!f && f.side === "key" && f.index === j); });
    const status = document.getElementById("status");
    if (!f) { shade(left, null); shade(right, null); status.textContent = ""; return; }
    const weights = [];
    for (let k = 0; k < T; k++) weights.push(f.side === "query" ? p(l, h, f.index, k) : p(l, h, k, f.index));
    shade(f.side === "query" ? right : left, weights); shade(f.side === "query" ? left : right, null);
    m.strokeStyle = "#e03131"; m.lineWidth = 2;
    if (f.side === "query") m.strokeRect(1, f.index * cell + 1, T * cell - 2, cell - 2);
    else m.strokeRect(f.index * cell + 1, 1, cell - 2, T * cell - 2);
    const top = weights.map(function (v, k) { return [v, k]; }).sort(function (a, b) { return b[0] - a[0]; })
      .slice(0, 5).map(function (x) { return D.tokens[x[1]] + " " + x[0].toFixed(3); }).join(", ");
    status.textContent = (f.side === "query" ? D.tokens[f.index] + " looks at: " : "looking at " +
      D.tokens[f.index] + ": ") + top;
  }
  layerSel.addEventListener("change", function () { state.layer = Number(layerSel.value); draw(); });
  headSel.addEventListener("change", function () { state.head = Number(headSel.value); draw(); });
  window.attentionView = {
    get layer() { return state.layer; }, get head() { return state.head; },
    get focus() { return state.focus; }, p: p, tokens: D.tokens
  };
  draw();
})();
</script>
</body>
</html>
"""


def page_html(maps, layer: int, head: int) -> str:
    """The page for `maps` (an `AttentionMaps`), opening at `layer`, `head` (from 1; head 0: the mean)."""
    quantised = np.round(np.clip(maps.probs, 0.0, 1.0) * 65535).astype("<u2")
    data = {
        "model": maps.model,
        "text": maps.text,
        "pair": maps.pair,
        "tokens": maps.tokens,
        "kinds": maps.kinds,
        "segments": maps.segments,
        "layers": maps.num_layers,
        "heads": maps.num_heads,
        "layer": layer,
        "head": head,
        "probs": base64.b64encode(quantised.tobytes()).decode("ascii"),
    }
    # "</" would end the script block early: JSON allows it escaped as "<\\/"
    blob = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    title = html.escape(maps.text if len(maps.text) <= 40 else maps.text[:40] + "…")
    fills = {"__TITLE__": title, "__DATA__": blob}
    return re.sub("__TITLE__|__DATA__", lambda m: fills[m.group(0)], PAGE)  # one pass: a text may hold either


def write_page(maps, path: Path, layer: int, head: int) -> None:
    Path(path).write_text(page_html(maps, layer, head), encoding="utf-8")
