"""The sandbox ``mmcourse grade`` runs each submission's kernel in (Linux, bubblewrap).

Inside it a submission sees: the system's programs and libraries, the course checkout and its
Python environment, all read-only; a private scratch folder (its working folder, home and
cache, deleted afterwards); an empty ``/tmp``; no network (only a loopback device of its own);
only the environment variables listed in :func:`sandbox_env`; no process outside the sandbox.
Everything it starts ends with the kernel (its own PID namespace). Each process gets a memory cap
(``RLIMIT_DATA``) and the sandbox a process cap (``RLIMIT_NPROC``); when the grader is root the
kernel runs as the user ``nobody`` (root ignores the process cap), which needs the course and its
Python environment readable by all users (the usual permissions).

The kernel talks to the grader over Unix sockets in the scratch folder (ZeroMQ's ``ipc``
transport), which is how it reaches the grader across the network namespace.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from mmcourse.tools.runner import KERNEL_ENV

NOBODY = 65534
# Applied inside the sandbox, just before the kernel starts: argv = [limits..., "--", kernel...].
_LIMITS = ("import os, resource, sys; a = sys.argv[1:]; k = a.index('--'); "
           "[resource.setrlimit(getattr(resource, n), (int(v), int(v))) "
           "for n, v in (x.split('=') for x in a[:k])]; os.execv(a[k + 1], a[k + 1:])")


def find_bwrap() -> str | None:
    """The path of bubblewrap's ``bwrap`` when it is installed and works here, else None."""
    found = shutil.which("bwrap")
    if found is None or not sys.platform.startswith("linux"):
        return None
    return found


def sandbox_env(scratch: Path, course: Path, venv_bin: Path) -> dict[str, str]:
    """The whole environment of the sandboxed kernel (nothing of the grader's is passed on)."""
    env = {"PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(scratch / "home"),
           "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PYTHONPATH": str(course),
           "MMCOURSE_CACHE": str(scratch / "cache"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(min(os.cpu_count() or 1, 4)))}
    env.update(KERNEL_ENV)
    return env


def sandbox_prefix(bwrap: str, scratch: Path, course: Path, kernel_python: str,
                   memory_bytes: int, max_processes: int, read_only=(), cache: Path | None = None,
                   as_nobody: bool = False) -> list[str]:
    """The command that runs a kernel command (appended after it) inside the sandbox.

    ``read_only``: more folders or files the submission may read, at their own paths. With
    ``as_nobody`` (the grader is root) bubblewrap keeps the host's user namespace and the kernel
    drops to the user ``nobody`` inside, so that the process cap holds (root ignores it)."""
    venv = Path(kernel_python).parent.parent
    cmd = [bwrap, "--die-with-parent", "--new-session", "--clearenv"]
    if as_nobody:
        cmd += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup-try", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        cmd += ["--unshare-all"]
    for key, value in sandbox_env(scratch, course, venv / "bin").items():
        cmd += ["--setenv", key, value]
    for system in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc"):
        cmd += ["--ro-bind-try", system, system]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    shared = {Path(sys.base_prefix).resolve(), Path(os.path.realpath(kernel_python)).parent.parent,
              venv, Path(course)}
    bound = [Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/tmp")]
    made: set[Path] = set()
    for path in sorted(shared) + [Path(p).resolve() for p in read_only]:
        # the folders above it, enterable by all (bubblewrap would copy /root's 0700)
        for parent in reversed(path.parents[:-1]):
            if not any(parent == b or b in parent.parents for b in bound) and parent not in made:
                cmd += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        cmd += ["--ro-bind", str(path), str(path)]
        bound.append(path)
    cmd += ["--bind", str(scratch), str(scratch), "--ro-bind", str(scratch / "checks"),
            str(scratch / "checks")]
    if cache is not None:
        cmd += ["--ro-bind", str(cache), "/mmcourse-cache"]
    cmd += ["--chdir", str(scratch / "work"), "--"]
    if as_nobody:
        cmd += [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={NOBODY}",
                f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"]
    cmd += [kernel_python, "-I", "-c", _LIMITS,
            f"RLIMIT_DATA={memory_bytes}", f"RLIMIT_NPROC={max_processes}", "RLIMIT_CORE=0",
            f"RLIMIT_FSIZE={min(memory_bytes, 2 ** 31)}", "--"]
    return cmd


#: The grader's cache entries a sandboxed kernel may read: subfolder -> file pattern.
CACHED = {"features": "*.pt", "datasets": "*.pkl"}


def prepare_scratch(scratch: Path, cache: Path | None, owner: int | None) -> None:
    """The sandbox's writable folders; links to the grader's cached features and datasets
    (read-only; see mmcourse.cache) so a notebook that needs them does not retrain its encoders
    or generate the data again; ``owner`` gets the folder."""
    for name in ("home", "work", "checks", *(f"cache/{kind}" for kind in CACHED)):
        (scratch / name).mkdir(parents=True, exist_ok=True)
    for kind, pattern in CACHED.items():
        if cache is not None and (cache / kind).is_dir():
            for item in (cache / kind).glob(pattern):
                (scratch / "cache" / kind / item.name).symlink_to(f"/mmcourse-cache/{kind}/{item.name}")
    if owner is not None:
        for path in [scratch, *scratch.rglob("*")]:
            os.lchown(path, owner, owner)


def grader_cache() -> Path | None:
    """The grader's own cache of features and datasets (``$MMCOURSE_CACHE`` or
    ``~/.cache/mmcourse``), if any."""
    cache = Path(os.environ.get("MMCOURSE_CACHE") or Path.home() / ".cache" / "mmcourse")
    return cache.resolve() if cache.is_dir() else None


def kernel_python(kernel_name: str) -> str:
    """The interpreter of the Jupyter kernel ``kernel_name`` (an absolute path)."""
    from jupyter_client.kernelspec import KernelSpecManager

    python = KernelSpecManager().get_kernel_spec(kernel_name).argv[0]
    return python if os.path.isabs(python) else (shutil.which(python) or python)


MAX_MESSAGE_BYTES = 8 * 2 ** 20  # a course figure is well under 1 MB
RECEIVE_QUEUE = 16


def kernel_manager(scratch: Path, kernel_name: str, prefix: list[str], owner: int | None):
    """A kernel manager whose kernel talks over Unix sockets in ``scratch``, launched after
    ``prefix`` (the sandbox command, or nothing)."""
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    class _Manager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            if owner is not None:
                os.chown(self.connection_file, owner, owner)
            return prefix + cmd

        def client(self, **kwargs):
            # The grader's sockets refuse a message frame over MAX_MESSAGE_BYTES (zmq drops that
            # connection; the grader never reads outputs anyway) and queue at most RECEIVE_QUEUE
            # messages: what a submission sends can hold at most their product of the grader's
            # memory, however fast it prints. (The client's sockets are made from its context
            # when its channels start, after this.)
            kc = super().client(**kwargs)
            kc.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            kc.context.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE)
            return kc

    km = _Manager(kernel_name=kernel_name, transport="ipc", ip=str(scratch / "kernel"))
    km.connection_file = str(scratch / "kernel.json")
    return km


def stop_kernel(km: Any, scratch: Path | None = None) -> list[str]:
    """End the kernel and, with it, the sandbox and everything started inside it.

    With ``scratch`` (the sandbox's folder, named in the command line of every process of it),
    return only when none of those processes is left: the sandbox's init dies with its parent, but
    asynchronously, so it can outlive the kernel's shutdown by a moment on a busy machine; what is
    still there after 5 s is killed, again every 0.1 s, for up to 30 s. Returns a description
    of each process still there after that (``"pid: state, parent pid, command"``), normally
    none: the grader reports them."""
    from nbclient.util import run_sync

    process = getattr(getattr(km, "provisioner", None), "process", None)
    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception:
        pass
    if process is not None and process.poll() is None:  # the sandbox's outer process, ours
        try:
            process.kill()
            process.wait(10)
        except Exception:
            pass
    return [] if scratch is None else _wait_until_gone(str(scratch))


def _processes_naming(marker: str) -> list[int]:
    """The ids of the processes whose command line contains ``marker`` (Linux: /proc)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (proc / "cmdline").read_bytes() and int(proc.name) != os.getpid():
                found.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return found


def describe_process(pid: int) -> str:
    """``"pid: state S, parent P: command line"`` from /proc (what is known of it)."""
    try:
        fields = dict(line.split(":", 1) for line in
                      Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return f"{pid}: gone"
    state, parent = fields.get("State", "?").strip(), fields.get("PPid", "?").strip()
    return f"{pid}: state {state}, parent {parent}: {command.decode(errors='replace')[:160]}"


def _wait_until_gone(marker: str, grace: float = 5.0, limit: float = 30.0) -> list[str]:
    """Wait until no process names ``marker``; after ``grace`` seconds kill what is left, again
    every 0.1 s for up to ``limit`` seconds. Returns a description of each survivor."""
    if not Path("/proc/self/cmdline").exists():
        return []
    deadline = time.monotonic() + grace
    while (left := _processes_naming(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    deadline = time.monotonic() + limit
    while left and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)
        left = _processes_naming(marker)
    return [describe_process(pid) for pid in left]
