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


CSS = """
body { font-family: system-ui, sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
p { line-height: 1.5; } code { background: #f3f3f3; padding: 0 .2em; }
.picture { margin: .8em 0; } .picture img { max-width: 100%; border: 1px solid #eee; }
.controls { margin: .3em 0; display: flex; gap: .5em; align-items: center; flex-wrap: wrap; }
.controls button { padding: .2em .7em; border: 1px solid #888; background: #fff; border-radius: 3px; cursor: pointer; }
.controls button.on { background: #333; color: #fff; }
.controls input[type=range] { width: 260px; }
.status { color: #888; font-size: .8em; }
table { border-collapse: collapse; font-size: .9em; } td, th { border: 1px solid #ddd; padding: .2em .6em; }
"""

SCRIPT = r"""
(function () {
  var errors = [];
  window.addEventListener('error', function (e) { errors.push(String(e.message || e)); report(); });
  var origError = console.error;
  console.error = function () { errors.push(Array.prototype.join.call(arguments, ' ')); return origError.apply(console, arguments); };
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
    var s = document.getElementById('lab-status');
    if (s) { s.textContent = 'images loaded: ' + ok + '/' + imgs.length + '; script errors: ' + errors.length +
                             (errors.length ? ' (' + errors.join(' | ') + ')' : ''); }
  }
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
           table: list[tuple[str, str]] | None = None) -> pathlib.Path:
    """Write ``index.html`` and ``figures/*.png`` into ``out_dir``; returns the page's path."""
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
        for p in s.pictures:
            body.append(_picture_html(p, fig_dir))
        body.append(f"<p>{html.escape(s.text)}</p>")
    body.append('<p class="status">The numbers on this page are in <a href="lab.json">lab.json</a>. '
                '<span id="lab-status">checking images...</span></p>')
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")
    path = out_dir / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    (out_dir / "lab.json").write_text(json.dumps(numbers, indent=2, default=_jsonable))
    return path


def _jsonable(x):
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
