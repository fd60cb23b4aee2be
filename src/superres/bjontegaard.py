"""Bjontegaard deltas between two rate-distortion curves, and where one curve lies above the other.

A curve is a set of points (rate, quality): rate > 0 in any unit (bits per pixel here), quality in dB. Pure NumPy.

- BD-rate: the mean of ln(test rate) - ln(anchor rate) at equal quality, over the qualities both curves reach,
  as a percentage: 100 * (exp(mean) - 1). Negative: the test curve needs fewer bits for the same quality.
- BD-PSNR: the mean of test quality - anchor quality at equal ln(rate), over the rates both curves reach (dB).

Each curve is a function interpolated through its points and integrated exactly over the overlap. Method "pchip"
(the default) is a monotone piecewise-cubic Hermite curve (Fritsch-Carlson slopes), which follows curves with many
points and a flat end (a x4 pipeline's quality levels off as the rate grows); method "cubic" fits one cubic
polynomial to all the points, Bjontegaard's original definition for four points. Points with a non-finite quality
(a lossless round trip: inf dB) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METHODS = ("pchip", "cubic")


@dataclass(frozen=True)
class Delta:
    """A Bjontegaard delta: `value` (% for BD-rate, dB for BD-PSNR), NaN with a `reason` when it cannot be had;
    `low`..`high` is the overlap it was averaged over (dB for BD-rate, rate for BD-PSNR)."""

    value: float
    reason: str = ""
    low: float = math.nan
    high: float = math.nan


@dataclass(frozen=True)
class Advantage:
    """Where the test curve lies above the anchor at equal rate (PSNR against ln(rate), straight between points):
    the rate ranges, within the rates both reach, and the largest gain (dB, negative: never above) at `at_rate`."""

    above: tuple[tuple[float, float], ...]
    max_gain: float
    at_rate: float


def _curve(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Finite points sorted by x, points with equal x merged into their mean y."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    xs, inverse = np.unique(x, return_inverse=True)
    ys = np.bincount(inverse, weights=y, minlength=len(xs)) / np.bincount(inverse, minlength=len(xs))
    return xs, ys


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson derivatives at the points: the weighted harmonic mean of the neighbouring secants inside
    (0 at a local extremum), a three-point estimate kept shape-preserving at the two ends."""
    h, secant = np.diff(x), np.diff(y) / np.diff(x)
    if len(x) == 2:
        return np.array([secant[0], secant[0]])
    slopes = np.zeros_like(y)
    for k in range(1, len(x) - 1):
        if secant[k - 1] * secant[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            slopes[k] = (w1 + w2) / (w1 / secant[k - 1] + w2 / secant[k])

    def end(h0: float, h1: float, s0: float, s1: float) -> float:
        d = ((2 * h0 + h1) * s0 - h0 * s1) / (h0 + h1)
        if np.sign(d) != np.sign(s0):
            return 0.0
        if np.sign(s0) != np.sign(s1) and abs(d) > abs(3 * s0):
            return 3 * s0
        return d

    slopes[0] = end(h[0], h[1], secant[0], secant[1])
    slopes[-1] = end(h[-1], h[-2], secant[-1], secant[-2])
    return slopes


def _pchip_area(x: np.ndarray, y: np.ndarray, t: float) -> float:
    """Integral of the Hermite curve through (x, y) from x[0] to t, x[0] <= t <= x[-1]: on a segment of width h,
    with tau its fraction covered, the cubic's basis functions integrate to polynomials in tau."""
    d, h = _pchip_slopes(x, y), np.diff(x)
    i = min(int(np.searchsorted(x, t, side="right")) - 1, len(x) - 2)
    whole = h * (y[:-1] + y[1:]) / 2 + h**2 * (d[:-1] - d[1:]) / 12
    tau = (t - x[i]) / h[i]
    part = h[i] * (
        y[i] * (tau - tau**3 + tau**4 / 2)
        + h[i] * d[i] * (tau**2 / 2 - 2 * tau**3 / 3 + tau**4 / 4)
        + y[i + 1] * (tau**3 - tau**4 / 2)
        + h[i] * d[i + 1] * (tau**4 / 4 - tau**3 / 3)
    )
    return float(whole[:i].sum() + part)


def _area(x: np.ndarray, y: np.ndarray, low: float, high: float, method: str) -> float:
    """Integral from `low` to `high` of the curve through (x, y)."""
    if method == "cubic":
        antiderivative = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(antiderivative, high) - np.polyval(antiderivative, low))
    return _pchip_area(x, y, high) - _pchip_area(x, y, low)


def _mean_difference(anchor: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], method: str,
                     axis: str) -> Delta:
    """Mean of test - anchor over the x both curves cover; NaN with a reason when they cannot be compared."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    needed = 4 if method == "cubic" else 2
    for name, (x, _) in (("anchor", anchor), ("test", test)):
        if len(x) < needed:
            return Delta(math.nan, f"the {name} curve has {len(x)} distinct finite points, {method} needs {needed}")
    low, high = max(anchor[0][0], test[0][0]), min(anchor[0][-1], test[0][-1])
    if not high > low:
        return Delta(math.nan, f"no overlap in {axis}: anchor {anchor[0][0]:.4g}..{anchor[0][-1]:.4g}, "
                               f"test {test[0][0]:.4g}..{test[0][-1]:.4g}")
    difference = (_area(*test, low, high, method) - _area(*anchor, low, high, method)) / (high - low)
    return Delta(float(difference), "", float(low), float(high))


def bd_rate(anchor_rate: Sequence[float], anchor_psnr: Sequence[float], test_rate: Sequence[float],
            test_psnr: Sequence[float], *, method: str = "pchip") -> Delta:
    """BD-rate of the test curve against the anchor, in % (negative: the test saves bits); overlap in dB."""
    delta = _mean_difference(_curve(anchor_psnr, np.log(anchor_rate)), _curve(test_psnr, np.log(test_rate)),
                             method, "PSNR (dB)")
    if math.isnan(delta.value):
        return delta
    return Delta(100.0 * math.expm1(delta.value), "", delta.low, delta.high)


def bd_psnr(anchor_rate: Sequence[float], anchor_psnr: Sequence[float], test_rate: Sequence[float],
            test_psnr: Sequence[float], *, method: str = "pchip") -> Delta:
    """BD-PSNR of the test curve against the anchor, in dB (positive: the test is better); overlap in rate."""
    delta = _mean_difference(_curve(np.log(anchor_rate), anchor_psnr), _curve(np.log(test_rate), test_psnr),
                             method, "rate")
    if math.isnan(delta.value):
        return delta
    return Delta(delta.value, "", math.exp(delta.low), math.exp(delta.high))


def advantage(anchor_rate: Sequence[float], anchor_psnr: Sequence[float], test_rate: Sequence[float],
              test_psnr: Sequence[float]) -> Advantage | None:
    """Where the test curve is above the anchor (None: the curves share no rate range). Both are straight lines
    between their points in (ln rate, PSNR), so their difference is too and each crossing is found exactly."""
    ax, ay = _curve(np.log(anchor_rate), anchor_psnr)
    tx, ty = _curve(np.log(test_rate), test_psnr)
    if len(ax) < 2 or len(tx) < 2:
        return None
    low, high = max(ax[0], tx[0]), min(ax[-1], tx[-1])
    if not high > low:
        return None
    knots = np.unique(np.concatenate([[low, high], ax, tx]))
    knots = knots[(knots >= low) & (knots <= high)]
    gain = np.interp(knots, tx, ty) - np.interp(knots, ax, ay)
    ranges, start = [], knots[0] if gain[0] > 0 else None
    for k in range(len(knots) - 1):
        if (gain[k] > 0) != (gain[k + 1] > 0):
            crossing = knots[k] + (knots[k + 1] - knots[k]) * gain[k] / (gain[k] - gain[k + 1])
            if start is None:
                start = crossing
            else:
                ranges.append((start, crossing))
                start = None
    if start is not None:
        ranges.append((start, knots[-1]))
    best = int(np.argmax(gain))
    return Advantage(tuple((math.exp(a), math.exp(b)) for a, b in ranges), float(gain[best]),
                     math.exp(knots[best]))
