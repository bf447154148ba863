"""A headless chromium driven through its DevTools protocol over a pipe (``--remote-debugging-pipe``),
with the standard library only: open the lab page, evaluate JavaScript in it, press the mouse and
the keys, and take screenshots of elements.

Used by the tests (the page's networks against the JAX ones, the interactions) and by
``python -m rql.lab.browser PAGE OUT_DIR``, which saves a screenshot of every live figure.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless chromium with one page; ``with Browser() as b: b.open(path)``."""

    def __init__(self, width: int = 1200, height: int = 900, timeout: float = 60.0):
        exe = find_chromium()
        if exe is None:
            raise BrowserError("no chromium on PATH")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="rql-lab-chromium-")
        # The child's ends above 9, so that placing them on 3 and 4 cannot overwrite one with the other.
        r, self._to_child = os.pipe()
        self._from_child, w = os.pipe()
        to_child_r, from_child_w = _above_9(r), _above_9(w)

        # The protocol's pipe: the browser reads fd 3 and writes fd 4, placed there by posix_spawn's
        # file actions (no Python code runs between fork and exec in this multi-threaded process).
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
                "--hide-scrollbars", "--mute-audio", f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}", "about:blank"]
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        actions = [(os.POSIX_SPAWN_DUP2, to_child_r, 3), (os.POSIX_SPAWN_DUP2, from_child_w, 4),
                   (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)]
        if not os.environ.get("RQL_LAB_BROWSER_LOG"):
            actions.append((os.POSIX_SPAWN_DUP2, devnull, 2))
        self.proc = _Child(os.posix_spawn(exe, args, os.environ, file_actions=actions))
        os.close(devnull)
        os.close(to_child_r)
        os.close(from_child_w)
        # A browser left open (a failed test) still ends with its owner.
        self._finalizer = weakref.finalize(self, _end, self.proc, self._profile)
        self._id = 0
        self._buf = b""
        self._pending: dict = {}
        self.events: list[dict] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    # ------------------------------------------------------------------ protocol
    def _read(self):
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            self._buf += chunk
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._pending[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()

    def call(self, method: str, session: str | None = None, **params) -> dict:
        with self._cond:
            self._id += 1
            mid = self._id
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + self.timeout
        with self._cond:
            while mid not in self._pending:
                if getattr(self, "_closed", False):
                    raise BrowserError(f"chromium exited during {method}")
                left = deadline - time.time()
                if left <= 0:
                    raise BrowserError(f"no answer to {method} in {self.timeout:.0f} s")
                self._cond.wait(left)
            reply = self._pending.pop(mid)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def send(self, method: str, **params) -> dict:
        """A command to the page's session."""
        return self.call(method, session=self.session, **params)

    # ------------------------------------------------------------------ page
    def open(self, path, wait: float = 60.0) -> None:
        """Load a file and wait until its live figures have started (``window.rqlLab.ready``) or, on a
        page without them, until the page's self-check ran."""
        url = pathlib.Path(path).resolve().as_uri() if not str(path).startswith(("file:", "about:")) else str(path)
        self.send("Page.navigate", url=url)
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                state = self.eval("document.readyState === 'complete' && document.body && "
                                  "document.body.hasAttribute('data-images-loaded') && "
                                  "(!document.getElementById('lab-data') || !!(window.rqlLab && window.rqlLab.ready))")
            except BrowserError:
                state = False
            if state:
                return
            time.sleep(0.1)
        raise BrowserError(f"{path} did not finish loading in {wait:.0f} s")

    def eval(self, expr: str):
        """The value of a JavaScript expression (JSON-serialisable); a thrown exception raises."""
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError(f"{expr[:80]}...: {d.get('exception', {}).get('description') or d.get('text')}")
        return r["result"].get("value")

    def console_errors(self) -> list[str]:
        """Console errors and uncaught exceptions seen so far."""
        out = []
        for e in list(self.events):
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("exception", {}).get("description") or p["exceptionDetails"]["text"])
            elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(p["entry"].get("text", ""))
        return out

    def rect(self, selector: str) -> dict:
        """The element's box in page coordinates (scrolled into view first)."""
        r = self.eval(f"(function () {{ var e = document.querySelector({json.dumps(selector)}); if (!e) {{ return null; }}"
                      f" e.scrollIntoView({{block: 'center'}}); var b = e.getBoundingClientRect();"
                      f" return {{x: b.left, y: b.top, w: b.width, h: b.height, sx: window.scrollX, sy: window.scrollY}}; }})()")
        if r is None:
            raise BrowserError(f"no element {selector}")
        return r

    def drag(self, selector: str, points: list[tuple[float, float]]) -> None:
        """Press the mouse at the first point (element-relative pixels), move through the others, release."""
        r = self.rect(selector)
        xy = [(r["x"] + px, r["y"] + py) for px, py in points]
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=xy[0][0], y=xy[0][1])
        self.send("Input.dispatchMouseEvent", type="mousePressed", x=xy[0][0], y=xy[0][1], button="left", clickCount=1)
        for x, y in xy[1:]:
            self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, button="left", buttons=1)
        self.send("Input.dispatchMouseEvent", type="mouseReleased", x=xy[-1][0], y=xy[-1][1], button="left", clickCount=1)

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element."""
        r = self.rect(selector)
        x, y = r["x"] + r["w"] / 2, r["y"] + r["h"] / 2
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.send("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
        self.send("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", clickCount=1)

    def key(self, key: str, code: str | None = None, vk: int | None = None) -> None:
        """Press and release a key in the focused element (e.g. ``ArrowRight``)."""
        vks = {"ArrowLeft": 37, "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40, "Enter": 13, " ": 32, "Tab": 9}
        args = dict(key=key, code=code or key, windowsVirtualKeyCode=vk or vks.get(key, 0))
        self.send("Input.dispatchKeyEvent", type="rawKeyDown", **args)
        self.send("Input.dispatchKeyEvent", type="keyUp", **args)

    def set_slider(self, selector: str, value) -> None:
        """Set a range input and fire its input event (as a user's drag of it does)."""
        self.eval(f"(function () {{ var r = document.querySelector({json.dumps(selector)}); r.value = {json.dumps(str(value))};"
                  f" r.dispatchEvent(new Event('input')); }})()")

    def readout(self, fig: str, key: str):
        """The full-precision number (JSON) an ``<output>`` of a live figure shows."""
        v = self.eval(f"(function () {{ var o = document.getElementById('ro-{fig}-{key}'); return o ? o.dataset.value : undefined; }})()")
        if v is None:
            raise BrowserError(f"no read-out {key} in figure {fig}")
        return json.loads(v)

    def screenshot(self, selector: str, path, pad: int = 6) -> pathlib.Path:
        """A PNG of the element's box."""
        r = self.rect(selector)
        clip = dict(x=r["x"] + r["sx"] - pad, y=r["y"] + r["sy"] - pad, width=r["w"] + 2 * pad, height=r["h"] + 2 * pad,
                    scale=1)
        data = self.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)["data"]
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def set_width(self, width: int, height: int = 900, mobile: bool = False) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)
        self.eval("window.dispatchEvent(new Event('resize'))")
        time.sleep(0.4)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        try:
            self.call("Browser.close")
        except BrowserError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


PLAY = {
    "unroll": ["#btn-unroll-unroll"],
    "value": ["#opt-value-mode-wrong"],
    "ascend": ["#btn-ascend-ascend"],
    "backprop": ["#btn-backprop-backprop"],
    "update": ["#btn-update-update"] * 3,
    "run_ascend": ["#btn-run_ascend-ascend"],
}
"""Buttons pressed in a figure before its screenshot, so that the picture shows the interaction."""


def _above_9(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class _Child:
    """The browser's process: poll, wait (with a timeout) and kill by its id."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float):
        deadline = time.time() + timeout
        while self.poll() is None:
            if time.time() > deadline:
                raise subprocess.TimeoutExpired("chromium", timeout)
            time.sleep(0.05)
        return self.returncode

    def kill(self):
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


def _end(proc, profile) -> None:
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
    shutil.rmtree(profile, ignore_errors=True)


def screenshots(page, out_dir, width: int = 1200, names: list[str] | None = None, prefix: str = "",
                play: bool = True) -> list[pathlib.Path]:
    """A PNG of every live figure of ``page`` (or of ``names``) into ``out_dir``, after pressing its
    :data:`PLAY` buttons."""
    out = []
    with Browser(width=width) as b:
        b.open(page)
        figs = names or b.eval("Array.prototype.map.call(document.querySelectorAll('.live[data-fig]'), "
                               "function (e) { return e.dataset.fig; })")
        for name in figs:
            for sel in PLAY.get(name, []) if play else []:
                b.click(sel)
            if play and name in PLAY:
                time.sleep(0.6)  # animations (unroll, backprop) finish
            out.append(b.screenshot(f"#live-{name}", pathlib.Path(out_dir) / f"{prefix}{name}.png"))
        errors = b.console_errors()
    if errors:
        raise BrowserError("script errors: " + " | ".join(errors))
    return out


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print("usage: python -m rql.lab.browser PAGE OUT_DIR [PREFIX] [WIDTH]", file=sys.stderr)
        sys.exit(2)
    shots = screenshots(sys.argv[1], sys.argv[2], prefix=sys.argv[3] if len(sys.argv) > 3 else "",
                        width=int(sys.argv[4]) if len(sys.argv) > 4 else 1200)
    print("\n".join(str(p) for p in shots))
