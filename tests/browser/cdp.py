"""Headless Chromium over the DevTools protocol, standard library only.

Enough of RFC 6455 (client side, text frames, no extensions) to talk to one
local browser: start it, open a page, collect what the page logs, what it
fetches and what it throws, evaluate expressions, take screenshots.
"""

import base64
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

# Flags of every Chromium the tests start: headless, no GPU, no sandbox (root in
# containers), nothing that talks to the network on its own, and no name resolves,
# so a page that tries to fetch anything fails loudly instead of succeeding quietly.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
]


def chromium() -> str:
    """The Chromium binary; its absence is a broken setup (`make test-browser` installs it)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("chromium is not on PATH: run the browser tests through `make test-browser`, which installs it")


class DevToolsError(RuntimeError):
    pass


class _WebSocket:
    def __init__(self, url: str, timeout: float):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        if not m:
            raise DevToolsError(f"unexpected DevTools address {url!r}")
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        nonce = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise DevToolsError("DevTools closed the connection during the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise DevToolsError(f"DevTools refused the websocket: {head[:200]!r}")

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium in time")
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise DevToolsError("Chromium closed the DevTools connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text: str) -> None:
        data = text.encode()
        head = bytes([0x81])  # FIN, text frame
        if len(data) < 126:
            head += bytes([0x80 | len(data)])
        elif len(data) < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", len(data))
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", len(data))
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self, deadline: float) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2, deadline)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2, deadline))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8, deadline))[0]
            payload = self._read(n, deadline)  # the server never masks
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise DevToolsError("Chromium closed the DevTools connection")
            if opcode in (0x9, 0xA):  # ping, pong: Chromium does not send them to clients
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class Page:
    """One tab, attached in flat mode; it records console calls, exceptions, log entries and requests."""

    def __init__(self, browser: "Browser", session: str):
        self.browser, self.session = browser, session
        self.console: List[Dict[str, Any]] = []     # Runtime.consoleAPICalled
        self.exceptions: List[Dict[str, Any]] = []  # Runtime.exceptionThrown
        self.log: List[Dict[str, Any]] = []         # Log.entryAdded (failed loads, violations, ...)
        self.requests: List[str] = []               # every URL the page asked for
        self.loaded = False

    def call(self, method: str, timeout: float = 30, **params: Any) -> Dict[str, Any]:
        return self.browser.call(method, params, self.session, timeout)

    def on_event(self, method: str, params: Dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            self.console.append(params)
        elif method == "Runtime.exceptionThrown":
            self.exceptions.append(params)
        elif method == "Log.entryAdded":
            self.log.append(params["entry"])
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Page.loadEventFired":
            self.loaded = True

    def open(self, url: str, timeout: float) -> None:
        self.loaded = False
        self.call("Page.navigate", timeout, url=url)
        self.browser.pump(lambda: self.loaded, timeout)

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        r = self.call("Runtime.evaluate", timeout, expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise DevToolsError(f"{expression!r} threw: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return True
            self.browser.pump(lambda: False, 0.05)
        return False

    def screenshot(self, path: Path, width: int, max_height: int) -> None:
        """The top of the page, `width` wide and at most `max_height` tall (all of it when shorter)."""
        # The last content, not the page's height: a `min-height: 100vh` column would fill the window.
        bottom = self.evaluate("""(() => { let b = 0;
            for (const e of document.body.querySelectorAll("*"))
                if (!e.firstElementChild && e.tagName !== "SCRIPT" && e.tagName !== "STYLE")
                    b = Math.max(b, e.getBoundingClientRect().bottom + window.scrollY);
            return Math.ceil(b); })()""")
        height = max(1, min(max_height, int(bottom) + 32))
        r = self.call("Page.captureScreenshot", 60, format="png", captureBeyondViewport=True,
                      clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})
        path.write_bytes(base64.b64decode(r["data"]))

    def errors(self) -> List[str]:
        """Every sign of trouble, one line each: console.error/assert, uncaught exceptions, error log entries."""
        out = []
        for c in self.console:
            if c["type"] in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in c["args"])
                out.append(f"console.{c['type']}: {args}")
        for e in self.exceptions:
            d = e["exceptionDetails"]
            out.append(f"uncaught: {d.get('exception', {}).get('description') or d.get('text')}")
        for entry in self.log:
            if entry["level"] == "error":
                out.append(f"log ({entry['source']}): {entry['text']} {entry.get('url', '')}".rstrip())
        return out


class Browser:
    """A headless Chromium with its own throw-away profile, driven over one websocket."""

    def __init__(self, width: int = 1280, height: int = 2000, timeout: float = 60):
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="tracemark-chromium-")
        self.proc = subprocess.Popen(
            [chromium(), *FLAGS, f"--window-size={width},{height}", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = self._devtools_url(timeout)
        self.ws = _WebSocket(url, timeout)
        self.next_id = 0
        self.pages: Dict[str, Page] = {}

    def _devtools_url(self, timeout: float) -> str:
        # Chromium prints "DevTools listening on ws://..." on stderr once it is up.
        deadline, seen = time.monotonic() + timeout, b""
        fd = self.proc.stderr.fileno()
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 0.5)[0]:
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
            m = re.search(rb"DevTools listening on (ws://\S+)", seen)
            if m:
                # Keep draining stderr so Chromium never blocks on a full pipe.
                self._drain = threading.Thread(target=self.proc.stderr.read, daemon=True)
                self._drain.start()
                return m.group(1).decode()
        self.close()
        raise DevToolsError("Chromium did not start its DevTools server:\n" + seen.decode(errors="replace")[-3000:])

    def call(self, method: str, params: Dict[str, Any], session: Optional[str] = None,
             timeout: float = 30) -> Dict[str, Any]:
        self.next_id += 1
        msg: Dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        answer: Dict[str, Any] = {}
        want = self.next_id

        def done() -> bool:
            return bool(answer)

        self.pump(done, timeout, want, answer)
        if "error" in answer:
            raise DevToolsError(f"{method}: {answer['error']}")
        return answer["result"]

    def pump(self, until, timeout: float, want: Optional[int] = None,
             answer: Optional[Dict[str, Any]] = None) -> None:
        """Reads messages, dispatching events to their page, until `until()` holds (or the time is up)."""
        deadline = time.monotonic() + timeout
        while not until():
            try:
                msg = json.loads(self.ws.recv(deadline))
            except TimeoutError:
                if want is None:
                    return
                raise
            if want is not None and msg.get("id") == want:
                answer.update(msg)
            elif "method" in msg and msg.get("sessionId") in self.pages:
                self.pages[msg["sessionId"]].on_event(msg["method"], msg["params"])

    def new_page(self) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        self.pages[session] = page
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        return page

    def close(self) -> None:
        if getattr(self, "ws", None):
            try:
                self.call("Browser.close", {}, timeout=10)
            except (DevToolsError, TimeoutError, OSError):
                pass
            self.ws.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if getattr(self, "_drain", None):
            self._drain.join(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)


def dump_dom(url: str, timeout: float) -> str:
    """The DOM after the page's scripts ran, from a separate `chromium --dump-dom` (the issue's check)."""
    with tempfile.TemporaryDirectory(prefix="tracemark-chromium-") as profile:
        r = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise DevToolsError(f"chromium --dump-dom exited with {r.returncode}:\n{r.stderr.decode(errors='replace')[-3000:]}")
    return r.stdout.decode()
