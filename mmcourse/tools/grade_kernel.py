"""The grader's side inside a submission's kernel (``mmcourse grade``; no notebook imports it).

:func:`install` runs before the first cell of the submission, in a request of the grader's own:
it imports every registered check from the course code (read-only in the sandbox) and the
grader's extra check files, keeps its own references to them, and records the state of the code a
check relies on. It returns the address of that private record, which the grader keeps: no name
in the kernel leads to it, so rebinding ``check``, patching ``mmcourse.exercises`` or
re-registering an id in the notebook changes nothing the grader uses.

After each exercise cell the grader sends a request of its own that reaches the record by its
address and calls :meth:`_Record.verdict`. The answer is the value of the arguments the cell gave
to its last ``check("N.M", ...)`` call (the grader rewrote that call into an assignment to a name
only it knows); the pass/fail comes from the check taken at install, and travels back in the
request's reply (``user_expressions``, on the shell channel), with the request's fresh nonce, never
in a displayed output. Before and after each check the record compares the state it took at
install (cheap tampering detection): a replaced function of ``mmcourse``, a builtin, a comparison
function of torch or numpy, a method of the kernel's reply path, a trace or profile hook.
Code that rewrites the interpreter itself (``gc``, ``ctypes``, frames) can still defeat this: see
INSTRUCTORS.md, "Autograding".
"""
from __future__ import annotations

import builtins
import importlib
import importlib.util
import json
import sys
import threading
import types

# Names IPython itself adds to and removes from builtins around every cell.
_BUILTINS_IPYTHON_SWAPS = {"exit", "quit", "get_ipython", "_", "__", "___", "display"}
# Third-party functions checks compare with; replacing one is reported.
_WATCHED_FUNCTIONS = {
    "torch": ("allclose", "isclose", "equal", "eq", "isnan", "isfinite", "is_tensor", "tensor",
              "as_tensor", "all", "any", "abs", "argmax", "unravel_index"),
    "torch.testing": ("assert_close",),
    "numpy": ("allclose", "isclose", "array_equal", "asarray", "array", "all", "any", "isnan",
              "isfinite", "abs"),
    "math": ("isclose", "isfinite", "isnan"),
    "operator": ("eq", "ne", "lt", "le", "gt", "ge"),
    "json": ("dumps", "loads"),
    "ctypes": ("cast", "py_object"),
    "importlib": ("import_module",),
}
# Classes whose methods carry the verdict back (their class dicts are compared).
_WATCHED_CLASSES = (
    ("torch", "Tensor"), ("torch._C", "TensorBase"),
    ("IPython.core.interactiveshell", "InteractiveShell"),
    ("IPython.core.formatters", "DisplayFormatter"), ("IPython.core.formatters", "PlainTextFormatter"),
    ("IPython.lib.pretty", "RepresentationPrinter"),
    ("ipykernel.ipkernel", "IPythonKernel"), ("ipykernel.kernelbase", "Kernel"),
    ("jupyter_client.session", "Session"),
)


def _is_code(value) -> bool:
    return callable(value) or isinstance(value, (types.ModuleType, type))


def _state(namespace: dict, skip=()) -> dict:
    return {name: value for name, value in list(namespace.items())
            if name not in skip and _is_code(value)}


def _changed(label: str, before: dict, now: dict) -> list[str]:
    return [f"{label}.{name} was replaced" if name in now else f"{label}.{name} was deleted"
            for name, value in before.items() if now.get(name, _MISSING) is not value]


_MISSING = object()


class _Record:
    """What the grader took before the submission's first cell (see the module docstring)."""

    def __init__(self, extra_check_files: list[str]):
        import IPython

        from mmcourse.exercises import core

        self.extra = []
        for index, path in enumerate(extra_check_files):
            spec = importlib.util.spec_from_file_location(f"_mmcourse_grader_checks_{index}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            self.extra.append(module)
        core.known_exercises()
        self.core = core
        self.checks = {eid: (c.fn, c.fn.__code__, c.title, c.hint) for eid, c in core._REGISTRY.items()}
        self.NotSolved, self.ExerciseFailed = core.NotSolved, core.ExerciseFailed
        self.shell = IPython.get_ipython()
        self.user_ns = self.shell.user_ns
        self.formatter = self.shell.display_formatter
        self.plain = self.formatter.formatters["text/plain"]
        self.printers = dict(self.plain.type_printers)
        self.hooks = self._hooks()
        self.modules = {name: module for name, module in list(sys.modules.items())
                        if name == "mmcourse" or name.startswith(("mmcourse.", "_mmcourse_grader"))}
        self.module_state = {name: _state(vars(m)) for name, m in self.modules.items()}
        self.codes = {}
        for name, module in self.modules.items():
            for attr, value in vars(module).items():
                if isinstance(value, types.FunctionType):
                    self.codes[f"{name}.{attr}"] = (value, value.__code__)
                elif isinstance(value, type) and value.__module__ == name:
                    for key, member in vars(value).items():
                        if isinstance(member, types.FunctionType):
                            self.codes[f"{name}.{attr}.{key}"] = (member, member.__code__)
        self.classes = {}
        for module, cls_name in _WATCHED_CLASSES + tuple(
                (name, attr) for name, m in self.modules.items() for attr, value in vars(m).items()
                if isinstance(value, type) and value.__module__ == name):
            cls = getattr(sys.modules.get(module), cls_name, None)
            if isinstance(cls, type):
                self.classes[f"{module}.{cls_name}"] = (cls, _state(dict(vars(cls))))
        self.functions = {}
        for module, names in _WATCHED_FUNCTIONS.items():
            found = sys.modules.get(module)
            if found is not None:
                self.functions[module] = (found, {n: getattr(found, n) for n in names if hasattr(found, n)})
        self.builtins = _state(vars(builtins), skip=_BUILTINS_IPYTHON_SWAPS)

    @staticmethod
    def _hooks() -> tuple:
        return (sys.gettrace(), sys.getprofile(), getattr(threading, "_trace_hook", None),
                getattr(threading, "_profile_hook", None))

    def tampering(self) -> list[str]:
        """What changed since :func:`install` (empty when nothing did)."""
        found = _changed("builtins", self.builtins, vars(builtins))
        for name, module in self.modules.items():
            if sys.modules.get(name) is not module:
                found.append(f"sys.modules[{name!r}] was replaced")
            found += _changed(name, self.module_state[name], vars(module))
        found += [f"{name} had its code replaced" for name, (fn, code) in self.codes.items()
                  if fn.__code__ is not code]
        for name, (cls, state) in self.classes.items():
            found += _changed(name, state, dict(vars(cls)))
        for name, (module, state) in self.functions.items():
            found += _changed(name, state, vars(module))
        found += [f"the check of {eid} had its code replaced"
                  for eid, (fn, code, _, _) in self.checks.items() if fn.__code__ is not code]
        if self._hooks() != self.hooks:
            found.append("a trace or profile hook was set (sys.settrace, sys.setprofile)")
        shell = self.shell
        if (shell.user_ns is not self.user_ns or shell.display_formatter is not self.formatter
                or self.formatter.formatters.get("text/plain") is not self.plain
                or dict(self.plain.type_printers) != self.printers):
            found.append("the kernel's namespace or display formatters were replaced")
        found += [f"get_ipython().{name} was overridden" for name in
                  ("user_expressions", "_format_user_obj", "run_cell", "ev") if name in vars(shell)]
        return found

    def verdict(self, nonce: str, exercise_id: str, name: str) -> str:
        """Check the answer the cell stored under ``name``; a JSON string with ``nonce``."""
        result = {"nonce": nonce, "id": exercise_id, "passed": False, "message": "", "tampering": []}
        found = self.tampering()
        answer = self.user_ns.pop(name, _MISSING)
        if found:
            result["tampering"] = found
            result["message"] = "tampering detected: " + "; ".join(found[:3])
        elif answer is _MISSING:
            result["message"] = f'the cell never reached its check("{exercise_id}", ...)'
        elif exercise_id not in self.checks:
            result["message"] = f"no check is registered for exercise {exercise_id} (a course bug)"
        else:
            passed, message = self._run(exercise_id, *answer)
            found = self.tampering()
            if found:
                result["tampering"] = found
                passed, message = False, "tampering detected: " + "; ".join(found[:3])
            result["passed"], result["message"] = passed, message
        return json.dumps(result)

    def _run(self, exercise_id: str, args: tuple, kwargs: dict) -> tuple[bool, str]:
        fn, _, title, hint = self.checks[exercise_id]
        try:
            details = fn(*args, **kwargs)
        except self.NotSolved:
            return False, "not solved yet (the cell still raises NotSolved)"
        except self.ExerciseFailed as err:
            message = f"Exercise {exercise_id} failed: {err.message}"
            if err.hint or hint:
                message += f"\nHint: {err.hint or hint}"
            return False, message
        except BaseException as err:  # the learner's code, called by the check, raised
            text = str(err).strip().splitlines()
            line = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
            return False, f"Exercise {exercise_id} failed: your code raised {line} while it was being checked"
        message = f"Exercise {exercise_id} passed: {title}"
        return True, message + (f" ({details})" if details else "")



def install(extra_check_files: list[str] | tuple = ()) -> int:
    """Take the record (see the module docstring) and return its address for the grader."""
    record = _Record(list(extra_check_files))
    import ctypes

    ctypes.pythonapi.Py_IncRef(ctypes.py_object(record))  # alive with no name pointing at it
    return id(record)
