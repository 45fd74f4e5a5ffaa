"""Checks of the numbers that the library's public functions take.

The CLI bounds its options too, but the library is called from Python as well, where a negative
`limit` would otherwise slice records from the end, and a float count would fail deep inside a
run, after work was done. Each check raises a DistillError that names the argument.
"""

import math
from numbers import Integral, Real
from typing import Any, Optional

from .errors import DistillError


def check_int_argument(
    name: str, value: Any, minimum: Optional[int] = None, maximum: Optional[int] = None
) -> None:
    """Raise a DistillError naming the argument unless `value` is an integer in the bounds.

    name (str): the argument, as the caller knows it (e.g. "limit").
    value (Any): its value. A bool is not an integer here (True is not a count); numpy's
        integers are.
    minimum (Optional[int]): the smallest value allowed (None: no bound).
    maximum (Optional[int]): the largest value allowed (None: no bound).
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise DistillError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise DistillError(f"{name} must be between {minimum} and {maximum}, got {value}")
    if minimum is not None and value < minimum:
        raise DistillError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise DistillError(f"{name} must be <= {maximum}, got {value}")


def check_float_argument(
    name: str,
    value: Any,
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    *,
    above_minimum: bool = False,
) -> None:
    """Raise a DistillError naming the argument unless `value` is a finite number in the bounds.

    name (str): the argument, as the caller knows it (e.g. "alpha").
    value (Any): its value: an int or a float (numpy's too), not a bool, NaN or infinity.
    minimum (Optional[float]): the lower bound (None: none).
    maximum (Optional[float]): the upper bound, included (None: none).
    above_minimum (bool): the value must be strictly greater than `minimum` (e.g. a
        temperature, which divides).
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise DistillError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise DistillError(f"{name} must be a finite number, got {value!r}")
    low_ok = minimum is None or (value > minimum if above_minimum else value >= minimum)
    if low_ok and (maximum is None or value <= maximum):
        return
    if minimum is not None and maximum is not None:
        bounds = f"in {'(' if above_minimum else '['}{minimum:g}, {maximum:g}]"
    elif minimum is not None:
        bounds = f"{'>' if above_minimum else '>='} {minimum:g}"
    else:
        bounds = f"<= {maximum:g}"
    raise DistillError(f"{name} must be {bounds}, got {value!r}")


__all__ = ["check_float_argument", "check_int_argument"]
