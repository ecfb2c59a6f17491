# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Vectorised drawing primitives shared by the synthetic chest X-ray and endoscopy renderers.

Everything here works on whole numpy arrays (no per-pixel Python loops) so that a 256x256 phantom is drawn in a
few milliseconds. Randomness only ever comes from the ``numpy.random.Generator`` passed in, so every output is a
deterministic function of that generator's state.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

__all__ = [
    "smooth_noise",
    "blob_field",
    "random_harmonics",
    "largest_component",
    "dilate",
    "filled_convex_area",
    "to_uint8",
]


@lru_cache(maxsize=32)
def _interpolation_matrix(size: int, cells: int) -> np.ndarray:
    """Gaussian radial-basis weights (size x cells) that spread a ``cells``-point grid smoothly over ``size``."""
    centres = (np.arange(cells, dtype=np.float64) + 0.5) * (size / cells) - 0.5
    pixels = np.arange(size, dtype=np.float64)[:, None]
    width = 0.75 * size / cells
    weights = np.exp(-0.5 * ((pixels - centres[None, :]) / width) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    weights.setflags(write=False)
    return weights


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Band-limited random field, zero mean and unit standard deviation.

    A ``cells`` x ``cells`` grid of standard normal values is interpolated to ``size`` x ``size`` with Gaussian
    radial-basis weights (two small matrix products), which is much cheaper than filtering white noise.

    Args:
        rng: the random generator to draw from.
        size: output height and width in pixels (>= 1).
        cells: number of random values along each side (>= 2); the feature size is about ``size / cells`` pixels.

    Returns:
        Float64 array of shape ``(size, size)``.
    """
    cells = int(max(2, cells))
    grid = rng.standard_normal((cells, cells))
    weights = _interpolation_matrix(size, cells)
    field = weights @ grid @ weights.T
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def random_harmonics(rng: np.random.Generator, amplitude: float, orders: int = 4) -> np.ndarray:
    """Random boundary harmonics for :func:`blob_field`.

    Args:
        rng: the random generator to draw from.
        amplitude: largest amplitude of any single harmonic (relative to the radius), >= 0; 0 gives an ellipse.
        orders: number of harmonics, orders 2..``orders + 1``. Defaults to 4.

    Returns:
        Array of shape ``(orders, 3)``: columns are order, amplitude, phase.
    """
    order = np.arange(2, orders + 2, dtype=np.float64)
    amp = rng.uniform(0.0, amplitude, size=orders) / np.sqrt(order - 1.0)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=orders)
    return np.stack([order, amp, phase], axis=1)


def blob_field(
    size: int,
    centre: tuple[float, float],
    radii: tuple[float, float],
    angle: float = 0.0,
    harmonics: np.ndarray | None = None,
) -> np.ndarray:
    """Normalised radial distance to a star-shaped blob: ``<= 1`` inside, ``> 1`` outside.

    The blob is an ellipse (semi-axes ``radii``, rotated by ``angle``) whose boundary radius is modulated by
    ``1 + sum_k a_k cos(n_k * theta + phi_k)``. The value is computed only in the blob's bounding box; pixels
    outside it get 100.

    Args:
        size: image height and width in pixels.
        centre: ``(row, column)`` of the centre, in pixels (fractional values allowed).
        radii: ``(row semi-axis, column semi-axis)`` in pixels before rotation, both > 0.
        angle: rotation in radians. Defaults to 0.
        harmonics: ``(k, 3)`` array of order, amplitude, phase (see :func:`random_harmonics`), or ``None`` for a
            plain ellipse. Defaults to ``None``.

    Returns:
        Float64 array of shape ``(size, size)``.
    """
    field = np.full((size, size), 100.0)
    amp_sum = 0.0 if harmonics is None else float(np.abs(harmonics[:, 1]).sum())
    reach = max(radii) * (1.0 + amp_sum) + 2.0
    r0, r1 = max(int(np.floor(centre[0] - reach)), 0), min(int(np.ceil(centre[0] + reach)) + 1, size)
    c0, c1 = max(int(np.floor(centre[1] - reach)), 0), min(int(np.ceil(centre[1] + reach)) + 1, size)
    if r0 >= r1 or c0 >= c1:
        return field
    dy = np.arange(r0, r1, dtype=np.float64)[:, None] - centre[0]
    dx = np.arange(c0, c1, dtype=np.float64)[None, :] - centre[1]
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    u = (dy * cos_a + dx * sin_a) / radii[0]
    v = (-dy * sin_a + dx * cos_a) / radii[1]
    rho = np.sqrt(u * u + v * v)
    boundary = np.ones_like(rho)
    if harmonics is not None and len(harmonics):
        orders = harmonics[:, 0]
        if np.all(orders == np.round(orders)) and orders.min() >= 1:
            # cos(n theta + phi) = Re(e^{i phi} z^n) with z = e^{i theta}: integer powers, no trigonometry per pixel
            with np.errstate(invalid="ignore", divide="ignore"):
                z = np.where(rho > 0, (u + 1j * v) / rho, 1.0 + 0.0j)
            power, current = z.copy(), 1
            for order, amp, phase in sorted(harmonics.tolist()):
                while current < int(order):
                    power *= z
                    current += 1
                boundary += amp * (power.real * np.cos(phase) - power.imag * np.sin(phase))
        else:
            theta = np.arctan2(v, u)
            for order, amp, phase in harmonics:
                boundary += amp * np.cos(order * theta + phase)
    field[r0:r1, c0:c1] = rho / np.maximum(boundary, 0.05)
    return field


def _bounding_box(mask: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    rows = np.nonzero(mask.any(axis=1))[0]
    if rows.size == 0:
        return None
    cols = np.nonzero(mask.any(axis=0))[0]
    return (
        slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, mask.shape[0])),
        slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, mask.shape[1])),
    )


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of a boolean mask, with its holes filled.

    Args:
        mask: 2D boolean array.

    Returns:
        Boolean array of the same shape (all False when ``mask`` is empty). Ties go to the component found first
        in row-major order.
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    box = _bounding_box(mask, 1)
    if box is None:
        return out
    labels, count = ndimage.label(mask[box])
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    out[box] = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)))
    return out


def dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Binary dilation with the 3x3 square (8-connected) structuring element, computed on the bounding box only.

    Args:
        mask: 2D boolean array.
        iterations: number of dilation steps (>= 0); the result reaches ``iterations`` pixels further in the
            chessboard metric.

    Returns:
        Boolean array of the same shape.
    """
    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    box = _bounding_box(mask, iterations + 1)
    if box is None or iterations <= 0:
        return out
    out[box] = ndimage.binary_dilation(mask[box], structure=np.ones((3, 3), bool), iterations=iterations)
    return out


def filled_convex_area(mask: np.ndarray) -> int:
    """Number of pixels whose centre lies inside the convex hull of the centres of a mask's pixels.

    Using pixel centres (not pixel corners) makes a digitally convex shape (a rasterised disk, ellipse or
    rectangle) its own filled hull, so its solidity = area / filled hull area is exactly 1 at any size, while a
    lobulated or concave shape scores below 1.

    Args:
        mask: 2D boolean array with at least one foreground pixel.

    Returns:
        The filled convex hull area in pixels (at least the mask area).

    Raises:
        ValueError: when ``mask`` is empty.
    """
    mask = np.asarray(mask, dtype=bool)
    area = int(mask.sum())
    if area == 0:
        raise ValueError("mask: cannot measure the convex hull of an empty mask.")
    box = _bounding_box(mask, 1)
    crop = mask[box]
    edge = crop & ~ndimage.binary_erosion(crop)
    rows, cols = np.nonzero(edge)
    points = np.stack([rows, cols], axis=1).astype(np.float64)
    try:
        hull = ConvexHull(points)
    except QhullError:  # degenerate (a line of pixels): the mask is its own hull
        return area
    # count the integer points inside the hull polygon row by row (vertices are in counter-clockwise order)
    vertices = points[hull.vertices]
    start, end = vertices, np.roll(vertices, -1, axis=0)
    row = np.arange(rows.min(), rows.max() + 1, dtype=np.float64)[:, None]
    dr = end[:, 0] - start[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (row - start[:, 0]) / dr
        col = start[:, 1] + t * (end[:, 1] - start[:, 1])
    valid = (dr != 0) & (t >= -1e-9) & (t <= 1.0 + 1e-9)
    flat = (dr == 0) & (row == start[:, 0])  # horizontal edges lying on the row: both end points count
    low = np.minimum(
        np.where(valid, col, np.inf).min(axis=1),
        np.where(flat, np.minimum(start[:, 1], end[:, 1]), np.inf).min(axis=1),
    )
    high = np.maximum(
        np.where(valid, col, -np.inf).max(axis=1),
        np.where(flat, np.maximum(start[:, 1], end[:, 1]), -np.inf).max(axis=1),
    )
    counts = np.floor(high + 1e-9) - np.ceil(low - 1e-9) + 1.0
    total = int(np.where(np.isfinite(counts), np.maximum(counts, 0.0), 0.0).sum())
    return max(total, area)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Convert a float image in [0, 1] to uint8 by clipping and rounding half to even (``np.rint``).

    Args:
        image: float array, any shape; values outside [0, 1] are clipped.

    Returns:
        uint8 array of the same shape.
    """
    return np.rint(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
