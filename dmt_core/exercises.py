"""Checks for the notebooks' exercises: the student's answer against the solution's.

Every exercise in a notebook is followed by a cell for the answer (``answer = None``)
and a solution cell (collapsed) that computes the expected value and calls
:func:`check`, which says whether the answer is right.
"""

from __future__ import annotations

import math
from typing import Any


def check(exercise: str, answer: Any, expected: Any, tol: float = 0.0) -> bool:
    """Print whether ``answer`` equals ``expected`` (numbers within ``tol``); returns it.

    ``answer`` None means "not answered yet": the solution's value is not revealed.
    Sequences and dicts are compared element by element.
    """
    if answer is None:
        print(f"{exercise}: no answer yet (set the answer variable above, then run this cell)")
        return False
    ok = _equal(answer, expected, tol)
    if ok:
        print(f"{exercise}: correct ({_show(answer)})")
    else:
        print(
            f"{exercise}: not quite: you gave {_show(answer)}, the solution finds {_show(expected)}"
        )
    return ok


def _equal(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=tol)
    return a == b


def _show(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.3g}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in x) + "]"
    return repr(x)
