"""The page's JavaScript: the trained networks evaluated in the browser, and the live figures.

``CORE`` decodes the packed weights (:mod:`rql.lab.live`) and evaluates them: an MLP forward pass and
its backward pass (the gradient of ``w . output`` with respect to the input), ensembles averaged, and
the project's flow steps (:mod:`rql.flow`: Euler sampling, reversal, one step). ``PLOT`` draws on a
canvas with one palette, labelled axes and legends. ``TOY`` and ``RUN`` are the figures of the toy
lab and of a run's page. Everything is plain JavaScript with no library, and nothing is fetched.

The page publishes ``window.rqlLab`` (the networks, the flow functions and each figure's state) so a
headless browser can compare them with the JAX networks, and every number a figure shows is an
``<output>`` whose ``data-value`` holds it at full precision.
"""

CORE = r"""
var LAB = JSON.parse(document.getElementById('lab-data').textContent);
function decodeWeights(b64) {
  var s = atob(b64), n = s.length, u = new Uint8Array(n);
  for (var i = 0; i < n; i++) { u[i] = s.charCodeAt(i); }
  return new Float32Array(u.buffer);
}
var WEIGHTS = decodeWeights(LAB.model.weights);
function arr(name) {
  var a = LAB.model.arrays[name]; if (!a) { return null; }
  var n = a.shape.reduce(function (p, q) { return p * q; }, 1);
  return {data: WEIGHTS.subarray(a.offset, a.offset + n), shape: a.shape,
          row: function (i) { var w = a.shape[a.shape.length - 1]; return Array.prototype.slice.call(WEIGHTS.subarray(a.offset + i * w, a.offset + (i + 1) * w)); }};
}
var C_GELU = Math.sqrt(2 / Math.PI);
function gelu(x) { return 0.5 * x * (1 + Math.tanh(C_GELU * (x + 0.044715 * x * x * x))); }
function geluGrad(x) {
  var u = C_GELU * (x + 0.044715 * x * x * x), th = Math.tanh(u);
  return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * C_GELU * (1 + 3 * 0.044715 * x * x);
}
function Net(name) {
  var spec = LAB.model.nets[name];
  this.name = name; this.spec = spec; this.clip = !!spec.clip;
  this.members = spec.members.map(function (layers) {
    return layers.map(function (L) {
      return {n: L.in, m: L.out, W: WEIGHTS.subarray(L.W, L.W + L.in * L.out), b: WEIGHTS.subarray(L.b, L.b + L.out),
              ln: L.ln ? [WEIGHTS.subarray(L.ln[0], L.ln[0] + L.out), WEIGHTS.subarray(L.ln[1], L.ln[1] + L.out)] : null};
    });
  });
  this.inDim = this.members[0][0].n; this.outDim = this.members[0][this.members[0].length - 1].m;
}
function memberForward(layers, x, tape) {
  var h = x;
  for (var i = 0; i < layers.length; i++) {
    var L = layers[i], m = L.m, z = new Float64Array(m), W = L.W, j, k;
    for (k = 0; k < m; k++) { z[k] = L.b[k]; }
    for (j = 0; j < L.n; j++) {
      var hj = h[j]; if (hj === 0) { continue; }
      var off = j * m; for (k = 0; k < m; k++) { z[k] += hj * W[off + k]; }
    }
    if (i === layers.length - 1) { return z; }
    var g = new Float64Array(m); for (k = 0; k < m; k++) { g[k] = gelu(z[k]); }
    var rec = {z: z};
    if (L.ln) {
      var mu = 0, mu2 = 0; for (k = 0; k < m; k++) { mu += g[k]; mu2 += g[k] * g[k]; }
      mu /= m; mu2 /= m; var inv = 1 / Math.sqrt(Math.max(0, mu2 - mu * mu) + 1e-6), y = new Float64Array(m), xh = new Float64Array(m);
      for (k = 0; k < m; k++) { xh[k] = (g[k] - mu) * inv; y[k] = xh[k] * L.ln[0][k] + L.ln[1][k]; }
      rec.xh = xh; rec.inv = inv; h = y;
    } else { h = g; }
    if (tape) { tape.push(rec); }
  }
}
function memberBackward(layers, tape, gout) {
  var gz = Float64Array.from(gout);
  for (var i = layers.length - 1; i >= 0; i--) {
    var L = layers[i], n = L.n, m = L.m, W = L.W, gh = new Float64Array(n), j, k;
    for (j = 0; j < n; j++) { var s = 0, off = j * m; for (k = 0; k < m; k++) { s += W[off + k] * gz[k]; } gh[j] = s; }
    if (i === 0) { return gh; }
    var rec = tape[i - 1], P = layers[i - 1], mm = P.m, gg = new Float64Array(mm);
    if (P.ln) {
      var dx = new Float64Array(mm), a = 0, b = 0;
      for (k = 0; k < mm; k++) { dx[k] = gh[k] * P.ln[0][k]; a += dx[k]; b += dx[k] * rec.xh[k]; }
      a /= mm; b /= mm;
      for (k = 0; k < mm; k++) { gg[k] = rec.inv * (dx[k] - a - rec.xh[k] * b); }
    } else { gg = gh; }
    gz = new Float64Array(mm);
    for (k = 0; k < mm; k++) { gz[k] = gg[k] * geluGrad(rec.z[k]); }
  }
}
// The output (ensemble mean) for one input vector.
Net.prototype.apply = function (x) {
  var E = this.members.length, out = new Float64Array(this.outDim);
  for (var e = 0; e < E; e++) { var y = memberForward(this.members[e], x, null); for (var k = 0; k < y.length; k++) { out[k] += y[k] / E; } }
  return out;
};
// (output, d(w . output)/d input) for one input vector and output weights w.
Net.prototype.applyGrad = function (x, w) {
  var E = this.members.length, out = new Float64Array(this.outDim), g = new Float64Array(this.inDim);
  for (var e = 0; e < E; e++) {
    var tape = [], y = memberForward(this.members[e], x, tape), gx = memberBackward(this.members[e], tape, w);
    for (var k = 0; k < y.length; k++) { out[k] += y[k] / E; }
    for (var j = 0; j < gx.length; j++) { g[j] += gx[j] / E; }
  }
  return [out, g];
};
function cat() { var out = []; for (var i = 0; i < arguments.length; i++) { var a = arguments[i]; if (typeof a === 'number') { out.push(a); } else { for (var j = 0; j < a.length; j++) { out.push(a[j]); } } } return out; }
function add(a, b, s) { var o = new Array(a.length); for (var i = 0; i < a.length; i++) { o[i] = a[i] + s * b[i]; } return o; }
function norm(a) { var s = 0; for (var i = 0; i < a.length; i++) { s += a[i] * a[i]; } return Math.sqrt(s); }
function dot(a, b) { var s = 0; for (var i = 0; i < a.length; i++) { s += a[i] * b[i]; } return s; }
function clip1(a) { return a.map(function (v) { return Math.max(-1, Math.min(1, v)); }); }
var Flow = {
  // v(obs, x, t) of a velocity network
  vel: function (net, obs, x, t) { return Array.from(net.apply(cat(obs, x, t))); },
  // rql.flow.euler_sample: F Euler steps from noise; returns the F + 1 points (unclipped)
  path: function (net, obs, x0, F) {
    var xs = [x0.slice()], x = x0.slice();
    for (var i = 0; i < F; i++) { x = add(x, Flow.vel(net, obs, x, i / F), 1 / F); xs.push(x); }
    return xs;
  },
  // rql.flow.reverse: from the action at t = 1 back by `dist` in F equal sub-steps
  reverse: function (net, obs, x1, dist, F) {
    var dt = dist / F, x = x1.slice(), t = 1;
    for (var i = 0; i < F; i++) { x = add(x, Flow.vel(net, obs, x, t), -dt); t -= dt; }
    return x;
  },
  // the partial actions RQL's value is trained on at t = k/F, k = 0..F (rql.lab.measure.reversal_path)
  reversal: function (net, obs, x1, F) {
    var out = []; for (var k = 0; k <= F; k++) { out.push(Flow.reverse(net, obs, x1, 1 - k / F, F)); } return out;
  },
  // rql.flow.one_step
  oneStep: function (net, obs, x, t, F) {
    var h = Math.min(1 / F, 1 - t); return [add(x, Flow.vel(net, obs, x, t), h), Math.min(t + 1 / F, 1)];
  },
  value: function (net, obs, x, t) { return net.apply(cat(obs, x, t))[0]; },
  // (V, grad_x V) of a value network on partial actions
  valueGrad: function (net, obs, x, t) {
    var r = net.applyGrad(cat(obs, x, t), [1]), o = obs.length;
    return [r[0][0], Array.from(r[1].slice(o, o + x.length))];
  },
  q: function (net, obs, a) { return net.apply(cat(obs, a))[0]; },
  qGrad: function (net, obs, a) { var r = net.applyGrad(cat(obs, a), [1]); return [r[0][0], Array.from(r[1].slice(obs.length))]; },
  // the Jacobian of one Euler step x -> x + v(s, x, t) h (rows: output dims)
  stepJacobian: function (net, obs, x, t, h) {
    var d = x.length, J = [], o = obs.length, inp = cat(obs, x, t);
    for (var k = 0; k < d; k++) {
      var w = new Array(d).fill(0); w[k] = 1;
      var g = net.applyGrad(inp, w)[1], row = [];
      for (var j = 0; j < d; j++) { row.push((j === k ? 1 : 0) + h * g[o + j]); }
      J.push(row);
    }
    return J;
  },
  // d (w . (x + v(s, x, t) h)) / dx: a vector-Jacobian product through one step
  stepVjp: function (net, obs, x, t, h, w) {
    var g = net.applyGrad(cat(obs, x, t), w)[1], o = obs.length;
    return w.map(function (wk, j) { return wk + h * g[o + j]; });
  }
};
function matmul(A, B) { return A.map(function (r) { return B[0].map(function (_, j) { var s = 0; for (var k = 0; k < r.length; k++) { s += r[k] * B[k][j]; } return s; }); }); }
function eye(d) { var I = []; for (var i = 0; i < d; i++) { var r = new Array(d).fill(0); r[i] = 1; I.push(r); } return I; }
// spectral norm (largest singular value), by power iteration on A^T A
function specNorm(A) {
  var n = A[0].length, v = new Array(n).fill(1 / Math.sqrt(n)), s = 0;
  if (A.length === 2 && n === 2) {
    var a = A[0][0], b = A[0][1], c = A[1][0], d = A[1][1];
    var p = a * a + b * b + c * c + d * d, q = a * d - b * c;
    return Math.sqrt((p + Math.sqrt(Math.max(0, p * p - 4 * q * q))) / 2);
  }
  for (var it = 0; it < 100; it++) {
    var Av = A.map(function (r) { return dot(r, v); }), w = new Array(n).fill(0);
    for (var i = 0; i < A.length; i++) { for (var j = 0; j < n; j++) { w[j] += A[i][j] * Av[i]; } }
    s = norm(w); if (s === 0) { return 0; } v = w.map(function (x) { return x / s; });
  }
  return Math.sqrt(s);
}
// a seeded generator (mulberry32) and standard normals (Box-Muller)
function Rng(seed) { this.s = seed >>> 0; }
Rng.prototype.u = function () {
  var t = (this.s += 0x6D2B79F5); t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
Rng.prototype.normal = function () { var u = 1 - this.u(), v = this.u(); return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v); };
Rng.prototype.normals = function (d) { var o = []; for (var i = 0; i < d; i++) { o.push(this.normal()); } return o; };
var NETS = {}; Object.keys(LAB.model.nets).forEach(function (k) { NETS[k] = new Net(k); });
window.rqlLab = {nets: NETS, flow: Flow, figs: {}, lab: LAB, arr: arr, specNorm: specNorm, ready: false,
  // the page's network `name` on a list of input vectors (ensembles averaged)
  evaluate: function (name, inputs) { return inputs.map(function (x) { return Array.from(NETS[name].apply(x)); }); },
  // gradient of w . output with respect to the input, per input vector
  gradient: function (name, inputs, w) { return inputs.map(function (x) { return Array.from(NETS[name].applyGrad(x, w)[1]); }); }};
"""

PLOT = r"""
var PAL = {rql: '#c0392b', bc: '#2166ac', fql: '#7b3294', data: '#444444', wrong: '#e08214', grad: '#111111',
           ink: '#222222', grid: '#e6e6e6', faint: '#bbbbbb', accent: '#1a9850'};
var MODE_COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
function modeColor(k) { return k < 0 ? '#9a9a9a' : MODE_COLORS[k % MODE_COLORS.length]; }
function fmt(v, d) { if (v === null || v === undefined || isNaN(v)) { return '-'; } d = d === undefined ? 3 : d;
  var a = Math.abs(v); if (a !== 0 && (a < Math.pow(10, -d) || a >= 1e5)) { return v.toExponential(2); } return v.toFixed(d); }
function niceTicks(a, b, n) {
  var span = b - a, raw = span / (n || 5), p = Math.pow(10, Math.floor(Math.log10(raw))), st = p;
  [1, 2, 2.5, 5, 10].some(function (m) { st = m * p; return st >= raw; });
  var out = [], v = Math.ceil(a / st - 1e-9) * st; for (; v <= b + 1e-9 * span; v += st) { out.push(Math.abs(v) < 1e-12 ? 0 : v); }
  return out;
}
function Plot(canvas, o) { this.c = canvas; canvas._plot = this; this.o = o; this.m = {l: o.left || 50, r: 12, t: 12, b: 40}; this.layout(); }
Plot.prototype.layout = function () {
  var o = this.o, box = this.c.closest('.live') || this.c.parentElement, w = Math.min(((box && box.clientWidth) || 500) - 28, o.maxW || 520);
  w = Math.max(w, 240); var h = Math.max(Math.round(w * (o.aspect || 1)), o.minH || 0), dpr = window.devicePixelRatio || 1;
  this.W = w; this.H = h; this.c.style.width = w + 'px'; this.c.style.height = h + 'px';
  this.c.width = Math.round(w * dpr); this.c.height = Math.round(h * dpr);
  this.g = this.c.getContext('2d'); this.g.setTransform(dpr, 0, 0, dpr, 0, 0);
};
Plot.prototype.X = function (x) { var o = this.o, m = this.m; return m.l + (x - o.x[0]) / (o.x[1] - o.x[0]) * (this.W - m.l - m.r); };
Plot.prototype.Y = function (y) { var o = this.o, m = this.m; return this.H - m.b - (y - o.y[0]) / (o.y[1] - o.y[0]) * (this.H - m.t - m.b); };
Plot.prototype.inv = function (px, py) {
  var o = this.o, m = this.m;
  return [o.x[0] + (px - m.l) / (this.W - m.l - m.r) * (o.x[1] - o.x[0]), o.y[0] + (this.H - m.b - py) / (this.H - m.t - m.b) * (o.y[1] - o.y[0])];
};
Plot.prototype.clear = function () { var g = this.g; g.clearRect(0, 0, this.W, this.H); g.fillStyle = '#fff'; g.fillRect(0, 0, this.W, this.H); };
Plot.prototype.clipIn = function () { var g = this.g, m = this.m; g.save(); g.beginPath(); g.rect(m.l, m.t, this.W - m.l - m.r, this.H - m.t - m.b); g.clip(); };
Plot.prototype.axes = function (xl, yl, xt, yt) {
  var g = this.g, o = this.o, m = this.m, self = this;
  g.save(); g.strokeStyle = '#888'; g.lineWidth = 1; g.strokeRect(m.l, m.t, this.W - m.l - m.r, this.H - m.t - m.b);
  g.fillStyle = PAL.ink; g.font = '11px system-ui, sans-serif'; g.textAlign = 'center'; g.textBaseline = 'top';
  (niceTicks(o.x[0], o.x[1], this.W < 360 ? 4 : 6)).forEach(function (v) {
    var X = self.X(v); g.beginPath(); g.moveTo(X, self.H - m.b); g.lineTo(X, self.H - m.b + 4); g.stroke();
    g.fillText(xt ? xt(v) : String(+v.toFixed(3)), X, self.H - m.b + 5);
  });
  g.textAlign = 'right'; g.textBaseline = 'middle';
  (niceTicks(o.y[0], o.y[1], 5)).forEach(function (v) {
    var Y = self.Y(v); g.beginPath(); g.moveTo(m.l - 4, Y); g.lineTo(m.l, Y); g.stroke();
    g.fillText(yt ? yt(v) : (String(+v.toFixed(3))), m.l - 6, Y);
  });
  g.font = '12px system-ui, sans-serif'; g.textAlign = 'center'; g.textBaseline = 'bottom';
  g.fillText(xl, m.l + (this.W - m.l - m.r) / 2, this.H - 2);
  g.save(); g.translate(12, m.t + (this.H - m.t - m.b) / 2); g.rotate(-Math.PI / 2); g.textBaseline = 'middle'; g.fillText(yl, 0, 0); g.restore();
  g.restore();
};
Plot.prototype.legend = function (items, where) {
  var g = this.g, m = this.m; g.save(); g.font = (this.W < 420 ? '10px' : '11px') + ' system-ui, sans-serif';
  var room = this.W - m.l - m.r - 46;  // labels longer than the plot is wide are cut with an ellipsis
  items = items.map(function (it) { var l = it.label; if (g.measureText(l).width > room) { while (l.length > 4 && g.measureText(l + '...').width > room) { l = l.slice(0, -1); } l += '...'; }
    var c = {}; Object.keys(it).forEach(function (k) { c[k] = it[k]; }); c.label = l; return c; });
  var w = 0; items.forEach(function (it) { w = Math.max(w, g.measureText(it.label).width); });
  var bw = w + 34, bh = items.length * 16 + 6, x = where === 'left' ? m.l + 6 : this.W - m.r - bw - 6, y = m.t + 6;
  if (where === 'bottom') { y = this.H - m.b - bh - 6; }
  g.fillStyle = 'rgba(255,255,255,0.85)'; g.strokeStyle = '#ccc'; g.fillRect(x, y, bw, bh); g.strokeRect(x, y, bw, bh);
  items.forEach(function (it, i) {
    var yy = y + 11 + i * 16; g.strokeStyle = it.color; g.fillStyle = it.color; g.lineWidth = it.width || 2;
    g.setLineDash(it.dash || []);
    if (it.dot) { g.beginPath(); g.arc(x + 14, yy, 3.5, 0, 7); g.fill(); } else { g.beginPath(); g.moveTo(x + 5, yy); g.lineTo(x + 23, yy); g.stroke(); }
    g.setLineDash([]); g.fillStyle = PAL.ink; g.textBaseline = 'middle'; g.textAlign = 'left'; g.fillText(it.label, x + 28, yy);
  });
  g.restore();
};
Plot.prototype.line = function (pts, color, width, dash, alpha) {
  var g = this.g, self = this; if (!pts.length) { return; } g.save(); g.strokeStyle = color; g.lineWidth = width || 1.5; g.setLineDash(dash || []);
  g.globalAlpha = alpha === undefined ? 1 : alpha; g.beginPath();
  pts.forEach(function (p, i) { var X = self.X(p[0]), Y = self.Y(p[1]); if (i) { g.lineTo(X, Y); } else { g.moveTo(X, Y); } });
  g.stroke(); g.restore();
};
Plot.prototype.dot = function (p, color, r, stroke, alpha) {
  var g = this.g; g.save(); g.globalAlpha = alpha === undefined ? 1 : alpha; g.fillStyle = color; g.beginPath(); g.arc(this.X(p[0]), this.Y(p[1]), r || 3, 0, 7); g.fill();
  if (stroke) { g.strokeStyle = stroke; g.lineWidth = 1.2; g.stroke(); } g.restore();
};
Plot.prototype.arrow = function (p, d, color, width, alpha) {
  var g = this.g, x0 = this.X(p[0]), y0 = this.Y(p[1]), x1 = this.X(p[0] + d[0]), y1 = this.Y(p[1] + d[1]);
  var a = Math.atan2(y1 - y0, x1 - x0), L = Math.hypot(x1 - x0, y1 - y0), hs = Math.min(9, 0.4 * L + 3);
  g.save(); g.globalAlpha = alpha === undefined ? 1 : alpha; g.strokeStyle = color; g.fillStyle = color; g.lineWidth = width || 2;
  g.beginPath(); g.moveTo(x0, y0); g.lineTo(x1, y1); g.stroke();
  g.beginPath(); g.moveTo(x1, y1); g.lineTo(x1 - hs * Math.cos(a - 0.4), y1 - hs * Math.sin(a - 0.4)); g.lineTo(x1 - hs * Math.cos(a + 0.4), y1 - hs * Math.sin(a + 0.4)); g.closePath(); g.fill();
  g.restore();
};
Plot.prototype.text = function (p, s, color, align, font) {
  var g = this.g; g.save(); g.fillStyle = color || PAL.ink; g.font = font || '11px system-ui, sans-serif'; g.textAlign = align || 'left'; g.textBaseline = 'middle';
  g.fillText(s, this.X(p[0]), this.Y(p[1])); g.restore();
};
var CMAPS = {
  greens: [[247, 252, 245], [199, 233, 192], [116, 196, 118], [35, 139, 69], [0, 68, 27]],
  viridis: [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]
};
function cmap(name, u) {
  var s = CMAPS[name], x = Math.max(0, Math.min(1, u)) * (s.length - 1), i = Math.min(s.length - 2, Math.floor(x)), f = x - i;
  return [0, 1, 2].map(function (c) { return Math.round(s[i][c] + f * (s[i + 1][c] - s[i][c])); });
}
// a heat map of f(x, y) over the plot's range on an n x n grid (values returned for the colour bar)
Plot.prototype.heat = function (vals, n, vmin, vmax, name, alpha) {
  var off = document.createElement('canvas'); off.width = n; off.height = n;
  var og = off.getContext('2d'), im = og.createImageData(n, n);
  for (var i = 0; i < n; i++) { for (var j = 0; j < n; j++) {
    var c = cmap(name, (vals[i * n + j] - vmin) / ((vmax - vmin) || 1)), p = ((n - 1 - i) * n + j) * 4;
    im.data[p] = c[0]; im.data[p + 1] = c[1]; im.data[p + 2] = c[2]; im.data[p + 3] = 255;
  } }
  og.putImageData(im, 0, 0);
  var g = this.g, x0 = this.X(this.o.x[0]), y0 = this.Y(this.o.y[1]);
  g.save(); g.globalAlpha = alpha === undefined ? 1 : alpha; g.imageSmoothingEnabled = true;
  g.drawImage(off, x0, y0, this.X(this.o.x[1]) - x0, this.Y(this.o.y[0]) - y0); g.restore();
};
function gridPoints(lo, hi, n) { var pts = []; for (var i = 0; i < n; i++) { for (var j = 0; j < n; j++) { pts.push([lo + (hi - lo) * (j + 0.5) / n, lo + (hi - lo) * (i + 0.5) / n]); } } return pts; }
// ----- controls (labelled, keyboard-usable) and read-outs
function el(tag, attrs, parent, text) {
  var e = document.createElement(tag); Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
  if (text !== undefined) { e.textContent = text; } if (parent) { parent.appendChild(e); } return e;
}
function Fig(name, root) {
  this.name = name; this.root = root; root.classList.add('live-ready');
  this.bar = el('div', {'class': 'controls', role: 'group', 'aria-label': 'controls of this figure'}, root);
  var body = el('div', {'class': 'body'}, root);
  this.wrap = el('div', {'class': 'canvases'}, body);
  this.ro = el('div', {'class': 'readouts', 'aria-live': 'polite'}, body);
  this.state = {}; window.rqlLab.figs[name] = this;
}
Fig.prototype.canvas = function (label) { var c = el('canvas', {role: 'img', 'aria-label': label, id: 'cv-' + this.name + '-' + this.wrap.children.length}, el('div', {'class': 'cv'}, this.wrap)); return c; };
Fig.prototype.button = function (key, label, fn) {
  var b = el('button', {type: 'button', id: 'btn-' + this.name + '-' + key}, this.bar, label); b.addEventListener('click', fn); return b;
};
Fig.prototype.choice = function (key, label, options, value, fn) {
  var box = el('span', {'class': 'choice', role: 'radiogroup', 'aria-label': label, id: 'choice-' + this.name + '-' + key}, this.bar);
  el('span', {'class': 'lbl'}, box, label + ':'); var btns = [];
  options.forEach(function (o) {
    var b = el('button', {type: 'button', role: 'radio', 'data-value': o[0], id: 'opt-' + this.name + '-' + key + '-' + o[0]}, box, o[1]);
    btns.push(b); b.addEventListener('click', function () { btns.forEach(function (x) { x.classList.toggle('on', x === b); x.setAttribute('aria-checked', String(x === b)); }); fn(o[0]); });
    if (o[0] === value) { b.classList.add('on'); b.setAttribute('aria-checked', 'true'); } else { b.setAttribute('aria-checked', 'false'); }
  }, this);
  return box;
};
Fig.prototype.slider = function (key, label, min, max, step, value, fn, show) {
  var id = 'sl-' + this.name + '-' + key, box = el('span', {'class': 'slider'}, this.bar);
  el('label', {'for': id}, box, label);
  var r = el('input', {type: 'range', id: id, min: min, max: max, step: step, value: value}, box);
  var o = el('output', {'for': id, id: id + '-out'}, box, show ? show(+value) : String(value));
  r.addEventListener('input', function () { o.textContent = show ? show(+r.value) : r.value; fn(+r.value); });
  return r;
};
Fig.prototype.readout = function (key, label) {
  var box = el('span', {'class': 'ro'}, this.ro); el('span', {'class': 'lbl'}, box, label + ' ');
  var o = el('output', {id: 'ro-' + this.name + '-' + key}, box, '-');
  return function (v, text) { o.dataset.value = typeof v === 'string' ? v : JSON.stringify(v); o.textContent = text === undefined ? (typeof v === 'number' ? fmt(v) : String(v)) : text; };
};
// dragging points on a plot: pointer and keyboard (arrow keys move the focused canvas's handle)
function draggable(plot, get, set, step) {
  var c = plot.c, on = false; c.tabIndex = 0; c.style.touchAction = 'none';
  function at(e) { var r = c.getBoundingClientRect(); return plot.inv(e.clientX - r.left, e.clientY - r.top); }
  c.addEventListener('pointerdown', function (e) { on = true; if (c.setPointerCapture) { try { c.setPointerCapture(e.pointerId); } catch (err) { /* synthetic */ } } set(at(e)); e.preventDefault(); });
  c.addEventListener('pointermove', function (e) { if (on) { set(at(e)); } });
  c.addEventListener('pointerup', function () { on = false; });
  c.addEventListener('keydown', function (e) {
    var d = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1]}[e.key]; if (!d) { return; }
    var p = get(); set([p[0] + d[0] * (step || 0.02), p[1] + d[1] * (step || 0.02)]); e.preventDefault();
  });
}
var DRAW_QUEUE = [];
function redrawAll() { DRAW_QUEUE.forEach(function (f) { try { f(); } catch (err) { console.error(String(err)); } }); }
var resizeTimer = null;
window.addEventListener('resize', function () { clearTimeout(resizeTimer); resizeTimer = setTimeout(redrawAll, 150); });
function track(plots, draw) { DRAW_QUEUE.push(function () { plots.forEach(function (p) { p.layout(); }); draw(); }); }
function runFigures(FIGS) {
  document.querySelectorAll('.live[data-fig]').forEach(function (root) {
    var f = FIGS[root.dataset.fig];
    try { if (!f) { throw new Error('no live figure ' + root.dataset.fig); } f(root); root.setAttribute('data-live', 'ok'); }
    catch (err) { root.setAttribute('data-live', 'error'); console.error('figure ' + root.dataset.fig + ': ' + (err && err.stack || err)); }
  });
  window.rqlLab.ready = true; document.body.setAttribute('data-live-ready', '1'); if (window.labReport) { window.labReport(); }
}
"""

TOY = r"""
var T = LAB.toy, F = T.F, OBS = T.obs;
var CENTRES = T.centres, MODEVAL = T.mode_values, BEST = T.best;
function reward(a) { var s = 0; for (var k = 0; k < CENTRES.length; k++) { var dx = a[0] - CENTRES[k][0], dy = a[1] - CENTRES[k][1]; s += MODEVAL[k] * Math.exp(-(dx * dx + dy * dy) / (2 * T.width * T.width)); } return s; }
function nearestMode(a) { var b = -1, bd = 1e9; for (var k = 0; k < CENTRES.length; k++) { var d = Math.hypot(a[0] - CENTRES[k][0], a[1] - CENTRES[k][1]); if (d < bd) { bd = d; b = k; } } return bd <= T.success_radius ? b : -1; }
var REWARD_GRID = {};
function rewardHeat(p, lim, alpha) {
  var n = 72; if (!REWARD_GRID[lim]) { REWARD_GRID[lim] = gridPoints(-lim, lim, n).map(reward); }
  p.heat(REWARD_GRID[lim], n, 0, 1, 'greens', alpha === undefined ? 0.8 : alpha);
}
function ring(p) {
  var g = p.g; CENTRES.forEach(function (c, k) {
    g.save(); g.setLineDash([3, 3]); g.strokeStyle = k === BEST ? '#000' : '#888'; g.lineWidth = 1; g.beginPath();
    g.arc(p.X(c[0]), p.Y(c[1]), Math.abs(p.X(T.success_radius) - p.X(0)), 0, 7); g.stroke(); g.restore();
  });
  var b = CENTRES[BEST], X = p.X(b[0]), Y = p.Y(b[1]), g2 = p.g; g2.save(); g2.fillStyle = 'gold'; g2.strokeStyle = '#000'; g2.beginPath();
  for (var i = 0; i < 10; i++) { var r = i % 2 ? 3.5 : 8, a = -Math.PI / 2 + i * Math.PI / 5; g2.lineTo(X + r * Math.cos(a), Y + r * Math.sin(a)); }
  g2.closePath(); g2.fill(); g2.stroke(); g2.restore();
}
var AGENTS = T.agents, LABEL = {'flow-bc': 'flow BC', rql: 'RQL', fql: 'FQL'}, COLOR = {'flow-bc': PAL.bc, rql: PAL.rql, fql: PAL.fql};
var SAMPLER = {'flow-bc': NETS.bc_sample, rql: NETS.rql_sample, fql: NETS.fql_flow};
var ACTOR = NETS.rql_actor, VALUE = NETS.rql_value;
var DATA = arr('dataset_actions'), DATA_MODES = T.dataset_modes, NDATA = DATA.shape[0];
function dataAct(i) { return DATA.row(i); }
var SHARED = {xF: dataAct(T.start_action), listeners: [], set: function (x) { SHARED.xF = x; SHARED.chain = Flow.reversal(ACTOR, OBS, x, F); SHARED.listeners.forEach(function (f) { f(); }); }};
SHARED.chain = Flow.reversal(ACTOR, OBS, SHARED.xF, F);
function noise(seed, n) { var r = new Rng(seed), out = []; for (var i = 0; i < n; i++) { out.push(r.normals(2)); } return out; }
function plane(c, lim, label) { return new Plot(c, {x: [-lim, lim], y: [-lim, lim], aspect: 1, maxW: 460}); }
function planeAxes(p, what) { p.axes((what || 'action') + ' dim 1', (what || 'action') + ' dim 2'); }
var FIGS = {};

// 1. noise flowing into actions: re-roll samples the trained flow
FIGS.flow = function (root) {
  var fig = new Fig('flow', root), st = fig.state; st.agent = 'rql'; st.seed = 1; st.k = F; st.n = 200;
  var p = plane(fig.canvas('Euler paths of the trained velocity field from noise to actions'), 2.8);
  var set = {rew: fig.readout('rewarded', 'in the rewarded mode:'), none: fig.readout('between', 'between modes:'), seed: fig.readout('seed', 'noise seed:')};
  function compute() {
    st.x0 = noise(st.seed, st.n); st.paths = st.x0.map(function (x) { return Flow.path(SAMPLER[st.agent], OBS, x, F); });
    st.modes = st.paths.map(function (P) { return nearestMode(clip1(P[F])); });
    var r = st.modes.filter(function (m) { return m === BEST; }).length / st.n, z = st.modes.filter(function (m) { return m < 0; }).length / st.n;
    set.rew(r, (100 * r).toFixed(0) + '%'); set.none(z, (100 * z).toFixed(0) + '%'); set.seed(st.seed, String(st.seed));
  }
  function draw() {
    p.clear(); p.clipIn(); rewardHeat(p, 2.8, 0.6);
    st.paths.forEach(function (P, i) { if (st.k > 0) { p.line(P.slice(0, st.k + 1), modeColor(st.modes[i]), 0.8, null, 0.5); } });
    st.paths.forEach(function (P) { p.dot(P[0], '#777', 1.4, null, 0.6); });
    st.paths.forEach(function (P, i) { p.dot(P[st.k], modeColor(st.modes[i]), 2.6, '#000'); });
    ring(p); p.g.restore(); planeAxes(p);
    p.legend([{label: 'x0 ~ N(0, I)', color: '#777', dot: true}, {label: 'x at t = ' + (st.k / F).toFixed(1) + ' (' + LABEL[st.agent] + ')', color: modeColor(BEST), dot: true},
              {label: 'reward', color: '#238b45', width: 6}]);
  }
  fig.choice('agent', 'policy', AGENTS.filter(function (a) { return SAMPLER[a]; }).map(function (a) { return [a, LABEL[a] + (a === 'fql' ? ' (its BC flow)' : '')]; }), 'rql', function (a) { st.agent = a; compute(); draw(); });
  fig.button('reroll', 're-roll noise', function () { st.seed += 1; compute(); draw(); });
  var sl = fig.slider('k', 'flow step', 0, F, 1, F, function (v) { st.k = v; draw(); }, function (v) { return v + '/' + F; });
  fig.button('play', 'play', function () { st.k = 0; var id = setInterval(function () { st.k += 1; sl.value = st.k; sl.dispatchEvent(new Event('input')); if (st.k >= F) { clearInterval(id); } }, 120); });
  compute(); draw(); track([p], draw);
};

// 2. BPTT: the gradient through F steps is a product of F Jacobians, ~ lambda^F
FIGS.bptt = function (root) {
  var fig = new Fig('bptt', root), st = fig.state; st.F = F; st.lam = 1.1; st.draws = 16;
  var p = new Plot(fig.canvas('log10 of the gradient norm through the chain against F'), {x: [1, 64], y: [-6, 6], aspect: 0.62, maxW: 620});
  var set = {pow: fig.readout('pow', 'lambda^F ='), chain: fig.readout('chain', 'trained actor, median |d x^F / d x^0| ='), eff: fig.readout('eff', 'its per-step factor ='), F: fig.readout('F', 'F =')};
  var x0s = noise(7, st.draws), cache = {}; st.x0s = x0s;
  function trained(Fv) {  // median spectral norm of d x^F / d x^0 of the trained actor (RQL, current) over the draws
    if (cache[Fv]) { return cache[Fv]; }
    var norms = x0s.map(function (x0) { var x = x0.slice(), P = eye(2); for (var i = 0; i < Fv; i++) { P = matmul(Flow.stepJacobian(ACTOR, OBS, x, i / Fv, 1 / Fv), P); x = add(x, Flow.vel(ACTOR, OBS, x, i / Fv), 1 / Fv); } return specNorm(P); });
    norms.sort(function (a, b) { return a - b; }); var med = 0.5 * (norms[(st.draws >> 1) - 1] + norms[st.draws >> 1]);
    cache[Fv] = {med: med, norms: norms}; return cache[Fv];
  }
  var FS = [1, 2, 4, 8, 16, 32, 64];
  function update() {
    var pw = Math.pow(st.lam, st.F), tr = trained(st.F);
    set.pow(pw, fmt(pw, 4)); set.chain(tr.med, fmt(tr.med, 4)); set.eff(Math.pow(tr.med, 1 / st.F), fmt(Math.pow(tr.med, 1 / st.F), 4)); set.F(st.F, String(st.F));
    st.lambdaPowF = pw; st.trainedChain = tr.med;
    draw();
  }
  function draw() {
    p.clear(); p.clipIn(); var g = p.g;
    g.fillStyle = 'rgba(192,57,43,0.06)'; g.fillRect(p.X(1), p.Y(6), p.X(64) - p.X(1), p.Y(1) - p.Y(6));
    g.fillStyle = 'rgba(33,102,172,0.06)'; g.fillRect(p.X(1), p.Y(-1), p.X(64) - p.X(1), p.Y(-6) - p.Y(-1));
    var ls = []; for (var f = 1; f <= 64; f++) { ls.push([f, f * Math.log10(st.lam)]); }
    p.line([[1, 0], [64, 0]], '#999', 1, [4, 4]);
    p.line(ls, PAL.wrong, 2.2); p.dot([st.F, st.F * Math.log10(st.lam)], PAL.wrong, 5, '#000');
    var tp = FS.concat([st.F]).sort(function (a, b) { return a - b; }).filter(function (v, i, a) { return a.indexOf(v) === i; }).map(function (f) { return [f, Math.log10(trained(f).med)]; });
    p.line(tp, PAL.rql, 2); tp.forEach(function (q) { p.dot(q, PAL.rql, 3); }); p.dot([st.F, Math.log10(trained(st.F).med)], PAL.rql, 5, '#000');
    p.text([63, 1.35], 'explodes (lambda > 1)', PAL.rql, 'right'); p.text([63, -5.3], 'vanishes (lambda < 1)', PAL.bc, 'right');
    g.restore(); p.axes('flow steps F backpropagated through', 'log10 |gradient at x^0|');
    p.legend([{label: 'lambda^F, lambda = ' + st.lam.toFixed(2), color: PAL.wrong}, {label: 'trained RQL actor: |d x^F / d x^0| (median of ' + st.draws + ')', color: PAL.rql}], 'left');
  }
  fig.slider('F', 'F', 1, 64, 1, st.F, function (v) { st.F = v; update(); });
  fig.slider('lambda', 'lambda', 0.5, 1.5, 0.01, st.lam, function (v) { st.lam = v; update(); }, function (v) { return v.toFixed(2); });
  update(); track([p], draw);
};

// 3. unroll: one environment step becomes F decision steps of the extended MDP
FIGS.unroll = function (root) {
  var fig = new Fig('unroll', root), st = fig.state; st.open = false; st.seed = 3; st.u = 0;
  var p = new Plot(fig.canvas('the decision steps of one environment step, folded or unrolled'), {x: [0, 1], y: [0, 1], aspect: 0.26, minH: 170, maxW: 900});
  var set = {dec: fig.readout('decisions', 'decisions per environment step:'), boot: fig.readout('values', 'V(s, x^f, f) along this chain:'), range: fig.readout('range', 'range of V along it:')};
  function compute() {
    var x0 = noise(st.seed, 1)[0]; st.chain = Flow.path(NETS.rql_sample, OBS, x0, F);
    st.values = st.chain.map(function (x, f) { return Flow.value(VALUE, OBS, x, f / F); });
  }
  function readouts() {
    set.dec(st.open ? F : 1, st.open ? F + ' (x^0 -> ... -> x^' + F + ')' : '1 (a_t)');
    set.boot(st.values, st.values.map(function (v) { return v.toFixed(3); }).join(', '));
    set.range(Math.max.apply(null, st.values) - Math.min.apply(null, st.values));
    root.setAttribute('data-nodes', String(st.open ? F + 1 : 1));
  }
  function draw() {
    p.clear(); var g = p.g, W = p.W, H = p.H, u = st.u, n = F + 1, y = Math.max(40, H * 0.4);
    function node(x, label, sub, color, r) {
      g.save(); g.fillStyle = color; g.strokeStyle = '#000'; g.lineWidth = 1; g.beginPath(); g.arc(x, y, r, 0, 7); g.fill(); g.stroke();
      g.fillStyle = '#fff'; g.font = 'bold 11px system-ui, sans-serif'; g.textAlign = 'center'; g.textBaseline = 'middle'; g.fillText(label, x, y);
      if (sub) { g.fillStyle = PAL.ink; g.font = '10px system-ui, sans-serif'; g.fillText(sub, x, y + r + 12); } g.restore();
    }
    function link(x0, x1, color) { g.save(); g.strokeStyle = color || '#666'; g.lineWidth = 1.5; g.beginPath(); g.moveTo(x0, y); g.lineTo(x1, y); g.stroke();
      g.beginPath(); g.moveTo(x1, y); g.lineTo(x1 - 6, y - 4); g.lineTo(x1 - 6, y + 4); g.closePath(); g.fillStyle = color || '#666'; g.fill(); g.restore(); }
    var xs = 30, xe = W - 30, a0 = xs + (xe - xs) * 0.5;
    var pos = []; for (var f = 0; f < n; f++) { var open = xs + 55 + (xe - xs - 110) * f / (n - 1); pos.push(a0 + u * (open - a0)); }
    link(xs + 14, pos[0] - 16); link(pos[n - 1] + 16, xe - 14);
    for (f = 0; f < n - 1; f++) { if (u > 0.02) { link(pos[f] + 12, pos[f + 1] - 12, PAL.rql); } }
    node(xs, 's', 'state', '#555', 14); node(xe, "s'", 'next state', '#555', 14);
    if (u < 0.02) { node(a0, 'a_t', 'one action, V = ' + st.values[F].toFixed(3), PAL.rql, 16); }
    else { var sp = (xe - xs - 110) / (n - 1), rr = Math.max(5, Math.min(12, sp / 2 - 1)), every = Math.max(1, Math.ceil(46 / sp));
      for (f = 0; f < n; f++) { node(pos[f], rr >= 9 ? 'x' + f : '', (f % every === 0 && F - f >= every) || f === F ? 'V ' + st.values[f].toFixed(2) : '', f === F ? PAL.rql : '#e0897f', rr); } }
    g.save(); g.font = '12px system-ui, sans-serif'; g.fillStyle = PAL.ink; g.textAlign = 'center';
    var wide = W >= 600;
    g.fillText(st.open ? (wide ? 'extended MDP: ' + F + ' decisions (flow steps), reward 0 and no discount inside, one environment transition' : F + ' decisions, no reward or discount inside') :
               (wide ? 'the environment sees one action a_t = x^' + F + ': one decision, gamma once' : 'one action a_t = x^' + F + ', one decision'), W / 2, H - 18); g.restore();
  }
  var btn = fig.button('unroll', 'unroll', function () {
    st.open = !st.open; btn.textContent = st.open ? 'fold' : 'unroll'; readouts();
    var t0 = performance.now(), from = st.u, to = st.open ? 1 : 0;
    (function anim() { var k = Math.min(1, (performance.now() - t0) / 350); st.u = from + (to - from) * k; draw(); if (k < 1) { requestAnimationFrame(anim); } })();
    st.u = to;
  });
  fig.button('reroll', 're-roll noise', function () { st.seed += 1; compute(); readouts(); draw(); });
  compute(); readouts(); draw(); track([p], draw);
};

// 4. the horizon: F and gamma
FIGS.horizon = function (root) {
  var fig = new Fig('horizon', root), st = fig.state; st.F = F; st.gamma = T.gamma; st.h = T.h;
  var p = new Plot(fig.canvas('share of the discount mass reached against bootstrap backups'), {x: [0, 4], y: [0, 1], aspect: 0.62, maxW: 620});
  var set = {H: fig.readout('H', 'value horizon 1/(1 - gamma) ='), rql: fig.readout('rql', 'RQL, decisions:'), ext: fig.readout('ext', 'flow steps as decisions:'),
             b90: fig.readout('b90', 'backups to 90%: RQL / flow steps'), naive: fig.readout('naive', 'gamma on every flow step shrinks it to (env steps)')};
  function b90(g) { return Math.log(0.1) / Math.log(g); }
  function update() {
    var H = 1 / (1 - st.gamma), gd = Math.pow(st.gamma, st.h), gf = Math.pow(gd, 1 / st.F);
    st.numbers = {H: H, rql: H / st.h, ext: H / st.h * st.F, b90_rql: b90(gd), b90_ext: b90(gf), naive: st.h / (1 - Math.pow(gd, st.F))};
    set.H(H, fmt(H, 1) + ' env steps'); set.rql(st.numbers.rql, fmt(st.numbers.rql, 1)); set.ext(st.numbers.ext, fmt(st.numbers.ext, 1) + ' (x' + st.F + ')');
    set.b90([st.numbers.b90_rql, st.numbers.b90_ext], fmt(st.numbers.b90_rql, 0) + ' / ' + fmt(st.numbers.b90_ext, 0)); set.naive(st.numbers.naive, fmt(st.numbers.naive, 1));
    p.o.x = [0, Math.ceil(Math.log10(5 * b90(gf)))]; draw();
  }
  function draw() {
    var gd = Math.pow(st.gamma, st.h), gf = Math.pow(gd, 1 / st.F), a = [], b = [];
    for (var i = 0; i <= 300; i++) { var lk = p.o.x[1] * i / 300, k = Math.pow(10, lk); a.push([lk, 1 - Math.pow(gd, k)]); b.push([lk, 1 - Math.pow(gf, k)]); }
    p.clear(); p.clipIn(); p.line([[p.o.x[0], 0.9], [p.o.x[1], 0.9]], '#aaa', 1, [3, 3]);
    p.line(a, PAL.rql, 2.2); p.line(b, PAL.wrong, 2.2, [6, 4]);
    p.dot([Math.log10(b90(gd)), 0.9], PAL.rql, 4, '#000'); p.dot([Math.log10(b90(gf)), 0.9], PAL.wrong, 4, '#000'); p.g.restore();
    p.axes('bootstrap backups k (log10)', 'share of the discount mass sum_k g^k', function (v) { return '10^' + v; });
    p.legend([{label: 'RQL: g = gamma^h per decision', color: PAL.rql}, {label: 'flow steps as decisions: g = gamma^(h/F) per step', color: PAL.wrong, dash: [6, 4]},
              {label: 'dots: 90% of the mass', color: '#000', dot: true}], 'bottom');
  }
  fig.slider('F', 'F', 1, 64, 1, st.F, function (v) { st.F = v; update(); });
  fig.slider('gamma', 'gamma', 0.9, 0.999, 0.001, st.gamma, function (v) { st.gamma = v; update(); }, function (v) { return v.toFixed(3); });
  update(); track([p], draw);
};

// 5. flow reversal: drag the dataset action x^F and the trained reversal follows
FIGS.reversal = function (root) {
  var fig = new Fig('reversal', root), st = fig.state, lim = 2.6; st.i = T.start_action;
  var p = plane(fig.canvas('drag the dataset action x^F; its reversal to noise by the trained actor follows'), lim);
  var set = {xF: fig.readout('xF', 'x^F ='), x0: fig.readout('x0', 'reversed noise x^0 ='), rt: fig.readout('roundtrip', 'round trip |sample(x^0) - x^F| (RMS) ='), v: fig.readout('v1', 'V(s, x^F, 1) =')};
  function update() {
    var c = SHARED.chain, x0 = c[0], back = Flow.path(ACTOR, OBS, x0, F)[F];
    st.back = back; st.err = Math.sqrt(((back[0] - SHARED.xF[0]) * (back[0] - SHARED.xF[0]) + (back[1] - SHARED.xF[1]) * (back[1] - SHARED.xF[1])) / 2);
    set.xF(SHARED.xF, '(' + fmt(SHARED.xF[0]) + ', ' + fmt(SHARED.xF[1]) + ')'); set.x0(x0, '(' + fmt(x0[0]) + ', ' + fmt(x0[1]) + ')');
    set.rt(st.err, fmt(st.err, 4)); set.v(Flow.value(VALUE, OBS, SHARED.xF, 1)); draw();
  }
  function draw() {
    p.clear(); p.clipIn(); rewardHeat(p, lim, 0.45);
    for (var i = 0; i < NDATA; i++) { p.dot(dataAct(i), modeColor(DATA_MODES[i]), 1.8, null, 0.55); }
    ring(p); var c = SHARED.chain, fwd = Flow.path(ACTOR, OBS, c[0], F);
    p.line(fwd, '#555', 1.2, [4, 3]); p.line(c, PAL.rql, 2.2);
    c.forEach(function (x, k) { p.dot(x, PAL.rql, k === 0 ? 5 : 2.6, k === 0 ? '#000' : null); });
    p.dot(st.back, '#fff', 4, '#000'); p.dot(SHARED.xF, PAL.rql, 7, '#000');
    p.text([c[0][0] + 0.1, c[0][1]], 'x^0', PAL.ink); p.text([SHARED.xF[0] + 0.12, SHARED.xF[1] + 0.1], 'x^F (drag)', PAL.ink, 'left', 'bold 11px system-ui, sans-serif');
    p.g.restore(); planeAxes(p);
    p.legend([{label: 'dataset actions (by mode)', color: modeColor(0), dot: true}, {label: 'reversal x^F -> x^0 (RQL actor)', color: PAL.rql}, {label: 'sampled forward from x^0', color: '#555', dash: [4, 3]}], 'left');
  }
  draggable(p, function () { return SHARED.xF; }, function (a) { SHARED.set([Math.max(-lim, Math.min(lim, a[0])), Math.max(-lim, Math.min(lim, a[1]))]); });
  fig.button('next', 'next dataset action', function () { st.i = (st.i + 1) % NDATA; SHARED.set(dataAct(st.i)); });
  SHARED.listeners.push(update); update(); track([p], draw);
};

// 6. the value along the chain: right (no discount inside the flow) or wrong (gamma on every denoise step)
FIGS.value = function (root) {
  var fig = new Fig('value', root), st = fig.state; st.wrong = false; st.gamma = T.gamma;
  var p = new Plot(fig.canvas('the value along the reversed chain of the dragged action'), {x: [0, F], y: [0, 1.2], aspect: 0.6, maxW: 620});
  var set = {v0: fig.readout('v0', 'value at t = 0:'), v1: fig.readout('v1', 'value at t = 1:'), ratio: fig.readout('ratio', 'ratio t=0 / t=1:'), gF: fig.readout('gF', 'gamma^F =')};
  function update() {
    var c = SHARED.chain; st.right = c.map(function (x, f) { return Flow.value(VALUE, OBS, x, f / F); });
    var q = st.right[F]; st.wrongv = st.right.map(function (_, f) { return Math.pow(st.gamma, F - f) * q; });
    var shown = st.wrong ? st.wrongv : st.right;
    set.v0(shown[0], fmt(shown[0], 4)); set.v1(shown[F], fmt(shown[F], 4)); set.ratio(shown[0] / shown[F], fmt(shown[0] / shown[F], 4));
    set.gF(Math.pow(st.gamma, F), fmt(Math.pow(st.gamma, F), 4)); root.setAttribute('data-mode', st.wrong ? 'wrong' : 'right');
    var all = st.right.concat(st.wrongv), lo = Math.min.apply(null, all), hi = Math.max.apply(null, all), pad = 0.15 * (hi - lo) + 0.05;
    p.o.y = [Math.min(0, lo - pad), hi + pad]; draw();
  }
  function draw() {
    p.clear(); p.clipIn(); var xs = st.right.map(function (_, f) { return f; });
    p.line(xs.map(function (f) { return [f, st.right[f]]; }), PAL.rql, st.wrong ? 1 : 2.4, null, st.wrong ? 0.35 : 1);
    p.line(xs.map(function (f) { return [f, st.wrongv[f]]; }), PAL.wrong, st.wrong ? 2.4 : 1, [6, 4], st.wrong ? 1 : 0.35);
    xs.forEach(function (f) { p.dot([f, (st.wrong ? st.wrongv : st.right)[f]], st.wrong ? PAL.wrong : PAL.rql, 3.5, '#000'); });
    p.g.restore(); p.axes('flow step f of the reversed chain (t = f/F)', 'value');
    p.legend([{label: 'RQL: trained V(s, x^f, f), one target for every f', color: PAL.rql}, {label: 'wrong: gamma^(F-f) Q(s, x^F) (discount per denoise step)', color: PAL.wrong, dash: [6, 4]}], 'bottom');
  }
  fig.choice('mode', 'value', [['right', 'RQL (no discount inside the flow)'], ['wrong', 'wrong: gamma on every denoise step']], 'right', function (m) { st.wrong = m === 'wrong'; update(); });
  fig.slider('gamma', 'gamma', 0.8, 0.999, 0.001, st.gamma, function (v) { st.gamma = v; update(); }, function (v) { return v.toFixed(3); });
  SHARED.listeners.push(update); update(); track([p], draw);
};

// 7. same value, different slope: V(s, ., f) and its gradient at the chain's point
FIGS.slope = function (root) {
  var fig = new Fig('slope', root), st = fig.state, lim = 2.6, n = 44; st.f = F;
  var p = plane(fig.canvas('V(s, x, t) over partial actions x at the chosen flow step, with its gradient at the chain point'), lim);
  var set = {v: fig.readout('v', 'V at the chain point:'), g: fig.readout('grad', '|grad_x V| there:'), ang: fig.readout('angle', 'direction (degrees):')};
  var grids = {}, pts = gridPoints(-lim, lim, n);
  function grid(f) { if (!grids[f]) { grids[f] = pts.map(function (x) { return Flow.value(VALUE, OBS, x, f / F); }); } return grids[f]; }
  function update() {
    var x = SHARED.chain[st.f], vg = Flow.valueGrad(VALUE, OBS, x, st.f / F); st.point = x; st.v = vg[0]; st.grad = vg[1];
    set.v(vg[0], fmt(vg[0], 4)); set.g(norm(vg[1]), fmt(norm(vg[1]), 4)); set.ang(Math.atan2(vg[1][1], vg[1][0]) * 180 / Math.PI, fmt(Math.atan2(vg[1][1], vg[1][0]) * 180 / Math.PI, 1));
    draw();
  }
  function draw() {
    var G = grid(st.f), lo = T.value_range[0], hi = T.value_range[1];
    p.clear(); p.clipIn(); p.heat(G, n, lo, hi, 'viridis', 0.9); ring(p);
    p.line(SHARED.chain, '#fff', 1.5, [3, 3]); var gn = norm(st.grad) || 1, sc = 0.6 / gn;
    p.dot(st.point, PAL.rql, 6, '#fff'); p.arrow(st.point, [st.grad[0] * sc, st.grad[1] * sc], '#fff', 2.5);
    p.g.restore(); planeAxes(p, 'partial action');
    p.legend([{label: 'V(s, x, t = ' + (st.f / F).toFixed(1) + ') (colour)', color: cmap('viridis', 0.7).reduce(function (s, c) { return s + (c < 16 ? '0' : '') + c.toString(16); }, '#'), width: 6},
              {label: 'chain point x^' + st.f + ' and grad_x V (unit length)', color: PAL.rql, dot: true}], 'left');
  }
  fig.slider('f', 'flow step f', 0, F, 1, st.f, function (v) { st.f = v; update(); }, function (v) { return v + ' (t = ' + (v / F).toFixed(1) + ')'; });
  SHARED.listeners.push(update); update(); track([p], draw);
};

// 8. score-function vs pathwise estimates of the same gradient
FIGS.estimators = function (root) {
  var fig = new Fig('estimators', root), st = fig.state, lim = 1.3, n = 48; st.mode = 'score'; st.sigma = 0.1; st.B = 16; st.mu = CENTRES[1].slice(); st.mu[0] -= 0.15;
  st.hist = {score: [], pathwise: []}; st.rng = new Rng(11);
  var p = plane(fig.canvas('estimates of grad E[Q(mu + sigma eps)] at the dot: score function or pathwise'), lim);
  var set = {est: fig.readout('est', 'last estimate:'), spread: fig.readout('spread', 'spread (trace of covariance) of the last estimates:'), n: fig.readout('n', 'estimates:'), ratio: fig.readout('ratio', 'score / pathwise spread:')};
  var Qgrid = gridPoints(-lim, lim, n).map(function (a) { return Flow.value(VALUE, OBS, a, 1); });
  function estimate(mode) {
    var g = [0, 0], samples = [];
    for (var b = 0; b < st.B; b++) {
      var e = st.rng.normals(2), a = [st.mu[0] + st.sigma * e[0], st.mu[1] + st.sigma * e[1]]; samples.push(a);
      if (mode === 'score') { var q = Flow.value(VALUE, OBS, a, 1); g[0] += q * e[0] / st.sigma / st.B; g[1] += q * e[1] / st.sigma / st.B; }
      else { var gr = Flow.valueGrad(VALUE, OBS, a, 1)[1]; g[0] += gr[0] / st.B; g[1] += gr[1] / st.B; }
    }
    st.samples = samples; st.hist[mode].push(g); if (st.hist[mode].length > 50) { st.hist[mode].shift(); } return g;
  }
  function spread(h) { if (h.length < 2) { return NaN; } var m = [0, 0]; h.forEach(function (g) { m[0] += g[0] / h.length; m[1] += g[1] / h.length; });
    var s = 0; h.forEach(function (g) { s += ((g[0] - m[0]) * (g[0] - m[0]) + (g[1] - m[1]) * (g[1] - m[1])) / (h.length - 1); }); return s; }
  function update() {
    var h = st.hist[st.mode], g = h[h.length - 1] || [0, 0]; set.est(g, '(' + fmt(g[0]) + ', ' + fmt(g[1]) + ')'); set.spread(spread(h), fmt(spread(h), 4)); set.n(h.length, String(h.length));
    var r = spread(st.hist.score) / spread(st.hist.pathwise); set.ratio(isNaN(r) ? 'null' : r, isNaN(r) ? 'draw both' : fmt(r, 1) + 'x'); draw();
  }
  function draw() {
    var lo = T.value_range[0], hi = T.value_range[1]; p.clear(); p.clipIn(); p.heat(Qgrid, n, lo, hi, 'viridis', 0.85); ring(p);
    (st.samples || []).forEach(function (a) { p.dot(a, '#fff', 1.8, null, 0.8); });
    var h = st.hist[st.mode], ref = Flow.valueGrad(VALUE, OBS, st.mu, 1)[1], sc = 0.35 / (norm(ref) || 1);
    h.forEach(function (g, i) { p.arrow(st.mu, [g[0] * sc, g[1] * sc], st.mode === 'score' ? PAL.wrong : PAL.rql, 1, i === h.length - 1 ? 1 : 0.25); });
    if (h.length) { var g = h[h.length - 1]; p.arrow(st.mu, [g[0] * sc, g[1] * sc], st.mode === 'score' ? PAL.wrong : PAL.rql, 3); }
    p.dot(st.mu, '#000', 4, '#fff'); p.g.restore(); planeAxes(p);
    p.legend([{label: (st.mode === 'score' ? 'score function: mean Q eps / sigma' : 'pathwise: mean grad_a Q'), color: st.mode === 'score' ? PAL.wrong : PAL.rql},
              {label: st.B + ' samples mu + sigma eps', color: '#fff', dot: true}], 'left');
  }
  fig.choice('mode', 'estimator', [['score', 'score function'], ['pathwise', 'pathwise']], 'score', function (m) { st.mode = m; update(); });
  fig.button('draw', 'draw 20 estimates', function () { for (var i = 0; i < 20; i++) { estimate(st.mode); } update(); });
  fig.button('play', 'play / pause', function () { if (st.timer) { clearInterval(st.timer); st.timer = null; } else { st.timer = setInterval(function () { estimate(st.mode); update(); }, 300); } });
  fig.slider('sigma', 'sigma', 0.02, 0.4, 0.01, st.sigma, function (v) { st.sigma = v; st.hist = {score: [], pathwise: []}; update(); }, function (v) { return v.toFixed(2); });
  draggable(p, function () { return st.mu; }, function (a) { st.mu = a; st.hist = {score: [], pathwise: []}; update(); });
  for (var i = 0; i < 20; i++) { estimate('pathwise'); } for (i = 0; i < 20; i++) { estimate('score'); } update(); track([p], draw);
};

// 9. drag an action and ascend the trained critic's gradient
FIGS.ascend = function (root) {
  var fig = new Fig('ascend', root), st = fig.state, lim = 1.3, n = 48; st.critic = NETS.fql_critic ? 'fql' : 'rql'; st.eta = 0.05; st.steps = 25; st.a = [-0.1, -0.55]; st.path = [];
  var p = plane(fig.canvas('drag the action; ascend walks it up the trained critic'), lim);
  var set = {q0: fig.readout('q0', 'Q at the start:'), q1: fig.readout('q1', 'Q after ascent:'), g: fig.readout('grad', '|grad_a Q| at the start:'), step: fig.readout('step', 'first step:')};
  var grids = {};
  function Q(a) { return st.critic === 'fql' ? Flow.q(NETS.fql_critic, OBS, a) : Flow.value(VALUE, OBS, a, 1); }
  function QG(a) { return st.critic === 'fql' ? Flow.qGrad(NETS.fql_critic, OBS, a) : Flow.valueGrad(VALUE, OBS, a, 1); }
  function grid() { if (!grids[st.critic]) { var g = gridPoints(-lim, lim, n).map(Q); grids[st.critic] = {g: g, lo: Math.min.apply(null, g), hi: Math.max.apply(null, g)}; } return grids[st.critic]; }
  function update() {
    var q = QG(st.a); set.q0(q[0], fmt(q[0], 4)); set.g(norm(q[1]), fmt(norm(q[1]), 4));
    var end = st.path.length ? st.path[st.path.length - 1] : st.a, qe = Q(end); set.q1(st.path.length ? qe : 'null', st.path.length ? fmt(qe, 4) : 'press ascend');
    var s1 = st.path.length > 1 ? [st.path[1][0] - st.path[0][0], st.path[1][1] - st.path[0][1]] : null; set.step(s1 || 'null', s1 ? '(' + fmt(s1[0], 4) + ', ' + fmt(s1[1], 4) + ')' : '-');
    draw();
  }
  function draw() {
    var G = grid(); p.clear(); p.clipIn(); p.heat(G.g, n, G.lo, G.hi, 'viridis', 0.85); ring(p);
    if (st.path.length) { p.line(st.path, '#fff', 2); p.dot(st.path[st.path.length - 1], '#fff', 5, '#000'); }
    var q = QG(st.a), sc = 0.3 / (norm(q[1]) || 1); p.arrow(st.a, [q[1][0] * sc, q[1][1] * sc], PAL.rql, 2.5); p.dot(st.a, PAL.rql, 6, '#fff');
    p.g.restore(); planeAxes(p);
    p.legend([{label: (st.critic === 'fql' ? 'FQL critic Q(s, a)' : 'RQL value V(s, a, 1)') + ' (colour)', color: '#21918c', width: 6}, {label: 'action and grad_a Q', color: PAL.rql, dot: true}, {label: 'ascent path', color: '#888'}], 'left');
  }
  var opts = []; if (NETS.fql_critic) { opts.push(['fql', 'FQL critic Q(s, a)']); } opts.push(['rql', 'RQL value V(s, a, t = 1)']);
  fig.choice('critic', 'critic', opts, st.critic, function (c) { st.critic = c; st.path = []; update(); });
  fig.button('ascend', 'ascend', function () {
    var a = st.path.length ? st.path[st.path.length - 1] : st.a; if (!st.path.length) { st.path = [a.slice()]; }
    for (var i = 0; i < st.steps; i++) { var g = QG(a)[1]; a = [a[0] + st.eta * g[0], a[1] + st.eta * g[1]]; st.path.push(a); } update();
  });
  fig.button('reset', 'reset', function () { st.path = []; update(); });
  fig.slider('eta', 'step size', 0.005, 0.5, 0.005, st.eta, function (v) { st.eta = v; }, function (v) { return v.toFixed(3); });
  draggable(p, function () { return st.a; }, function (a) { st.a = a; st.path = []; update(); });
  update(); track([p], draw);
};

// 10. backprop: RQL's gradient reaches each step in one hop; BPTT goes through the chain
FIGS.backprop = function (root) {
  var fig = new Fig('backprop', root), st = fig.state; st.seed = 5; st.mode = 'rql'; st.shown = -1;
  var p = new Plot(fig.canvas('per-step norms along one trained chain'), {x: [0, F], y: [-3, 1], aspect: 0.6, maxW: 620});
  var set = {J: fig.readout('jac', 'per-step |d x^(f+1) / d x^f|:'), chain: fig.readout('chain', '|d x^F / d x^0| (the chain):'), prod: fig.readout('prod', 'product of the step norms:'),
             hops: fig.readout('hops', 'hops to reach step 0:'), cos: fig.readout('cos', 'cos(BPTT, one hop) at step 0:')};
  function compute() {
    var x = noise(st.seed, 1)[0], xs = [x], Js = [];
    for (var i = 0; i < F; i++) { Js.push(Flow.stepJacobian(ACTOR, OBS, x, i / F, 1 / F)); x = Flow.oneStep(ACTOR, OBS, x, i / F, F)[0]; xs.push(x); }
    var gEnd = Flow.valueGrad(VALUE, OBS, x, 1)[1], g = gEnd.slice(), bptt = new Array(F), P = eye(2), chainN = new Array(F), hop = new Array(F);
    for (i = F - 1; i >= 0; i--) { g = Flow.stepVjp(ACTOR, OBS, xs[i], i / F, 1 / F, g); bptt[i] = g; P = matmul(P, Js[i]); chainN[i] = specNorm(P); }
    for (i = 0; i < F; i++) { var nx = Flow.oneStep(ACTOR, OBS, xs[i], i / F, F); var gv = Flow.valueGrad(VALUE, OBS, nx[0], nx[1])[1]; hop[i] = Flow.stepVjp(ACTOR, OBS, xs[i], i / F, 1 / F, gv); }
    st.xs = xs; st.J = Js.map(specNorm); st.chainNorm = chainN; st.bptt = bptt; st.hop = hop; st.gEnd = gEnd;
  }
  function readouts() {
    set.J(st.J, st.J.map(function (v) { return v.toFixed(3); }).join(' ')); set.chain(st.chainNorm[0], fmt(st.chainNorm[0], 4));
    var prod = st.J.reduce(function (a, b) { return a * b; }, 1); set.prod(prod, fmt(prod, 4));
    set.hops(st.shown < 0 ? 'null' : (st.mode === 'rql' ? 1 : F), st.shown < 0 ? 'press backprop' : (st.mode === 'rql' ? '1 (every step)' : F + ' (step f needs F - f)'));
    set.cos(dot(st.bptt[0], st.hop[0]) / (norm(st.bptt[0]) * norm(st.hop[0]) || 1), fmt(dot(st.bptt[0], st.hop[0]) / (norm(st.bptt[0]) * norm(st.hop[0]) || 1), 3));
  }
  function draw() {
    p.clear(); p.clipIn(); var fs = []; for (var f = 0; f < F; f++) { fs.push(f); }
    var L = function (v) { return Math.log10(Math.max(v, 1e-12)); };
    var lines = [[st.J, '#555', 'per-step Jacobian norm'], [st.chainNorm, PAL.wrong, 'chain |d x^F / d x^f|'], [st.bptt.map(norm), PAL.bc, '|BPTT gradient at x^f|'], [st.hop.map(norm), PAL.rql, '|one-hop gradient at x^f|']];
    var all = []; lines.forEach(function (l) { l[0].forEach(function (v) { all.push(L(v)); }); });
    p.o.y = [Math.floor(Math.min.apply(null, all) - 0.2), Math.ceil(Math.max.apply(null, all) + 0.2)];
    lines.forEach(function (l, j) {
      var vis = st.shown < 0 || j < 2 || (j === 2 && st.mode === 'bptt') || (j === 3 && st.mode === 'rql');
      var pts = fs.filter(function (f) { return st.shown < 0 || j < 2 || (st.mode === 'rql' ? true : f >= st.shown); }).map(function (f) { return [f, L(l[0][f])]; });
      p.line(pts, l[1], 2, j === 1 ? [6, 3] : null, vis ? 1 : 0.25); pts.forEach(function (q) { p.dot(q, l[1], 3, null, vis ? 1 : 0.25); });
    });
    if (st.shown >= 0) { var g = p.g; g.save(); g.fillStyle = 'rgba(0,0,0,0.06)'; g.fillRect(p.X(st.shown) - 8, p.m.t, p.X(F) - p.X(st.shown) + 8, p.H - p.m.t - p.m.b); g.restore(); }
    p.g.restore(); p.axes('flow step f (gradient with respect to x^f)', 'log10 norm');
    p.legend(lines.map(function (l, j) { return {label: l[2], color: l[1], dash: j === 1 ? [6, 3] : null}; }), 'bottom');
  }
  fig.choice('mode', 'gradient', [['rql', 'RQL: one hop per step'], ['bptt', 'BPTT through the chain']], 'rql', function (m) { st.mode = m; st.shown = -1; readouts(); draw(); });
  fig.button('backprop', 'backprop', function () {
    if (st.timer) { clearInterval(st.timer); } st.shown = st.mode === 'rql' ? 0 : F - 1; readouts(); draw();
    if (st.mode === 'bptt') { st.timer = setInterval(function () { st.shown -= 1; if (st.shown <= 0) { st.shown = 0; clearInterval(st.timer); st.timer = null; } draw(); }, 150); }
  });
  fig.button('reroll', 're-roll noise', function () { st.seed += 1; st.shown = -1; compute(); readouts(); draw(); });
  compute(); readouts(); draw(); track([p], draw);
};

// 11. the update running: one-hop gradients bend a flow BC trajectory toward the high-value mode
FIGS.update = function (root) {
  var fig = new Fig('update', root), st = fig.state, lim = 2.6; st.k = 0; st.eta = 0.5; st.x0 = noise(21, 1)[0];
  var p = plane(fig.canvas('a flow BC trajectory bent step by step by the one-hop gradient of the trained value'), lim);
  var set = {k: fig.readout('k', 'updates:'), v: fig.readout('v', 'V(s, x^F, 1) of the end:'), r: fig.readout('r', 'reward of the end:'), d: fig.readout('d', 'distance to the rewarded mode:')};
  function traj(k) {
    var x = st.x0.slice(), xs = [x];
    for (var i = 0; i < F; i++) {
      var t = i / F, v = Flow.vel(NETS.bc_sample, OBS, x, t);
      if (k > 0) { var nx = add(x, v, 1 / F), g = Flow.valueGrad(VALUE, OBS, nx, Math.min(t + 1 / F, 1))[1]; v = add(v, g, k * st.eta); }
      x = add(x, v, 1 / F); xs.push(x);
    }
    return xs;
  }
  function update() {
    st.path = traj(st.k); st.base = traj(0); st.trained = Flow.path(NETS.rql_sample, OBS, st.x0, F);
    var end = clip1(st.path[F]); st.v = Flow.value(VALUE, OBS, end, 1); st.r = reward(end);
    set.k(st.k, String(st.k)); set.v(st.v, fmt(st.v, 4)); set.r(st.r, fmt(st.r, 4));
    set.d(Math.hypot(end[0] - CENTRES[BEST][0], end[1] - CENTRES[BEST][1]), fmt(Math.hypot(end[0] - CENTRES[BEST][0], end[1] - CENTRES[BEST][1]), 3)); draw();
  }
  function draw() {
    p.clear(); p.clipIn(); rewardHeat(p, lim, 0.6); ring(p);
    p.line(st.base, PAL.bc, 1.6, [5, 3]); p.line(st.trained, '#555', 1.4, [2, 3]); p.line(st.path, PAL.rql, 2.6);
    st.path.forEach(function (x) { p.dot(x, PAL.rql, 2.5); }); p.dot(st.x0, '#000', 5, '#fff');
    p.g.restore(); planeAxes(p);
    p.legend([{label: 'flow BC trajectory', color: PAL.bc, dash: [5, 3]}, {label: 'after ' + st.k + ' one-hop updates', color: PAL.rql}, {label: 'trained RQL from the same noise', color: '#555', dash: [2, 3]}], 'left');
  }
  fig.button('update', 'update (one hop per step)', function () { st.k += 1; update(); });
  fig.button('reset', 'reset', function () { st.k = 0; update(); });
  fig.button('reroll', 're-roll noise', function () { st.x0 = new Rng(Math.floor(Math.random() * 1e9)).normals(2); update(); });
  fig.slider('eta', 'step size', 0.05, 2, 0.05, st.eta, function (v) { st.eta = v; update(); }, function (v) { return v.toFixed(2); });
  draggable(p, function () { return st.x0; }, function (a) { st.x0 = a; update(); }, 0.05);
  update(); track([p], draw);
};

// 12. the training loop: the losses the runs logged
FIGS.loop = function (root) {
  var fig = new Fig('loop', root), st = fig.state, M = T.metrics, keys = Object.keys(M.series);
  st.key = keys.indexOf('loss/critic') >= 0 ? 'loss/critic' : keys[0];
  var p = new Plot(fig.canvas('training metrics of the toy runs against updates'), {x: [0, 1], y: [0, 1], aspect: 0.6, maxW: 620});
  var set = {last: fig.readout('last', 'last logged value:')};
  function draw() {
    var s = M.series[st.key] || {}, names = Object.keys(s), all = [], xmax = 1;
    names.forEach(function (a) { s[a].forEach(function (q) { all.push(q[1]); xmax = Math.max(xmax, q[0]); }); });
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all), pad = 0.1 * (hi - lo || 1); p.o.x = [0, xmax]; p.o.y = [lo - pad, hi + pad];
    p.clear(); p.clipIn(); names.forEach(function (a) { p.line(s[a], COLOR[a] || '#333', 2); s[a].forEach(function (q) { p.dot(q, COLOR[a] || '#333', 3); }); }); p.g.restore();
    p.axes('updates', st.key); p.legend(names.map(function (a) { return {label: LABEL[a] || a, color: COLOR[a] || '#333'}; }));
    var last = {}; names.forEach(function (a) { last[a] = s[a][s[a].length - 1][1]; }); set.last(last, names.map(function (a) { return (LABEL[a] || a) + ' ' + fmt(last[a], 4); }).join(', '));
  }
  if (keys.length) { fig.choice('metric', 'metric', keys.map(function (k) { return [k, k]; }), st.key, function (k) { st.key = k; draw(); }); draw(); track([p], draw); }
  else { el('p', {}, root, 'no training metrics were logged'); }
};

// 13. the comparison: samples of every trained policy, re-rolled live
FIGS.compare = function (root) {
  var fig = new Fig('compare', root), st = fig.state, lim = 1.3; st.seed = 100; st.n = 300; st.results = {};
  var plots = {}, sets = {};
  AGENTS.forEach(function (a) { plots[a] = new Plot(fig.canvas(LABEL[a] + ' samples'), {x: [-lim, lim], y: [-lim, lim], aspect: 1, maxW: 300}); sets[a] = fig.readout(a, LABEL[a] + ' in the rewarded mode:'); });
  function act(a, z) {
    if (a === 'fql') { return clip1(Array.from(NETS.fql_onestep.apply(cat(OBS, z)))); }
    return clip1(Flow.path(SAMPLER[a], OBS, z, F)[F]);
  }
  function compute() {
    var zs = noise(st.seed, st.n);
    AGENTS.forEach(function (a) { var acts = zs.map(function (z) { return act(a, z); }), r = acts.filter(function (x) { return nearestMode(x) === BEST; }).length / st.n;
      st.results[a] = {acts: acts, rewarded: r, reward: acts.reduce(function (s, x) { return s + reward(x); }, 0) / st.n};
      sets[a](r, (100 * r).toFixed(0) + '% (mean reward ' + st.results[a].reward.toFixed(2) + ')'); });
  }
  function draw() {
    AGENTS.forEach(function (a) { var p = plots[a]; p.clear(); p.clipIn(); rewardHeat(p, lim, 0.7); ring(p); st.results[a].acts.forEach(function (x) { p.dot(x, COLOR[a], 1.8, null, 0.7); }); p.g.restore(); planeAxes(p);
      p.text([-lim + 0.08, lim - 0.12], LABEL[a] + (a === 'fql' ? ' (one-step policy)' : ' (' + F + ' Euler steps)'), PAL.ink, 'left', 'bold 12px system-ui, sans-serif'); });
  }
  fig.button('reroll', 're-roll samples', function () { st.seed += 1; compute(); draw(); });
  compute(); draw(); track(AGENTS.map(function (a) { return plots[a]; }), draw);
};
runFigures(FIGS);
"""

RUN = r"""
var R = LAB.run, F = R.F, D = R.chunk_dim;
var OBS = arr('obs'), CHUNKS = arr('chunks'), PM = arr('P'), MEAN = arr('mean');
var SAMPLE = NETS.sample, REVERSE = NETS.reverse, VALUE = NETS.value || null, BASE = NETS.base_sample || null;
function project(x) { var out = [0, 0]; for (var j = 0; j < D; j++) { var c = x[j] - MEAN.data[j]; out[0] += c * PM.data[j * 2]; out[1] += c * PM.data[j * 2 + 1]; } return out; }
var PROJ_DATA = []; for (var i = 0; i < R.states; i++) { PROJ_DATA.push(project(CHUNKS.row(i))); }
function bounds(pts) {
  var lo = [1e9, 1e9], hi = [-1e9, -1e9]; pts.forEach(function (p) { for (var k = 0; k < 2; k++) { lo[k] = Math.min(lo[k], p[k]); hi[k] = Math.max(hi[k], p[k]); } });
  var c = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2], h = Math.max(hi[0] - lo[0], hi[1] - lo[1]) / 2 * 1.15 + 1e-3; return {x: [c[0] - h, c[0] + h], y: [c[1] - h, c[1] + h]};
}
var RS = {i: 0, listeners: [], set: function (i) { RS.i = i; RS.listeners.forEach(function (f) { f(); }); }};
function obsOf(i) { return OBS.row(i); }
function rms(a, b) { var s = 0; for (var j = 0; j < a.length; j++) { s += (a[j] - b[j]) * (a[j] - b[j]); } return Math.sqrt(s / a.length); }
var AX = R.projection.axes;
var FIGS = {};
function stateControls(fig) {
  var sl = fig.slider('state', 'dataset state', 0, R.states - 1, 1, RS.i, function (v) { RS.set(v); });
  fig.button('random', 'random state', function () { var v = Math.floor(Math.random() * R.states); sl.value = v; sl.dispatchEvent(new Event('input')); });
  RS.listeners.push(function () { if (+sl.value !== RS.i) { sl.value = RS.i; var o = document.getElementById(sl.id + '-out'); if (o) { o.textContent = String(RS.i); } } });
}

// the policy's samples in the chosen state, re-rolled in the page
FIGS.run_samples = function (root) {
  var fig = new Fig('run_samples', root), st = fig.state; st.seed = 1;
  var p = new Plot(fig.canvas('policy samples in one dataset state, projected'), {x: [-1, 1], y: [-1, 1], aspect: 1, maxW: 520});
  var set = {std: fig.readout('std', 'per-state sample std (RMS per dim):'), near: fig.readout('near', 'nearest sample to the dataset chunk (RMS per dim):'),
             base: fig.readout('base_std', 'baseline sample std:'), ms: fig.readout('ms', 'ms per sample in the page:')};
  function draws(net, seed) { var r = new Rng(seed), out = []; for (var k = 0; k < R.samples; k++) { out.push(clip1(Flow.path(net, obsOf(RS.i), r.normals(D), F)[F])); } return out; }
  function spread(S) { var m = new Array(D).fill(0); S.forEach(function (x) { for (var j = 0; j < D; j++) { m[j] += x[j] / S.length; } });
    var v = 0; S.forEach(function (x) { for (var j = 0; j < D; j++) { v += (x[j] - m[j]) * (x[j] - m[j]) / (S.length - 1); } }); return Math.sqrt(v / D); }
  function update() {
    var t0 = performance.now(); st.samples = draws(SAMPLE, st.seed * 7919 + RS.i); st.ms = (performance.now() - t0) / R.samples;
    st.base = BASE ? draws(BASE, st.seed * 104729 + RS.i) : null;
    var chunk = CHUNKS.row(RS.i); st.std = spread(st.samples); st.near = Math.min.apply(null, st.samples.map(function (x) { return rms(x, chunk); }));
    set.std(st.std, fmt(st.std, 4)); set.near(st.near, fmt(st.near, 4)); set.ms(st.ms, fmt(st.ms, 2));
    if (st.base) { st.baseStd = spread(st.base); set.base(st.baseStd, fmt(st.baseStd, 4)); } else { set.base('null', 'no baseline (--baseline)'); }
    draw();
  }
  function draw() {
    var pts = st.samples.map(project).concat(st.base ? st.base.map(project) : []).concat([PROJ_DATA[RS.i]]).concat(PROJ_DATA);
    var bb = bounds(pts); p.o.x = bb.x; p.o.y = bb.y;
    p.clear(); p.clipIn(); PROJ_DATA.forEach(function (q) { p.dot(q, '#bbb', 2, null, 0.8); });
    if (st.base) { st.base.forEach(function (x) { p.dot(project(x), PAL.bc, 3, null, 0.75); }); }
    st.samples.forEach(function (x) { p.dot(project(x), PAL.rql, 3, null, 0.85); });
    p.dot(PROJ_DATA[RS.i], '#000', 6, '#fff'); p.g.restore(); p.axes(AX[0], AX[1]);
    var leg = [{label: R.label || R.agent, color: PAL.rql, dot: true}]; if (st.base) { leg.push({label: R.base, color: PAL.bc, dot: true}); }
    leg.push({label: 'dataset chunk of this state', color: '#000', dot: true}, {label: 'other states\' chunks', color: '#bbb', dot: true}); p.legend(leg, 'left');
  }
  stateControls(fig);
  fig.button('reroll', 're-roll samples', function () { st.seed += 1; update(); });
  RS.listeners.push(update); update(); track([p], draw);
};

// the dataset chunk of the chosen state: its reversal (and the value along it)
FIGS.run_reversal = function (root) {
  var fig = new Fig('run_reversal', root), st = fig.state;
  var p = new Plot(fig.canvas('the reversal of the dataset chunk, projected'), {x: [-1, 1], y: [-1, 1], aspect: 1, maxW: 460});
  var q = VALUE ? new Plot(fig.canvas('the value along the reversed chain'), {x: [0, F], y: [0, 1], aspect: 0.75, maxW: 460}) : null;
  var set = {rt: fig.readout('roundtrip', 'round trip (RMS per dim):'), v0: fig.readout('v0', 'V at t = 0:'), v1: fig.readout('v1', 'V at t = 1:'), range: fig.readout('range', 'range of V along the chain:')};
  function update() {
    var o = obsOf(RS.i), chunk = CHUNKS.row(RS.i); st.chain = Flow.reversal(REVERSE, o, chunk, F);
    st.back = Flow.path(REVERSE, o, st.chain[0], F)[F]; st.rt = rms(st.back, chunk); set.rt(st.rt, fmt(st.rt, 5));
    if (VALUE) { st.values = st.chain.map(function (x, k) { return Flow.value(VALUE, o, x, k / F); });
      set.v0(st.values[0], fmt(st.values[0], 4)); set.v1(st.values[F], fmt(st.values[F], 4));
      var r = Math.max.apply(null, st.values) - Math.min.apply(null, st.values); set.range(r, fmt(r, 4)); }
    else { set.v0('null', 'no value'); set.v1('null', 'no value'); set.range('null', '-'); }
    draw();
  }
  function draw() {
    var pc = st.chain.map(project), pb = project(st.back), bb = bounds(pc.concat([pb]).concat(PROJ_DATA)); p.o.x = bb.x; p.o.y = bb.y;
    p.clear(); p.clipIn(); PROJ_DATA.forEach(function (d) { p.dot(d, '#bbb', 2, null, 0.8); });
    p.line(Flow.path(REVERSE, obsOf(RS.i), st.chain[0], F).map(project), '#555', 1.2, [4, 3]); p.line(pc, PAL.rql, 2.2);
    pc.forEach(function (d, k) { p.dot(d, PAL.rql, k === 0 || k === F ? 5 : 2.5, k === 0 || k === F ? '#000' : null); });
    p.text([pc[0][0], pc[0][1]], '  x^0', PAL.ink); p.text([pc[F][0], pc[F][1]], '  x^F (dataset)', PAL.ink); p.g.restore(); p.axes(AX[0], AX[1]);
    p.legend([{label: 'reversal to t = k/F', color: PAL.rql}, {label: 'sampled forward from x^0', color: '#555', dash: [4, 3]}], 'left');
    if (q && st.values) {
      var lo = Math.min.apply(null, st.values), hi = Math.max.apply(null, st.values), pad = Math.max(0.2 * (hi - lo), 0.05 * Math.abs(hi) + 1e-3);
      q.o.y = [lo - pad, hi + pad]; q.clear(); q.clipIn(); var pts = st.values.map(function (v, k) { return [k, v]; });
      q.line(pts, PAL.rql, 2.2); pts.forEach(function (d) { q.dot(d, PAL.rql, 3.5, '#000'); });
      var wr = st.values.map(function (_, k) { return [k, Math.pow(R.gamma, F - k) * st.values[F]]; }); q.line(wr, PAL.wrong, 1.4, [6, 4], 0.8);
      q.g.restore(); q.axes('flow step f (t = f/F)', 'V(s, x^f, t)');
      q.legend([{label: 'trained V along the chain', color: PAL.rql}, {label: 'wrong: gamma^(F-f) V(s, x^F, 1)', color: PAL.wrong, dash: [6, 4]}], 'bottom');
    }
  }
  stateControls(fig);
  RS.listeners.push(update); update(); track(q ? [p, q] : [p], draw);
};

// RQL: ascend a partial action of the chain on the trained value
FIGS.run_ascend = function (root) {
  var fig = new Fig('run_ascend', root), st = fig.state; st.f = 0; st.eta = 0.05; st.steps = 20; st.path = [];
  var p = new Plot(fig.canvas('gradient ascent of a partial action on V, projected'), {x: [-1, 1], y: [-1, 1], aspect: 1, maxW: 460});
  var q = new Plot(fig.canvas('V during the ascent'), {x: [0, 20], y: [0, 1], aspect: 0.75, maxW: 460});
  var set = {v0: fig.readout('v0', 'V before:'), v1: fig.readout('v1', 'V after:'), g: fig.readout('grad', '|grad_x V| at the start:'), move: fig.readout('move', 'moved (RMS per dim):')};
  function start() { var o = obsOf(RS.i); return Flow.reversal(REVERSE, o, CHUNKS.row(RS.i), F)[st.f]; }
  function reset() { st.x = start(); st.path = []; st.vals = []; var vg = Flow.valueGrad(VALUE, obsOf(RS.i), st.x, st.f / F); st.v0 = vg[0]; st.g0 = norm(vg[1]);
    set.v0(st.v0, fmt(st.v0, 4)); set.g(st.g0, fmt(st.g0, 4)); set.v1('null', 'press ascend'); set.move('null', '-'); draw(); }
  function draw() {
    var pts = [project(st.x)].concat(st.path.map(project)).concat(PROJ_DATA), bb = bounds(pts); p.o.x = bb.x; p.o.y = bb.y;
    p.clear(); p.clipIn(); PROJ_DATA.forEach(function (d) { p.dot(d, '#bbb', 2, null, 0.8); });
    if (st.path.length) { p.line([project(st.x)].concat(st.path.map(project)), PAL.rql, 2); p.dot(project(st.path[st.path.length - 1]), '#fff', 5, '#000'); }
    p.dot(project(st.x), PAL.rql, 6, '#000'); p.g.restore(); p.axes(AX[0], AX[1]);
    p.legend([{label: 'x^' + st.f + ' of the reversed chunk', color: PAL.rql, dot: true}, {label: 'ascent on V(s, x, ' + (st.f / F).toFixed(1) + ')', color: PAL.rql}], 'left');
    var vs = [st.v0].concat(st.vals), lo = Math.min.apply(null, vs), hi = Math.max.apply(null, vs), pad = 0.1 * (hi - lo) + 1e-3;
    q.o.x = [0, Math.max(1, st.vals.length)]; q.o.y = [lo - pad, hi + pad]; q.clear(); q.clipIn();
    q.line(vs.map(function (v, k) { return [k, v]; }), PAL.rql, 2); q.g.restore(); q.axes('ascent steps', 'V(s, x, t)');
  }
  stateControls(fig);
  fig.slider('f', 'flow step f', 0, F, 1, st.f, function (v) { st.f = v; reset(); }, function (v) { return v + ' (t = ' + (v / F).toFixed(1) + ')'; });
  fig.slider('eta', 'step size', 0.005, 0.5, 0.005, st.eta, function (v) { st.eta = v; }, function (v) { return v.toFixed(3); });
  fig.button('ascend', 'ascend', function () {
    var x = st.path.length ? st.path[st.path.length - 1] : st.x, o = obsOf(RS.i);
    for (var k = 0; k < st.steps; k++) { var g = Flow.valueGrad(VALUE, o, x, st.f / F)[1]; x = add(x, g, st.eta); st.path.push(x); st.vals.push(Flow.value(VALUE, o, x, st.f / F)); }
    set.v1(st.vals[st.vals.length - 1], fmt(st.vals[st.vals.length - 1], 4)); set.move(rms(x, st.x), fmt(rms(x, st.x), 4)); draw();
  });
  fig.button('reset', 'reset', reset);
  RS.listeners.push(reset); reset(); track([p, q], draw);
};
runFigures(FIGS);
"""
