"""A page in headless Chromium: how long it takes to load, what it logs as errors, how big its DOM is.

For report.html's browser test (tests/test_report_browser.py) and its benchmark
(benchmarks/report_page.py). Drives an installed Chromium (``/usr/bin/chromium``, Debian's package,
or ``$CONFORMANCE_CHROMIUM``) through Playwright; it never downloads a browser, and Playwright is an
optional dependency (the ``test`` extra): without it, or without the executable, ``unavailable()``
says why and ``Chromium()`` raises ``BrowserUnavailable`` with that reason.

    with Chromium() as browser:
        load = browser.load(Path("results/report.html"))   # a PageLoad; load.page stays open
        ...
        load.close()

Each load gets its own browser context (no cache, storage or cookies shared with another load), so
repeated loads of one file measure a first visit each time. Playwright's ``launch`` gives the browser
a fresh temporary profile (``--user-data-dir``) of its own and deletes it on close.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

CHROMIUM_ENV = "CONFORMANCE_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"

# Headless on a machine without a network, display or GPU, possibly as root: each flag keeps Chromium
# from waiting on something absent (a sandbox root may not have, a GPU, Google's update, sync and
# QUIC endpoints), which would slow a load or fill the log with errors that are not the page's.
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


class BrowserUnavailable(RuntimeError):
    """No Playwright or no Chromium executable here; the message says which and where it looked."""


def executable() -> str:
    """The Chromium executable to drive: ``$CONFORMANCE_CHROMIUM`` if set, else Debian's path."""
    return os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM


def unavailable(path: str | None = None) -> str | None:
    """Why no page can be loaded here (None when it can): Playwright missing, or the executable
    (``path``, by default ``executable()``)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python playwright is not installed: python -m pip install playwright (in the `test` extra)"
    path = path or executable()
    found = shutil.which(path) if os.sep not in path else (path if os.access(path, os.X_OK) else None)
    if not found:
        return f"no Chromium executable at {path}: apt-get install chromium, or set {CHROMIUM_ENV} to one"
    return None


@dataclass
class PageLoad:
    """One load of one page. Times in seconds. ``load_seconds`` is the Performance API's: navigation
    start to the end of the ``load`` event (every image decoded, every inline script run);
    ``rendered_seconds`` to the second animation frame after it, that is once style and layout of the
    loaded page are done and painted (a heavy page can spend most of its time there, after ``load``);
    ``wall_seconds`` is ``page.goto(..., wait_until="load")`` as the caller sees it. ``metrics`` are
    the DevTools protocol's ``Performance.getMetrics`` after the load (``Nodes``, ``JSHeapUsedSize``,
    ``RecalcStyleDuration``, ...), empty where the protocol does not answer."""

    url: str
    wall_seconds: float
    load_seconds: float
    rendered_seconds: float
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    # anything the page asked for that is not in the file itself or beside it: a self-contained page asks nothing
    requests: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    page: Any = field(default=None, repr=False)  # the Playwright Page, open until close()
    _context: Any = field(default=None, repr=False)

    @property
    def nodes(self) -> int | None:
        value = self.metrics.get("Nodes")
        return None if value is None else int(value)

    @property
    def js_heap_used(self) -> int | None:
        value = self.metrics.get("JSHeapUsedSize")
        return None if value is None else int(value)

    @property
    def errors(self) -> list[str]:
        """Console errors, then uncaught page errors: what a clean page has none of."""
        return self.console_errors + self.page_errors

    def close(self) -> None:
        if self._context is not None:
            self._context.close()
            self._context = self.page = None


# After `load`, two animation frames: the first runs before the loaded page's style and layout are
# painted, the second after, so its time is when a reader sees the page.
_RENDERED = (
    """() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now()))))"""
)
_LOAD_END = """() => performance.getEntriesByType('navigation')[0].loadEventEnd"""


class Chromium:
    """A headless Chromium for the duration of a ``with`` block; ``load()`` opens pages in it."""

    def __init__(self, path: str | None = None, timeout_s: float = 120.0):
        self.path = path or executable()
        reason = unavailable(self.path)
        if reason:
            raise BrowserUnavailable(reason)
        self.timeout_ms = timeout_s * 1000
        self._playwright = self._browser = None

    def __enter__(self) -> Self:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=self.path, headless=True, args=list(FLAGS), timeout=self.timeout_ms
            )
        except Exception:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._browser is not None:
                self._browser.close()
        finally:
            self._playwright.stop()
            self._browser = self._playwright = None

    @property
    def version(self) -> str:
        return self._browser.version

    def load(self, path: Path | str, viewport: tuple[int, int] = (1280, 900)) -> PageLoad:
        """Open ``path`` (a local file) in a new context and wait for its ``load`` event."""
        url = Path(path).resolve().as_uri()
        context = self._browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        try:
            page = context.new_page()
            page.set_default_timeout(self.timeout_ms)
            console, errors, requests = [], [], []
            page.on("console", lambda message: message.type == "error" and console.append(_console_text(message)))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: _foreign(request.url, url) and requests.append(request.url))
            cdp = _cdp(context, page)
            start = time.perf_counter()
            page.goto(url, wait_until="load", timeout=self.timeout_ms)
            wall = time.perf_counter() - start
            load_ms = page.evaluate(_LOAD_END)
            rendered_ms = page.evaluate(_RENDERED)
            metrics = _metrics(cdp)
        except BaseException:
            context.close()
            raise
        return PageLoad(
            url=url,
            wall_seconds=wall,
            load_seconds=load_ms / 1000,
            rendered_seconds=max(rendered_ms, load_ms) / 1000,
            console_errors=console,
            page_errors=errors,
            requests=requests,
            metrics=metrics,
            page=page,
            _context=context,
        )


def load_once(path: Path | str, timeout_s: float = 120.0) -> PageLoad:
    """One load in a browser of its own, closed again (``page`` is None on the result)."""
    with Chromium(timeout_s=timeout_s) as browser:
        loaded = browser.load(path)
        loaded.close()
        return loaded


def _console_text(message) -> str:
    where = message.location or {}
    at = f" ({where.get('url', '')}:{where.get('lineNumber', '')})" if where.get("url") else ""
    return f"{message.text}{at}"


def _foreign(requested: str, page_url: str) -> bool:
    """A request for something other than the page itself or inline (data:) content."""
    return requested != page_url and not requested.startswith(("data:", "blob:", "about:"))


def _cdp(context, page):
    """A DevTools protocol session with the Performance domain on, or None (the metrics are optional:
    a browser without the protocol still gives load times and errors)."""
    from playwright.sync_api import Error

    try:
        session = context.new_cdp_session(page)
        session.send("Performance.enable")
        return session
    except Error:
        return None


def _metrics(session) -> dict[str, float]:
    from playwright.sync_api import Error

    if session is None:
        return {}
    try:
        answer = session.send("Performance.getMetrics")
    except Error:
        return {}
    return {item["name"]: float(item["value"]) for item in answer.get("metrics", [])}
