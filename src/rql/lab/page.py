"""One self-contained HTML page: every picture embedded as a data URI (and written beside the page
as a PNG), controls in inline JavaScript, nothing fetched from the network.

The page checks itself when it has loaded: it sets ``data-images-loaded="N/M"`` (images decoded /
images) and ``data-errors`` (script errors and ``console.error`` calls seen) on ``<body>`` and
writes them into ``#lab-status``, so a headless browser can verify it.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import pathlib


@dataclasses.dataclass
class Picture:
    key: str
    """File stem under ``figures/``."""
    frames: list[tuple[dict, bytes]]
    """(attributes, PNG); with controls, the attributes say which control values show the frame."""
    alt: str
    controls: list[tuple[str, str, list, list]] = dataclasses.field(default_factory=list)
    """(attribute, label, values, value labels): buttons, or a slider when there are more than 4 values."""
    default: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Section:
    id: str
    title: str
    text: str
    """One paragraph (plain text; numbers included)."""
    pictures: list[Picture] = dataclasses.field(default_factory=list)
    live: list[str] = dataclasses.field(default_factory=list)
    """Live figures (names in :mod:`rql.lab.livejs`) drawn by the page's script from the embedded
    networks, shown before the pictures."""


CSS = """
:root { --ink: #222; --muted: #666; --line: #ddd; --rql: #c0392b; --bc: #2166ac; --fql: #7b3294; --accent: #1a9850; }
body { font-family: system-ui, sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em; color: var(--ink); }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid var(--line); }
p { line-height: 1.5; max-width: 75em; } code { background: #f3f3f3; padding: 0 .2em; }
.picture { margin: .8em 0; } .picture img { max-width: 100%; height: auto; border: 1px solid #eee; }
.controls { margin: .4em 0; display: flex; gap: .5em .9em; align-items: center; flex-wrap: wrap; }
.controls button { padding: .3em .8em; border: 1px solid #888; background: #fff; border-radius: 4px; cursor: pointer; font: inherit; }
.controls button:hover { background: #f2f2f2; }
.controls button.on { background: #333; color: #fff; border-color: #333; }
.controls button:focus-visible, .controls input:focus-visible, canvas:focus-visible { outline: 3px solid #f0a500; outline-offset: 2px; }
.controls input[type=range] { width: 200px; max-width: 60vw; vertical-align: middle; }
.controls .choice { display: inline-flex; gap: .25em; align-items: center; flex-wrap: wrap; }
.controls .lbl, .controls label { color: var(--muted); }
.controls output { font-variant-numeric: tabular-nums; min-width: 3em; display: inline-block; }
.live { margin: .8em 0 1em; padding: .6em .8em; border: 1px solid var(--line); border-radius: 6px; background: #fcfcfc; }
.live .body { display: flex; flex-wrap: wrap; gap: .6em 1.2em; align-items: flex-start; }
.live .canvases { display: flex; flex-wrap: wrap; gap: .6em; flex: 0 1 auto; max-width: 100%; }
.live .cv { flex: 0 1 auto; max-width: 100%; }
.live canvas { display: block; border: 1px solid #eee; background: #fff; max-width: 100%; }
.live .readouts { display: flex; flex-direction: column; gap: .35em; flex: 1 1 220px; font-size: .92em; }
.live .readouts .lbl { color: var(--muted); }
.live .readouts output { font-variant-numeric: tabular-nums; font-weight: 600; }
.live[data-live="error"]::before { content: "this live figure failed to start (see the console)"; color: #b00; }
.measured { color: #333; }
.status { color: #888; font-size: .8em; }
table { border-collapse: collapse; font-size: .9em; } td, th { border: 1px solid var(--line); padding: .2em .6em; text-align: left; }
@media (max-width: 600px) { body { margin: 1em auto; padding: 0 .6em; } h1 { font-size: 1.3em; } .live { padding: .4em; } td, th { word-break: break-word; } }
"""

SCRIPT = r"""
(function () {
  var errors = [];
  window.addEventListener('error', function (e) { errors.push(String(e.message || e)); report(); });
  var origError = console.error;
  console.error = function () { errors.push(Array.prototype.join.call(arguments, ' ')); setTimeout(report, 0); return origError.apply(console, arguments); };
  function show(group) {
    var sel = {};
    group.querySelectorAll('[data-attr]').forEach(function (c) {
      if (c.tagName === 'INPUT') { sel[c.dataset.attr] = c.dataset['v' + c.value]; }
      else if (c.classList.contains('on')) { sel[c.dataset.attr] = c.dataset.value; }
    });
    group.querySelectorAll('input[data-attr]').forEach(function (c) {
      var out = group.querySelector('output[data-for="' + c.dataset.attr + '"]');
      if (out) { out.textContent = c.dataset['l' + c.value]; }
    });
    group.querySelectorAll('img.frame').forEach(function (img) {
      var ok = true;
      for (var k in sel) { if (img.getAttribute('data-' + k) !== sel[k]) { ok = false; } }
      img.hidden = !ok;
    });
  }
  document.querySelectorAll('.picture').forEach(function (group) {
    group.querySelectorAll('button[data-attr]').forEach(function (b) {
      b.addEventListener('click', function () {
        group.querySelectorAll('button[data-attr="' + b.dataset.attr + '"]').forEach(function (o) { o.classList.remove('on'); });
        b.classList.add('on'); show(group);
      });
    });
    group.querySelectorAll('input[data-attr]').forEach(function (r) { r.addEventListener('input', function () { show(group); }); });
    show(group);
  });
  function report() {
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);
    document.body.setAttribute('data-errors', String(errors.length));
    var live = document.querySelectorAll('.live[data-fig]'), liveOk = document.querySelectorAll('.live[data-live="ok"]').length;
    document.body.setAttribute('data-live-figures', liveOk + '/' + live.length);
    var s = document.getElementById('lab-status');
    if (s) { s.textContent = 'images loaded: ' + ok + '/' + imgs.length + '; live figures: ' + liveOk + '/' + live.length +
                             '; script errors: ' + errors.length +
                             (errors.length ? ' (' + errors.join(' | ') + ')' : ''); }
  }
  window.labReport = report;
  if (document.readyState === 'complete') { report(); } else { window.addEventListener('load', report); }
})();
"""


def _frame_name(key: str, attrs: dict) -> str:
    parts = [key] + [f"{k}{v}" for k, v in attrs.items()]
    return "-".join(str(p).replace("/", "_").replace(" ", "_") for p in parts) + ".png"


def _picture_html(p: Picture, fig_dir: pathlib.Path) -> str:
    out = [f'<div class="picture" id="pic-{html.escape(p.key)}">']
    for attr, label, values, labels in p.controls:
        default = str(p.default.get(attr, values[0]))
        out.append('<div class="controls">' + html.escape(label) + ":")
        if len(values) > 4:
            idx = [str(v) for v in values].index(default)
            data = " ".join(f'data-v{i}="{html.escape(str(v))}" data-l{i}="{html.escape(str(lab))}"'
                            for i, (v, lab) in enumerate(zip(values, labels)))
            out.append(f'<input type="range" min="0" max="{len(values) - 1}" step="1" value="{idx}" '
                       f'data-attr="{attr}" {data}><output data-for="{attr}">{html.escape(str(labels[idx]))}</output>')
        else:
            for v, lab in zip(values, labels):
                on = ' class="on"' if str(v) == default else ""
                out.append(f'<button type="button" data-attr="{attr}" data-value="{html.escape(str(v))}"{on}>'
                           f"{html.escape(str(lab))}</button>")
        out.append("</div>")
    links = []
    for attrs, data in p.frames:
        name = _frame_name(p.key, attrs)
        (fig_dir / name).write_bytes(data)
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        shown = all(str(attrs.get(a)) == str(p.default.get(a, vals[0])) for a, _, vals, _ in p.controls)
        dattrs = " ".join(f'data-{k}="{html.escape(str(v))}"' for k, v in attrs.items())
        cls = ' class="frame"' if p.controls else ""
        hidden = "" if shown else " hidden"
        out.append(f'<img{cls} {dattrs} src="{uri}" alt="{html.escape(p.alt)}" data-file="figures/{name}"{hidden}>')
        links.append(name)
    if len(links) == 1:
        out.append(f'<div class="status"><a href="figures/{links[0]}">figures/{links[0]}</a></div>')
    else:
        out.append(f'<div class="status">{len(links)} frames in figures/{html.escape(p.key)}-*.png</div>')
    out.append("</div>")
    return "\n".join(out)


def render(out_dir: pathlib.Path, title: str, intro: str, sections: list[Section], numbers: dict,
           table: list[tuple[str, str]] | None = None, live_data: dict | None = None,
           live_script: str = "") -> pathlib.Path:
    """Write ``index.html`` and ``figures/*.png`` into ``out_dir``; returns the page's path. With
    ``live_data`` (JSON: the packed networks and what the figures need) the page embeds it and runs
    ``live_script``, which draws the sections' live figures."""
    out_dir = pathlib.Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    if table:
        body.append("<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                                        for k, v in table) + "</table>")
    body.append("<ol>" + "".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections) + "</ol>")
    for s in sections:
        body.append(f'<h2 id="{s.id}">{html.escape(s.title)}</h2>')
        for name in s.live:
            body.append(f'<div class="live" data-fig="{html.escape(name)}" id="live-{html.escape(name)}"></div>')
        for p in s.pictures:
            body.append(_picture_html(p, fig_dir))
        body.append(f"<p>{html.escape(s.text)}</p>")
    body.append('<p class="status">The numbers on this page are in <a href="lab.json">lab.json</a>. '
                '<span id="lab-status">checking images...</span></p>')
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n" + _live_html(live_data, live_script)
            + "</body></html>\n")
    path = out_dir / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    (out_dir / "lab.json").write_text(json.dumps(numbers, indent=2, default=_jsonable))
    return path


def _live_html(live_data: dict | None, live_script: str) -> str:
    if live_data is None:
        return ""
    data = json.dumps(live_data, separators=(",", ":"), default=_jsonable).replace("</", "<\\/")
    return (f'<script type="application/json" id="lab-data">{data}</script>\n'
            f"<script>\n(function () {{\n'use strict';\n{live_script}\n}})();\n</script>\n")


def _jsonable(x):
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
