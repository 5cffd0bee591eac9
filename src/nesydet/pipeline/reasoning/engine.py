"""SWI-Prolog rule engine (pyswip) with sandboxed, time-limited, cached rule files.

Prolog is a per-process singleton: pyswip is imported, and so Prolog started, only on the
first `start()` in a process, never at import, so a Celery parent can fork workers before
any Prolog state exists. Every call goes through one process-wide lock because pyswip is
not thread-safe.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

from nesydet.pipeline.errors import RulesError
from nesydet.pipeline.paths import UnsafePathError, resolve_in_dirs
from nesydet.pipeline.reasoning.driver import DRIVER, DRIVER_MODULE
from nesydet.pipeline.reasoning.facts import prolog_atom
from nesydet.pipeline.types import Action

_LOCK = threading.RLock()
RULE_SEPARATOR = "\x1f"  # joins the names of the rules that fired (the driver's '\x1f\')
_started_pid: int | None = None
_module_counter = 0
RULES_SUFFIXES = (".pl", ".pro")
VALID_ACTIONS = ("keep", "drop", "relabel")


class Decision(NamedTuple):
    """The rules' verdict on one detection (a named tuple: a dense scene makes hundreds)."""

    action: Action
    confidence: float
    class_name: str
    rules: list[str]


def _prolog() -> Any:
    # Deferred import: importing pyswip initialises the Prolog runtime.
    from pyswip import Prolog

    return Prolog


def _query_one(goal: str) -> dict[str, Any]:
    """Runs `goal` once and returns its bindings; raises RulesError when it fails or throws."""
    from pyswip.prolog import PrologError

    try:
        rows = list(_prolog().query(goal, maxresult=1))
    except PrologError as exc:
        raise RulesError("Prolog error", str(exc)[:2000]) from exc
    if not rows:
        raise RulesError("Prolog goal failed", goal[:200])
    return cast(dict[str, Any], rows[0])


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _prolog_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# The driver relies on SWI-Prolog 9 (tested on 9.0.4): in_temporary_module/3, read_term/3's
# syntax_errors(error), and 9.0's handling of time limits around asserted clauses.
SUPPORTED_VERSIONS = (90000, 100000)  # PLVERSION, from 9.0.0 up to (not including) 10.0.0


def version_name(plversion: int) -> str:
    """Returns ``9.0.4`` for SWI-Prolog's numeric version 90004."""
    return f"{plversion // 10000}.{plversion // 100 % 100}.{plversion % 100}"


def check_version(plversion: int) -> None:
    """Raises RulesError unless this SWI-Prolog version is one the driver supports."""
    low, high = SUPPORTED_VERSIONS
    if not low <= plversion < high:
        raise RulesError(
            "unsupported SWI-Prolog version",
            f"found SWI-Prolog {version_name(plversion)}; the rules driver needs "
            f"{version_name(low)} or later before {version_name(high)} (tested with 9.0.4)",
        )


def installed_version(swipl: str = "swipl") -> int:
    """Returns the version of the SWI-Prolog on the PATH without loading it in this process.

    Raises:
        RulesError: When SWI-Prolog is not installed or does not answer.
    """
    try:
        out = subprocess.run(  # noqa: S603  # a fixed argument list, no shell
            [swipl, "--dump-runtime-variables"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RulesError(
            "SWI-Prolog not found", f"{swipl} --dump-runtime-variables failed: {exc}"
        ) from exc
    match = re.search(r'PLVERSION="(\d+)"', out)
    if match is None:
        raise RulesError("SWI-Prolog version unknown", "no PLVERSION in its runtime variables")
    return int(match.group(1))


def start_prolog(stack_limit_mb: int = 256) -> None:
    """Starts Prolog in this process (idempotent), checks its version and loads the driver.

    Raises:
        RulesError: When Prolog was started in a parent process before a fork (its
            timer thread does not survive fork, so time limits would hang), or its version
            is not one the driver supports.
    """
    global _started_pid
    with _LOCK:
        pid = os.getpid()
        if _started_pid == pid:
            return
        if _started_pid is not None:
            raise RulesError(
                "Prolog was started before fork", "start Prolog in each worker process"
            )
        check_version(int(_query_one("current_prolog_flag(version, V)")["V"]))
        load = (
            f"open_string({_prolog_string(DRIVER)}, S), "
            f"load_files({DRIVER_MODULE}, [stream(S), silent(true)]), close(S)"
        )
        _query_one(load)
        # Bounds each job's stacks: a runaway rule gets a resource error, not the host's RAM.
        _query_one(f"set_prolog_flag(stack_limit, {int(stack_limit_mb) * 1024 * 1024})")
        _started_pid = pid


class PrologReasoner:
    """Runs a rules file from `rules_dir` over one image's facts.

    Args:
        rules_dir: Directory holding the rules files; names are resolved inside it only.
        time_limit_s: Wall-clock limit for loading a file and for each job.
        max_rules_bytes: Larger rules files are refused before Prolog reads them.
        cache_size: Loaded rules files kept compiled, keyed by (path, mtime, size).
        extra_dirs: Further folders names resolve in, after rules_dir.
    """

    def __init__(
        self,
        rules_dir: Path,
        *,
        time_limit_s: float = 5.0,
        max_rules_bytes: int = 1_000_000,
        cache_size: int = 8,
        extra_dirs: Sequence[Path] = (),
    ) -> None:
        self.rules_dir = Path(rules_dir)
        self.rules_dirs = [self.rules_dir, *map(Path, extra_dirs)]
        self.time_limit_s = float(time_limit_s)
        self.max_rules_bytes = max_rules_bytes
        self.cache_size = cache_size
        self._templates: OrderedDict[Path, tuple[tuple[int, int], str]] = OrderedDict()
        self._uses: dict[str, frozenset[str]] = {}

    def start(self) -> None:
        """Starts Prolog in this process if needed (call after fork)."""
        start_prolog()

    def resolve(self, rules_file: str) -> Path:
        """Returns the real path of a rules file inside rules_dir.

        Raises:
            RulesError: When the name escapes rules_dir or the file does not exist.
        """
        try:
            return resolve_in_dirs(self.rules_dirs, rules_file, RULES_SUFFIXES)
        except UnsafePathError as exc:
            raise RulesError("invalid rules file", str(exc)) from exc

    def load(self, rules_file: str) -> str:
        """Returns the Prolog module holding the compiled rules file, loading it if changed.

        Raises:
            RulesError: For a bad name, an oversized file, a syntax error, a forbidden
                directive, an unsafe entry point, or a load over the time limit.
        """
        path = self.resolve(rules_file)
        st = path.stat()
        key = (st.st_mtime_ns, st.st_size)
        if st.st_size > self.max_rules_bytes:
            raise RulesError("rules file too large", f"{st.st_size} bytes > {self.max_rules_bytes}")
        global _module_counter
        with _LOCK:
            self.start()
            cached = self._templates.get(path)
            if cached is not None and cached[0] == key:
                self._templates.move_to_end(path)
                return cached[1]
            if cached is not None:
                self._drop(path)
            _module_counter += 1
            module = f"nesydet_rules_{os.getpid()}_{_module_counter}"
            limit = f"{self.time_limit_s:.3f}"
            res = _query_one(
                f"{DRIVER_MODULE}:nd_load({module}, {prolog_atom(str(path))}, {limit}, J)"
            )
            payload = _json(res["J"])
            if "error" in payload:
                _query_one(f"{DRIVER_MODULE}:nd_drop({module})")
                raise RulesError(
                    f"cannot load rules file {rules_file!r}", str(payload["error"])[:2000]
                )
            self._templates[path] = (key, module)
            while len(self._templates) > self.cache_size:
                self._drop(next(iter(self._templates)))
            return module

    def facts_used(self, rules_file: str) -> frozenset[str]:
        """Returns the names of the fact predicates the rules file mentions (loading it).

        The pipeline computes and sends only these: a rules file that never reads near/3
        spares the pairs' text and their assertion.

        Raises:
            RulesError: As `load`.
        """
        with _LOCK:
            module = self.load(rules_file)
            uses = self._uses.get(module)
            if uses is None:
                res = _query_one(f"{DRIVER_MODULE}:nd_uses({module}, Names)")
                text = _text(res["Names"])
                uses = frozenset(x for x in text.split(",") if x)
                self._uses[module] = uses
            return uses

    def _drop(self, path: Path) -> None:
        _key, module = self._templates.pop(path)
        self._uses.pop(module, None)
        _query_one(f"{DRIVER_MODULE}:nd_drop({module})")

    def decide(self, rules_file: str, facts: str, n: int, class_names: set[str]) -> list[Decision]:
        """Returns one decision per detection id 0..n-1.

        Args:
            rules_file: Rules file name inside rules_dir.
            facts: Prolog list of facts from `facts.build_facts`.
            n: Number of det/5 facts.
            class_names: Classes the rules may relabel to.

        Raises:
            RulesError: When loading or evaluation fails, exceeds the time limit, or the
                rules return malformed decisions.
        """
        with _LOCK:
            module = self.load(rules_file)
            res = _query_one(
                f"{DRIVER_MODULE}:nd_run({module}, {facts}, {self.time_limit_s:.3f}, Out)"
            )
        out = _text(res["Out"])
        if out.startswith("error\t"):
            raise RulesError(f"rules evaluation failed in {rules_file!r}", out[6:2006])
        return _parse_decisions(out, n, class_names)


def _json(value: Any) -> dict[str, Any]:
    try:
        payload = json.loads(_text(value))
    except ValueError as exc:
        raise RulesError("rules returned invalid output", str(exc)) from exc
    if not isinstance(payload, dict):
        raise RulesError("rules returned invalid output", "not a JSON object")
    return payload


def _parse_decisions(text: str, n: int, class_names: set[str]) -> list[Decision]:
    out: list[Decision | None] = [None] * n
    for line in text.splitlines():
        fields = line.split("\t")
        try:
            if len(fields) != 5:
                raise ValueError(f"{len(fields)} fields")
            idx_text, action, conf_text, cls, names = fields
            idx, conf = int(idx_text), float(conf_text)
        except ValueError as exc:
            detail = f"{line[:300]!r}: {exc}"
            raise RulesError("rules returned a malformed decision", detail) from exc
        if not 0 <= idx < n or out[idx] is not None:
            raise RulesError("rules returned a decision for an unknown or repeated id", str(idx))
        if action not in VALID_ACTIONS:
            raise RulesError("rules returned an unknown action", action)
        if not 0.0 <= conf <= 1.0:  # NaN fails this too
            raise RulesError("rules returned a confidence outside [0, 1]", f"id {idx}: {conf}")
        if cls not in class_names:
            raise RulesError("rules relabelled to a class the model does not know", cls)
        rules = names.split(RULE_SEPARATOR) if names else []
        out[idx] = Decision(cast(Action, action), conf, cls, rules)
    missing = [k for k, d in enumerate(out) if d is None]
    if missing:
        raise RulesError("rules returned no decision for some detections", str(missing[:10]))
    return [d for d in out if d is not None]
