#!/usr/bin/env python
"""Probe of the whole public API of ``lib`` with the values a new user passes by mistake.

``python .ci/probe_api.py`` calls every public name of every ``lib`` module with bad and edge
values, one argument at a time, the others valid: wrong types (bools, strings, ``None``,
lists, 2-element tensors), NaN/inf, negative and zero sizes, huge sizes (``10**9``), floats
for integers, empty or mis-shaped tensors, NaN data, unsupported layers, train-mode
BatchNorm/Dropout models; and with valid NumPy / 0-d torch / ``Fraction`` scalars that must be
accepted.  The valid arguments and the argument kinds come from tests/test_contract.py (one
table for the contract test and the probe).

Each call runs in its own forked child process (multiprocessing) with a memory limit and a
wall-clock limit (``--timeout``, default 5 s), so hangs, runaway allocations and interpreter
crashes are counted instead of stopping the probe.  Outcomes:

* ``clear``     -- ValueError/TypeError whose message names the argument;
* ``returned``  -- returned, and that is right (a valid value, a cheap huge size, NaN in gives
                   NaN out);
* ``unclear``   -- another exception, a message that does not name the argument, or a valid
                   scalar refused;
* ``silent``    -- silent wrong: a bad value accepted (a bool as a count, a negative step), a
                   finite answer for NaN data, or the model argument changed by the call;
* ``runaway``   -- over the time limit, or MemoryError / failed allocation;
* ``crash``     -- the child died (segfault, abort) without a report.

Prints one line per call (``--issues-only``: only the non-clear, non-returned ones), the
counts by outcome, and the non-clear outcomes grouped by function.  ``--json PATH`` writes all
records.  Run it with low priority: ``nice -n 19 python .ci/probe_api.py``.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import inspect
import json
import math
import multiprocessing as mp
import os
import re
import resource
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
os.environ.setdefault("BOOK_PROGRESS", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

_spec = importlib.util.spec_from_file_location("contract_table",
                                               ROOT / "tests" / "test_contract.py")
C = importlib.util.module_from_spec(_spec)
assert _spec.loader is not None
_spec.loader.exec_module(C)

MEMORY = 3 * 2**30  # bytes of address space a child may add to what it inherits

#: Functions whose documented job is to change their argument (not counted as "silent").
MUTATES = {"hessian.load_flat_parameters", "fp.to_format", "seeding.seed_everything",
           "plotting.use_book_style", "approx.optimise_breakpoints"}

#: Public names not called without arguments (they would act on this checkout: run chapters).
NO_PLAIN_CALL = {"record.main"}

# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------

REFUSE, ACCEPT, NAN_IN, HUGE_SIZE, EITHER = "refuse", "accept", "nan-in", "huge", "either"

#: Arguments that must be a Linear/ReLU stack (pieces, fp, sawtooth, ...); "model" is any module.
LINEAR_RELU_ARGS = {"net", "base", "nets_list", "net0"}


class Case:
    __slots__ = ("func", "param", "label", "make", "expect")

    def __init__(self, func: str, param: str, label: str, make: Callable[[], Any], expect: str):
        self.func, self.param, self.label, self.make, self.expect = func, param, label, make, expect


def _const(v: Any) -> Callable[[], Any]:
    return lambda: v


def bad_numbers(kind: str) -> list[tuple[str, Any, str]]:
    """``(label, value, expectation)`` for a numeric kind."""
    common = [("True", True, REFUSE), ("'3'", "3", REFUSE), ("None", None, REFUSE),
              ("nan", math.nan, REFUSE), ("inf", math.inf, REFUSE), ("[1]", [1], REFUSE),
              ("tensor([1.,2.])", torch.tensor([1.0, 2.0]), REFUSE)]
    if kind in (C.COUNT, C.NONNEG, C.SEED):
        out = common + [("-1", -1, REFUSE), ("2.5", 2.5, REFUSE), ("10**9", C.HUGE, HUGE_SIZE)]
        if kind == C.COUNT:
            out.append(("0", 0, REFUSE))
        return out
    if kind == C.POSITIVE:
        return common + [("-inf", -math.inf, REFUSE), ("0.0", 0.0, REFUSE), ("-1.0", -1.0, REFUSE)]
    if kind == C.NONNEG_REAL:
        return common + [("-inf", -math.inf, REFUSE), ("-1.0", -1.0, REFUSE)]
    if kind == C.REAL:
        return common + [("-inf", -math.inf, REFUSE)]
    if kind == C.DTYPE:
        return [("None", None, REFUSE), ("'float64x'", "float64x", REFUSE),
                ("torch.int32", torch.int32, REFUSE), ("torch.complex64", torch.complex64, REFUSE),
                ("1", 1, REFUSE)]
    if kind == C.INTERVAL:
        return [("(1.0, 0.0)", (1.0, 0.0), REFUSE), ("(0.0, 0.0)", (0.0, 0.0), REFUSE),
                ("(0.0, nan)", (0.0, math.nan), REFUSE), ("(-inf, 1.0)", (-math.inf, 1.0), REFUSE),
                ("None", None, REFUSE), ("'01'", "01", REFUSE), ("(0.0,)", (0.0,), REFUSE)]
    raise AssertionError(kind)


def valid_variants(value: Any, kind: str) -> list[tuple[str, Any, str]]:
    if value is None or isinstance(value, bool) or kind in (C.DTYPE, C.INTERVAL):
        return []
    if kind in (C.COUNT, C.NONNEG, C.SEED):
        return [("np.int64", np.int64(value), ACCEPT), ("0-d tensor", torch.tensor(value), ACCEPT)]
    return [("np.float64", np.float64(value), ACCEPT),
            ("0-d tensor", torch.tensor(float(value), dtype=torch.float64), ACCEPT),
            ("Fraction", Fraction(value), ACCEPT)]


def _with_nan(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
        out = value.clone()
        out.reshape(-1)[0] = math.nan
        return out
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
        out = value.copy()
        out.reshape(-1)[0] = math.nan
        return out
    if isinstance(value, float):
        return math.nan
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, float) for v in value):
        return type(value)([math.nan, *value[1:]])
    return None


def _empty(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.ndim:
        return value[:0]
    if isinstance(value, np.ndarray) and value.ndim:
        return value[:0]
    if isinstance(value, (list, tuple)) and value and not isinstance(value[0], nn.Module):
        return type(value)()
    return None


def _misshaped(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.ndim:
        return value.unsqueeze(0).unsqueeze(-1)
    if isinstance(value, np.ndarray) and value.ndim:
        return value[None, ..., None]
    return None


def _tanh_net(d_in: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d_in, 3), nn.Tanh(), nn.Linear(3, 1)).double()


def _bn_net(d_in: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d_in, 3), nn.BatchNorm1d(3), nn.ReLU(),
                         nn.Linear(3, 1)).double().train()


def _dropout_net(d_in: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d_in, 3), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(3, 1)).double().train()


def _d_in(module: nn.Module) -> int:
    first = next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
    return first.in_features if first is not None else 1


def data_cases(func: str, p: inspect.Parameter, value: Any) -> list[tuple[str, Any, str]]:
    """Bad data for a non-numeric argument: NaN, empty, mis-shaped, wrong type, odd models."""
    out: list[tuple[str, Any, str]] = []
    if isinstance(value, nn.Module) and not isinstance(value, type):
        d = _d_in(value)
        # A "net" is a Linear/ReLU stack (other layers refused); a "model" may be any module,
        # evaluated without being changed (train-mode layers: refused, or left as they were).
        generic = p.name not in LINEAR_RELU_ARGS
        out += [("'net'", "net", REFUSE),
                ("Tanh layer", _tanh_net(d), ACCEPT if generic else REFUSE),
                ("train BatchNorm", _bn_net(d), EITHER if generic else REFUSE),
                ("train Dropout", _dropout_net(d), EITHER if generic else REFUSE)]
        return out
    nan = _with_nan(value)
    if nan is not None:
        out.append(("with NaN", nan, NAN_IN))
    empty = _empty(value)
    if empty is not None:  # an empty list may be an empty sweep; an empty array is no data
        out.append(("empty", empty, EITHER if isinstance(value, (list, tuple)) else REFUSE))
    mis = _misshaped(value)
    if mis is not None:
        out.append(("mis-shaped", mis, REFUSE))
    if isinstance(value, (torch.Tensor, np.ndarray, list, tuple)) or callable(value):
        out.append(("'x'", "x", REFUSE))
    return out


def build_cases() -> list[Case]:
    cases: list[Case] = []
    for func in sorted(C.API):
        try:
            params = C.parameters(func)
        except (TypeError, ValueError):
            continue
        if func in C.EXCLUDED:
            required = [p for p in params if p.default is inspect.Parameter.empty]
            if required:  # a result record stores what it is given: not a user entry point
                record = C.EXCLUDED[func] == "result record"
                cases.append(Case(func, required[0].name, "all None", _const(None),
                                  EITHER if record else REFUSE))
            elif func not in NO_PLAIN_CALL:
                cases.append(Case(func, "-", "no arguments", _const(None), ACCEPT))
            continue
        for p in params:
            kind = C.kind_of(func, p.name)
            try:
                value = C.valid_value(func, p)
            except LookupError:
                continue
            if kind is not None:
                if not (kind == C.DTYPE and p.default is None):
                    documented = C.DOCUMENTED.get((func, p.name), [])
                    for label, v, expect in bad_numbers(kind):
                        if v is None and p.default is None:
                            continue
                        if any(v is d or (type(v) is type(d) and v == d) for d in documented):
                            expect = EITHER
                        cases.append(Case(func, p.name, label, _const(v), expect))
                for label, v, expect in valid_variants(value, kind):
                    cases.append(Case(func, p.name, label, _const(v), expect))
            elif p.default is inspect.Parameter.empty:
                for label, v, expect in data_cases(func, p, value):
                    cases.append(Case(func, p.name, label, _const(v), expect))
    return cases


# ---------------------------------------------------------------------------------------------
# Running one case in a child
# ---------------------------------------------------------------------------------------------


def _limit_memory() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        vsize = int(f.read().split()[0]) * resource.getpagesize()
    limit = vsize + MEMORY if hard == resource.RLIM_INFINITY else min(vsize + MEMORY, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _module_states(objs: list[Any]) -> list[Any]:
    return [(m.training, [(k, v.detach().clone()) for k, v in m.state_dict().items()])
            for m in objs if isinstance(m, nn.Module)]


def _same_states(a: list[Any], b: list[Any]) -> bool:
    for (ta, sa), (tb, sb) in zip(a, b):
        if ta != tb or len(sa) != len(sb):
            return False
        for (ka, va), (kb, vb) in zip(sa, sb):
            if ka != kb or va.shape != vb.shape or not torch.equal(
                    torch.nan_to_num(va.double(), nan=1.2345) if va.is_floating_point() else va,
                    torch.nan_to_num(vb.double(), nan=1.2345) if vb.is_floating_point() else vb):
                return False
    return True


def _summary(out: Any) -> dict[str, Any]:
    return {"non_finite": bool(C.has_non_finite(out)), "type": type(out).__name__,
            "repr": " ".join(repr(out).split())[:80]}


def _child(case: Case, conn: Any) -> None:
    try:
        _limit_memory()
        torch.set_num_threads(1)
        import warnings
        warnings.simplefilter("ignore")
        func = C.API[case.func]
        if case.label == "no arguments":
            args, kwargs = [], {}
        elif case.label == "all None":
            args = [None for p in C.parameters(case.func) if p.default is inspect.Parameter.empty
                    and p.kind is not p.KEYWORD_ONLY]
            kwargs = {p.name: None for p in C.parameters(case.func)
                      if p.default is inspect.Parameter.empty and p.kind is p.KEYWORD_ONLY}
        else:
            args, kwargs = C.with_value(case.func, case.param, case.make())
        modules = [a for a in [*args, *kwargs.values()] if isinstance(a, nn.Module)]
        before = _module_states(modules)
        try:
            out = func(*args, **kwargs)
            report = {"status": "returned", **_summary(out)}
        except MemoryError as e:
            report = {"status": "raised", "exc": "MemoryError", "msg": str(e)[:200]}
        except Exception as e:  # noqa: BLE001
            report = {"status": "raised", "exc": type(e).__name__,
                      "value_error": isinstance(e, (ValueError, TypeError)), "msg": str(e)[:300]}
        report["mutated"] = not _same_states(before, _module_states(modules))
        conn.send(report)
    except BaseException as e:  # noqa: BLE001 -- the set-up itself failed
        conn.send({"status": "setup", "exc": type(e).__name__, "msg": str(e)[:200]})
    finally:
        conn.close()


def run_case(case: Case, timeout: float) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(case, child), daemon=True)
    start = time.perf_counter()
    proc.start()
    child.close()
    report: dict[str, Any] | None = None
    if parent.poll(timeout):
        try:
            report = parent.recv()
        except EOFError:
            report = None
    seconds = time.perf_counter() - start
    if report is None and proc.is_alive():
        proc.kill()
        proc.join()
        return {"outcome": "runaway", "detail": f"over {timeout:g} s", "seconds": seconds}
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if report is None:
        return {"outcome": "crash", "detail": f"child exit code {proc.exitcode}",
                "seconds": seconds}
    return {**classify(case, report), "seconds": seconds}


def classify(case: Case, r: dict[str, Any]) -> dict[str, str]:
    if r["status"] == "setup":
        return {"outcome": "setup", "detail": f"{r['exc']}: {r['msg']}"}
    if r.get("mutated") and case.func not in MUTATES:
        return {"outcome": "silent", "detail": "changed its model argument"
                + (f" (and raised {r['exc']})" if r["status"] == "raised" else "")}
    if r["status"] == "raised":
        msg = f"{r['exc']}: {r['msg']}"
        if r["exc"] == "MemoryError" or "allocat" in r["msg"].lower():
            return {"outcome": "runaway", "detail": msg}
        if case.expect == ACCEPT:
            return {"outcome": "unclear", "detail": "valid value refused: " + msg}
        if not r.get("value_error"):
            return {"outcome": "unclear", "detail": msg}
        names = [case.param]
        if case.func in C.API and "name" in inspect.signature(C.API[case.func]).parameters:
            # a checker names the argument it is told to: its ``name``
            p = inspect.signature(C.API[case.func]).parameters["name"]
            try:
                names.append(C.valid_value(case.func, p))
            except LookupError:
                pass
        if case.label != "all None" and not any(
                re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", r["msg"])
                for n in names):
            return {"outcome": "unclear", "detail": "argument not named: " + msg}
        return {"outcome": "clear", "detail": msg}
    if case.expect in (ACCEPT, HUGE_SIZE, EITHER):
        return {"outcome": "returned", "detail": r["repr"]}
    if case.expect == NAN_IN:
        if r["non_finite"]:
            return {"outcome": "returned", "detail": "NaN in, non-finite out"}
        return {"outcome": "silent", "detail": "finite answer for NaN input: " + r["repr"]}
    return {"outcome": "silent", "detail": "accepted: returned " + r["repr"]}


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per call")
    ap.add_argument("--issues-only", action="store_true", help="print only non-clear calls")
    ap.add_argument("--only", default="", help="probe only functions whose name contains this")
    ap.add_argument("--json", default="", help="write every record to this file")
    args = ap.parse_args(argv)
    cases = [c for c in build_cases() if args.only in c.func]
    records = []
    started = time.perf_counter()
    print(f"{'function':38s} {'argument':16s} {'value':18s} {'outcome':9s} detail")
    warmed: set[str] = set()
    for case in cases:
        if case.func not in warmed and case.func in C.COVERED:
            # the valid call once in this process first, so that lazy imports (torch.func ...)
            # and caches are paid here, not counted against each child's time limit
            warmed.add(case.func)
            C.base_call(case.func)
        rec = {"func": case.func, "param": case.param, "value": case.label,
               **run_case(case, args.timeout)}
        records.append(rec)
        if not args.issues_only or rec["outcome"] not in ("clear", "returned"):
            print(f"{rec['func']:38s} {rec['param']:16s} {rec['value']:18s} {rec['outcome']:9s} "
                  f"{rec['detail'][:110]}", flush=True)
    counts = collections.Counter(r["outcome"] for r in records)
    names = {r["func"] for r in records}
    print(f"\n{len(records)} calls over {len(names)} public names of {len(C.API)} "
          f"in {time.perf_counter() - started:.0f} s")
    for outcome in ("clear", "returned", "unclear", "silent", "runaway", "crash", "setup"):
        print(f"  {outcome:9s} {counts.get(outcome, 0)}")
    by_func: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in records:
        if r["outcome"] not in ("clear", "returned"):
            by_func[r["func"]].append(r)
    print(f"\nNon-clear outcomes by function ({sum(map(len, by_func.values()))}):")
    for func in sorted(by_func):
        print(f"  {func}")
        for r in by_func[func]:
            print(f"    {r['param']}={r['value']}: {r['outcome']}: {r['detail'][:120]}")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
