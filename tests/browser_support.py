"""Helpers of tests/test_browser.py: a throw-away JupyterLab server and a headless Chromium.

* :func:`find_chromium` locates a Chromium (``$MMCOURSE_CHROMIUM``, then ``chromium`` or
  ``chromium-browser`` on PATH); Debian's package is ``chromium``.
* :class:`LabServer` starts ``jupyter lab`` on 127.0.0.1 and a free port, with a token, its own
  config, data, runtime, settings and workspace folders (all under one temporary folder), autosave
  and news turned off, ``--allow-root``, serving ``root_dir`` (a temporary copy of the notebooks,
  never the repository's). The kernels it starts inherit its environment: the fusion explorer is
  forced live (``MMCOURSE_STATIC_WIDGETS=0``), progress bars stay off (``MMCOURSE_PROGRESS=0``).
  :meth:`LabServer.stop` shuts every kernel and the server down.
* :class:`LabPage` drives one notebook in the browser: open it, Run All from the Run menu, wait
  until every cell has run, save it (so the test can read the outputs back with nbformat).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

#: Chromium switches for a headless run in a container (no sandbox as root, no GPU, no network
#: chatter of its own).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]

#: JupyterLab user settings: no autosave, no news, no update checks.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
    # every cell in the page (not only those scrolled to), so the test can find every output
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def find_chromium() -> str | None:
    """Path of a Chromium executable, or None."""
    explicit = os.environ.get("MMCOURSE_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabServer:
    """A JupyterLab server for one test module; use :meth:`start` and :meth:`stop`."""

    def __init__(self, root_dir: Path, work_dir: Path, env: dict[str, str] | None = None):
        self.root_dir, self.work_dir = Path(root_dir), Path(work_dir)
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.work_dir / "jupyterlab.log"
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        folders = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data",
                   "JUPYTER_RUNTIME_DIR": "runtime", "JUPYTERLAB_SETTINGS_DIR": "settings",
                   "JUPYTERLAB_WORKSPACES_DIR": "workspaces", "IPYTHONDIR": "ipython"}
        for key, name in folders.items():
            path = self.work_dir / name
            path.mkdir(parents=True, exist_ok=True)
            env[key] = str(path)
        env.pop("JUPYTER_PATH", None)
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 90.0) -> None:
        settings = self.work_dir / "settings"
        for rel, values in LAB_SETTINGS.items():
            path = settings / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
               "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
               "--ServerApp.terminals_enabled=False",
               f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={self.work_dir / 'workspaces'}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class="
               "jupyterlab.handlers.announcements.NeverCheckForUpdate",
               "--LabApp.expose_app_in_browser=True"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.root_dir, env=self.environment(),
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Shut every kernel down, then the server (terminated, killed if it lingers)."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                for kernel in self.api("GET", "/api/kernels"):
                    self.api("DELETE", f"/api/kernels/{kernel['id']}")
        except Exception:  # noqa: BLE001 - the server is going away anyway
            pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()
        self.proc = None

    # -- helpers ------------------------------------------------------------------------------

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# JavaScript run in the page: the state of the current notebook, read from JupyterLab's model
# (exposed with --LabApp.expose_app_in_browser).
_STATE_JS = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const ctx = panel.sessionContext;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code').map(c => ({
    count: c.model.executionCount,
    pending: c.promptNode ? c.promptNode.textContent.includes('*') : false,
  }));
  return {kernel: ctx.session && ctx.session.kernel ? ctx.session.kernel.status : null,
          kernelName: ctx.session && ctx.session.kernel ? ctx.session.kernel.name : null,
          cells: cells};
}"""


class LabPage:
    """One notebook opened in a Playwright page of :class:`LabServer` ``server``."""

    def __init__(self, page: Any, server: LabServer, name: str):
        self.page, self.server, self.name = page, server, name

    def open(self, timeout: float = 90.0) -> None:
        self.page.goto(self.server.notebook_url(self.name), timeout=timeout * 1000)
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout * 1000)
        self.wait_for(lambda s: s and s["kernel"] == "idle", timeout, "the kernel to start")

    def state(self) -> dict | None:
        return self.page.evaluate(_STATE_JS)

    def wait_for(self, predicate, timeout: float, what: str, poll: float = 0.5) -> dict:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.state()
            if predicate(state):
                return state
            self.page.wait_for_timeout(poll * 1000)
        raise TimeoutError(f"{self.name}: waited {timeout:.0f} s for {what}; last state {state}\n"
                           f"server log:\n{self.server.log_tail()}")

    def run(self, item: str, timeout: float, upto: int | None = None,
            settle: float = 15.0) -> dict:
        """Click Run > ``item`` (the menu, as a learner does it) and wait until the kernel is
        idle with no cell queued, and either the code cells ``[:upto]`` (all by default) have
        all run or nothing has changed for ``settle`` seconds (the run stopped early: the caller
        sees cells without a count). Returns the last state."""
        self.menu("Run", item)
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while True:
            state = self.state()
            counts = tuple(c["count"] for c in state["cells"][:upto]) if state else None
            if counts != last:
                last, since = counts, time.monotonic()
            quiet = bool(state and state["kernel"] == "idle"
                         and not any(c["pending"] for c in state["cells"]))
            if quiet and counts and all(n is not None for n in counts) \
                    and time.monotonic() - since >= 1.0:
                return state
            if quiet and counts and any(n is not None for n in counts) \
                    and time.monotonic() - since >= settle:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: Run > {item} did not finish within "
                                   f"{timeout:.0f} s; last state {state}\n"
                                   f"server log:\n{self.server.log_tail()}")
            self.page.wait_for_timeout(500)

    def menu(self, top: str, item: str) -> None:
        """Click ``top`` in the menu bar, then its entry ``item`` (exact labels)."""
        exact = lambda text: re.compile(rf"^\s*{re.escape(text)}\s*$")  # noqa: E731
        self.page.locator(".lm-MenuBar-itemLabel", has_text=exact(top)).first.click()
        self.page.locator(".lm-Menu-content .lm-Menu-itemLabel", has_text=exact(item)).first.click()

    def select_code_cell(self, text: str) -> int:
        """Select (click) the first code cell whose source contains ``text``; return its index
        among the code cells."""
        index = self.page.evaluate("""(text) => {
          const panel = window.jupyterapp.shell.currentWidget;
          const cells = panel.content.widgets;
          let k = -1;
          for (let i = 0; i < cells.length; i++) {
            if (cells[i].model.type !== 'code') continue;
            k++;
            if (cells[i].model.sharedModel.getSource().includes(text)) {
              panel.content.activeCellIndex = i;
              panel.content.deselectAll();
              return k;
            }
          }
          return -1;
        }""", text)
        if index < 0:
            raise LookupError(f"{self.name}: no code cell contains {text!r}")
        return index

    def notebook_index(self, code_index: int) -> int:
        """The index among all cells of code cell number ``code_index``."""
        return self.page.evaluate("""(k) => {
          const cells = window.jupyterapp.shell.currentWidget.content.widgets;
          let n = -1;
          for (let i = 0; i < cells.length; i++) {
            if (cells[i].model.type === 'code' && ++n === k) return i;
          }
          return -1;
        }""", code_index)

    def save(self) -> None:
        self.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        self.page.wait_for_timeout(500)
