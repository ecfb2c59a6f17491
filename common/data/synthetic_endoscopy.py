# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Synthetic RGB endoscopy phantoms with one lesion each and MAdapter-style sentences.

The phantom imitates a colonoscopy frame: pinkish mucosa with low-frequency colour variation, ring-shaped folds
around a dark lumen, a thin vessel network, and exactly one lesion of one of the five classes of the MCDRL paper
(section 3: polyps, tumors, inflammation, nodules, cysts), each with its own appearance:

* ``polyp``: a raised, shaded dome slightly redder than the mucosa; smooth or partially smooth (granular on one
  side); circular, elliptical or lobulated (irregular).
* ``tumor``: a large lobulated dark red-purple mass with a rough surface and whitish fibrin (ulcer) patches.
* ``inflammation``: a flat, patchy, bright red area with a soft edge, red granular dots and no vessels.
* ``nodule``: a small, sharp-edged, pale yellowish-white round bump.
* ``cyst``: a translucent bluish dome with a bright rim and a strong glossy highlight.

Five sites (:data:`ENDOSCOPY_SITES`) reproduce the confounder categories of the MCDRL paper, section 4.2.1:
view quality (blur), illumination (dim, uneven lighting, vignetting, over-exposure), imaging technique
(an NBI-like green-blue rendering), distance (only indirectly: lesion sizes vary at every site, and site_3's
defocus and over-exposure imitate a close-up) and surface interference (specular reflections, mucus, bubbles,
blood). A site changes the appearance only; the one exception is site_2's circular field of view, whose black
corners clip a lesion reaching into them (the mask and the sentence are then those of the visible part).

The sentence (see :mod:`common.data.synthetic_text`) is computed from the FINAL mask by
:func:`measure_lesion_mask`: size from the area fraction, shape from eccentricity and solidity, position from the
centroid in a 3x3 grid. The renderer retries a few times to avoid values close to a threshold (so words stay
stable under mild resizing), but whatever is kept is described by its measurement, so text and mask always agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .synthetic_draw import blob_field, filled_convex_area, largest_component, random_harmonics, smooth_noise, to_uint8
from .synthetic_text import (
    ECCENTRICITY_ELLIPTICAL_FROM,
    LESION_CLASSES,
    SIZE_THRESHOLDS,
    SOLIDITY_IRREGULAR_BELOW,
    describe_endoscopy_lesion,
    position_word,
    shape_word,
    size_word,
)

__all__ = [
    "ENDOSCOPY_SITES",
    "ENDOSCOPY_SITE_STYLES",
    "LesionMeasurement",
    "EndoscopySample",
    "measure_lesion_mask",
    "render_endoscopy",
]

# fmt: off
ENDOSCOPY_SITE_STYLES: dict[str, dict[str, float]] = {
    # white-light reference: mild vignetting, a few reflections
    "site_0": {"nbi": 0, "gain": 1.0, "vignette": 0.25, "light_shift": 0.0, "blur": 0.0, "noise": 0.010,
               "speculars": 3, "mucus": 0, "blood": 0, "fov": 0, "warm": 0.0},
    # narrow-band-imaging-like: green-blue rendering, dark brown vessels
    "site_1": {"nbi": 1, "gain": 1.0, "vignette": 0.30, "light_shift": 0.0, "blur": 0.0, "noise": 0.015,
               "speculars": 3, "mucus": 0, "blood": 0, "fov": 0, "warm": 0.0},
    # dim, uneven (off-centre) lighting, strong vignetting, sensor noise, circular field of view
    "site_2": {"nbi": 0, "gain": 0.7, "vignette": 0.60, "light_shift": 0.25, "blur": 0.0, "noise": 0.030,
               "speculars": 2, "mucus": 0, "blood": 0, "fov": 1, "warm": 0.0},
    # close-up, defocused and over-exposed with a warm tint
    "site_3": {"nbi": 0, "gain": 1.2, "vignette": 0.15, "light_shift": 0.0, "blur": 1.8, "noise": 0.010,
               "speculars": 5, "mucus": 0, "blood": 0, "fov": 0, "warm": 0.08},
    # surface interference: many specular reflections, mucus strands and bubbles, blood smears
    "site_4": {"nbi": 0, "gain": 1.0, "vignette": 0.25, "light_shift": 0.0, "blur": 0.0, "noise": 0.015,
               "speculars": 14, "mucus": 1, "blood": 1, "fov": 0, "warm": 0.0},
}
# fmt: on
"""Appearance of each site: ``nbi`` green-blue colour transform, ``gain`` global brightness, ``vignette`` radial
fall-off strength, ``light_shift`` off-centre light, ``blur`` Gaussian sigma in pixels at 256 px (scaled with the
size), ``noise`` std of additive noise, ``speculars`` number of highlights, ``mucus``/``blood`` overlays on/off,
``fov`` black corners outside a circular field of view, ``warm`` red-up/blue-down tint."""

ENDOSCOPY_SITES: tuple[str, ...] = tuple(ENDOSCOPY_SITE_STYLES)
"""Site names: ``site_0`` .. ``site_4``."""

_SIZE_RANGES = {"small": (0.008, 0.024), "medium": (0.038, 0.08), "large": (0.12, 0.24)}
_CLASS_SIZES = {
    "polyp": ({"small": 0.4, "medium": 0.4, "large": 0.2}),
    "tumor": ({"small": 0.0, "medium": 0.4, "large": 0.6}),
    "inflammation": ({"small": 0.1, "medium": 0.5, "large": 0.4}),
    "nodule": ({"small": 0.7, "medium": 0.3, "large": 0.0}),
    "cyst": ({"small": 0.4, "medium": 0.5, "large": 0.1}),
}
_CLASS_SHAPES = {
    "polyp": {"circular": 0.35, "elliptical": 0.35, "irregular": 0.3},
    "tumor": {"circular": 0.0, "elliptical": 0.0, "irregular": 1.0},
    "inflammation": {"circular": 0.0, "elliptical": 0.0, "irregular": 1.0},
    "nodule": {"circular": 1.0, "elliptical": 0.0, "irregular": 0.0},
    "cyst": {"circular": 0.5, "elliptical": 0.5, "irregular": 0.0},
}
_MUCOSA_RGB = np.array([0.86, 0.50, 0.44])
_VESSEL_ABSORPTION = np.array([0.22, 0.45, 0.40])


@dataclass
class LesionMeasurement:
    """Measurements of a lesion mask and the words they map to.

    Attributes:
        area_fraction: lesion pixels / image pixels.
        centroid: ``(row, column)`` of the centroid as fractions ``(mean index + 0.5) / size``.
        eccentricity: eccentricity of the ellipse with the same second moments (0 = disk).
        solidity: area / filled convex hull area (see :func:`common.data.synthetic_draw.filled_convex_area`).
        size: ``small`` / ``medium`` / ``large`` (:func:`common.data.synthetic_text.size_word`).
        shape: ``circular`` / ``elliptical`` / ``irregular`` (:func:`common.data.synthetic_text.shape_word`).
        position: 3x3 grid cell (:func:`common.data.synthetic_text.position_word`).
    """

    area_fraction: float
    centroid: tuple[float, float]
    eccentricity: float
    solidity: float
    size: str
    shape: str
    position: str


@dataclass
class EndoscopySample:
    """One rendered endoscopy phantom.

    Attributes:
        image: uint8 ``(H, W, 3)`` RGB image.
        mask: uint8 ``(H, W)`` mask, 255 on the lesion and 0 elsewhere (one connected component).
        lesion_class: one of :data:`common.data.synthetic_text.LESION_CLASSES`.
        surface: the surface word used in the sentence (drawn that way).
        measurement: the measurement of ``mask`` that the sentence was written from.
        sentence: the MAdapter-style description.
        site: the acquisition style used, one of :data:`ENDOSCOPY_SITES`.
    """

    image: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    lesion_class: str
    surface: str
    measurement: LesionMeasurement
    sentence: str
    site: str


def measure_lesion_mask(mask: np.ndarray) -> LesionMeasurement:
    """Measure a lesion mask and map the measurements to MAdapter-style words.

    Args:
        mask: 2D array; non-zero pixels are the lesion (any number of pixels >= 1). The image is the array.

    Returns:
        A :class:`LesionMeasurement`. The eccentricity uses the pixel-coordinate covariance plus 1/12 on the
        diagonal (the extent of a pixel), so a single pixel is a disk.

    Raises:
        ValueError: when ``mask`` is not 2D or has no foreground pixel.
    """
    mask = np.asarray(mask) > 0
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D, got shape {mask.shape}.")
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("mask: the lesion mask is empty.")
    height, width = mask.shape
    area_fraction = rows.size / float(height * width)
    centroid = ((rows.mean() + 0.5) / height, (cols.mean() + 0.5) / width)
    cov = np.cov(np.stack([rows, cols]).astype(np.float64), bias=True).reshape(2, 2) + np.eye(2) / 12.0
    low, high = np.linalg.eigvalsh(cov)
    eccentricity = float(np.sqrt(max(0.0, 1.0 - low / high)))
    solidity = rows.size / float(filled_convex_area(mask))
    return LesionMeasurement(
        area_fraction=float(area_fraction),
        centroid=(float(centroid[0]), float(centroid[1])),
        eccentricity=eccentricity,
        solidity=float(solidity),
        size=size_word(area_fraction),
        shape=shape_word(eccentricity, min(solidity, 1.0)),
        position=position_word(float(centroid[0]), float(centroid[1])),
    )


def _is_clear(m: LesionMeasurement) -> bool:
    """Whether no measurement sits close to a word threshold (words then survive mild resizing)."""
    if any(abs(m.area_fraction - t) < 0.12 * t for t in SIZE_THRESHOLDS):
        return False
    if any(abs(c - t) < 0.025 for c in m.centroid for t in (1.0 / 3.0, 2.0 / 3.0)):
        return False
    if abs(m.solidity - SOLIDITY_IRREGULAR_BELOW) < 0.03:
        return False
    return m.shape == "irregular" or abs(m.eccentricity - ECCENTRICITY_ELLIPTICAL_FROM) >= 0.08


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _fov(size: int) -> np.ndarray:
    axis = (np.arange(size, dtype=np.float64) + 0.5) / size - 0.5
    return (axis[:, None] ** 2 + axis[None, :] ** 2) <= 0.62**2


def _lesion_shape(
    rng: np.random.Generator, size: int, lesion_class: str, target_size: str, target_shape: str, fov: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """One attempt at a lesion: ``(field, mask)`` where field <= 1 inside (normalised radius)."""
    area = rng.uniform(*_SIZE_RANGES[target_size]) * size * size
    if target_shape == "circular":
        ratio, rough = rng.uniform(0.88, 1.0), 0.02
    elif target_shape == "elliptical":
        ratio, rough = rng.uniform(0.45, 0.68), 0.02
    else:
        ratio, rough = rng.uniform(0.6, 1.0), 0.45
    harmonics = random_harmonics(rng, rough, orders=4)
    # mean squared boundary radius of the harmonic blob is about 1 + sum(a^2) / 2
    r_major = np.sqrt(area / (np.pi * ratio * (1.0 + 0.5 * float((harmonics[:, 1] ** 2).sum()))))
    radii = (r_major, r_major * ratio)
    reach = r_major * (1.0 + float(np.abs(harmonics[:, 1]).sum()))
    low, high = min(reach + 2.0, size / 2.0), max(size - reach - 2.0, size / 2.0)
    # a uniformly drawn 3x3 cell, away from the grid lines (the centroid is close to the centre), kept inside
    cell = rng.integers(0, 3, size=2)
    centre = tuple(float(np.clip(rng.uniform(k / 3.0 + 0.05, (k + 1) / 3.0 - 0.05) * size, low, high)) for k in cell)
    field_ = blob_field(size, centre, radii, angle=rng.uniform(0.0, np.pi), harmonics=harmonics)
    mask = field_ <= 1.0
    if lesion_class == "inflammation":  # patchy, ragged edge: near the boundary keep only where a smooth field is high
        patches = smooth_noise(rng, size, max(4, int(round(1.2 * size / r_major))))
        mask &= patches > 3.0 * (field_ - 0.7)
    if fov is not None:
        mask &= fov
    return field_, largest_component(mask)


def _mucosa(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mucosa RGB (H, W, 3) with folds, lumen and vessels; the vessel map; the plain lit mucosa colour."""
    scale = size / 256.0
    axis = (np.arange(size, dtype=np.float64) + 0.5) / size
    ys, xs = axis[:, None], axis[None, :]
    base = _MUCOSA_RGB + rng.uniform(-0.04, 0.04, size=3)
    tint = smooth_noise(rng, size, 5)
    lumen = rng.uniform(0.2, 0.8, size=2)
    radius = np.sqrt((ys - lumen[0]) ** 2 + (xs - lumen[1]) ** 2)
    wobble = smooth_noise(rng, size, 6)
    folds = np.sin(2.0 * np.pi * (radius * rng.uniform(4.0, 7.0) + 0.2 * wobble))
    depth = 1.0 - 0.85 * np.exp(-((radius / rng.uniform(0.08, 0.14)) ** 2))
    shade = (1.0 + 0.11 * folds) * depth * (1.0 + 0.05 * tint)
    vnoise = smooth_noise(rng, size, max(6, int(26 * scale)))
    vessels = np.exp(-((vnoise / 0.12) ** 2)) * np.clip(smooth_noise(rng, size, 5) + 0.3, 0.0, 1.0)
    vessels *= np.clip(radius / 0.2, 0.0, 1.0)
    plain = base[None, None, :] * (1.0 + 0.05 * tint)[:, :, None]
    rgb = base[None, None, :] * shade[:, :, None]
    rgb *= 1.0 - vessels[:, :, None] * _VESSEL_ABSORPTION
    return rgb, vessels, plain


def _paint_lesion(
    rng: np.random.Generator,
    rgb: np.ndarray,
    vessels: np.ndarray,
    plain: np.ndarray,
    field_: np.ndarray,
    mask: np.ndarray,
    lesion_class: str,
    surface: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend the lesion into the mucosa; only the lesion's padded bounding box is computed.

    Returns the new RGB image and the lesion's soft alpha (H, W)."""
    size = mask.shape[0]
    scale = size / 256.0
    sigma = max(1.0, 2.0 * scale) if lesion_class == "inflammation" else max(0.7, 1.2 * scale)
    fine_full = smooth_noise(rng, size, max(8, int(60 * scale)))
    fibrin_full = smooth_noise(rng, size, max(6, int(30 * scale))) if lesion_class == "tumor" else None
    angle = rng.uniform(0.0, 2.0 * np.pi) if surface == "partially smooth" else 0.0
    rows, cols = np.nonzero(mask)
    pad = int(np.ceil(4.0 * sigma)) + 2
    r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, size)
    c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, size)
    box = (slice(r0, r1), slice(c0, c1))
    m, fld, fine = mask[box], field_[box], fine_full[box]
    base, flat, vess = rgb[box], plain[box], vessels[box]

    soft = ndimage.gaussian_filter(m.astype(np.float64), sigma=sigma)
    if lesion_class == "nodule":
        soft = np.clip(2.0 * soft - 0.5, 0.0, 1.0)  # sharper edge
    dome = np.sqrt(np.clip(1.0 - np.minimum(fld, 1.0) ** 2, 0.0, 1.0)) * soft
    grad_y, grad_x = np.gradient(dome)
    radius_px = max(2.0, np.sqrt(rows.size / np.pi))
    light = np.clip(-(grad_y + grad_x) * radius_px, -1.5, 1.5)  # light from the top-left
    if lesion_class == "polyp":
        texture = np.ones_like(soft)
        if surface == "partially smooth":  # granular on one side of a line through the centroid
            side = (np.arange(r0, r1)[:, None] - rows.mean()) * np.cos(angle)
            side = side + (np.arange(c0, c1)[None, :] - cols.mean()) * np.sin(angle)
            texture = 1.0 + 0.16 * fine * (side > 0)
        colour = flat * np.array([1.04, 0.80, 0.82]) * (texture * (1.0 + 0.25 * light) + 0.12 * dome)[:, :, None]
    elif lesion_class == "tumor":
        colour = np.array([0.60, 0.25, 0.30]) * (1.0 + 0.22 * fine + 0.25 * light)[:, :, None]
        fibrin = np.clip((fibrin_full[box] - 0.9) / 0.3, 0.0, 1.0) * np.clip((1.0 - fld) / 0.3, 0.0, 1.0)
        colour = colour * (1.0 - fibrin[:, :, None]) + np.array([0.93, 0.87, 0.70]) * fibrin[:, :, None]
    elif lesion_class == "inflammation":
        dots = np.clip((fine - 1.1) / 0.4, 0.0, 1.0)
        red = np.array([0.93, 0.24, 0.22]) * ((1.0 + 0.05 * fine) * (1.0 - 0.45 * dots))[:, :, None]
        no_vessels = base / (1.0 - vess[:, :, None] * _VESSEL_ABSORPTION)  # vessels vanish under the redness
        colour = 0.3 * no_vessels + 0.7 * red
    elif lesion_class == "nodule":
        colour = np.array([0.94, 0.83, 0.66]) * (1.0 + 0.30 * light + 0.10 * dome)[:, :, None]
    else:  # cyst: translucent, bright rim, glossy highlight
        rim = np.exp(-(((fld - 0.93) / 0.06) ** 2))
        gloss = np.clip(np.exp(-((fld / 0.35) ** 2)) * np.clip(light, 0.0, None) * 2.0, 0.0, 0.8)
        colour = (0.55 * np.array([0.68, 0.70, 0.90]) + 0.45 * flat) * (1.0 + 0.15 * light)[:, :, None]
        colour = colour + (0.25 * rim + gloss)[:, :, None]
        soft = soft * 0.92
    out = rgb.copy()
    alpha = soft[:, :, None]
    out[box] = base * (1.0 - alpha) + colour * alpha
    soft_full = np.zeros((size, size))
    soft_full[box] = soft
    return out, soft_full


def _window(size: int, centre: np.ndarray, reach: float) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """Square window of half-width ``reach`` (pixels) around ``centre``, clipped to the image, with the row and
    column offsets of its pixel centres from ``centre`` (broadcastable)."""
    r0, r1 = max(int(centre[0] - reach), 0), min(int(np.ceil(centre[0] + reach)) + 1, size)
    c0, c1 = max(int(centre[1] - reach), 0), min(int(np.ceil(centre[1] + reach)) + 1, size)
    dy = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5 - centre[0]
    dx = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5 - centre[1]
    return (slice(r0, r1), slice(c0, c1)), dy, dx


def _apply_site(rng: np.random.Generator, rgb: np.ndarray, site: str, lesion_soft: np.ndarray) -> np.ndarray:
    style = ENDOSCOPY_SITE_STYLES[site]
    size = rgb.shape[0]
    scale = size / 256.0
    axis = (np.arange(size, dtype=np.float64) + 0.5) / size
    ys, xs = axis[:, None], axis[None, :]
    # surface interference first (it lies on the mucosa), kept light over the lesion
    if style["blood"]:
        blood = np.clip((smooth_noise(rng, size, 7) - 1.2) / 0.5, 0.0, 1.0) * 0.75 * (1.0 - 0.7 * lesion_soft)
        rgb = rgb * (1.0 - blood[:, :, None]) + np.array([0.42, 0.04, 0.05]) * blood[:, :, None]
    if style["mucus"]:
        strands = np.clip((smooth_noise(rng, size, 9) - 1.0) / 0.6, 0.0, 1.0) * 0.45 * (1.0 - 0.6 * lesion_soft)
        rgb = rgb * (1.0 - strands[:, :, None]) + np.array([0.95, 0.93, 0.80]) * strands[:, :, None]
        for _ in range(int(rng.integers(3, 8))):  # bubbles: bright rings
            centre = rng.uniform(0.1, 0.9, size=2) * size
            r = rng.uniform(0.01, 0.035) * size
            width = 0.25 * r + 0.5
            box, dy, dx = _window(size, centre, r + 3.0 * width)
            ring = np.exp(-(((np.sqrt(dy**2 + dx**2) - r) / width) ** 2)) * 0.5
            rgb[box] += ring[:, :, None]
    if style["nbi"]:
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        rgb = np.stack([0.25 * r + 0.35 * g, 0.55 * r + 0.25 * g, 0.45 * r + 0.55 * b], axis=-1)
    # illumination
    light = np.array([0.5, 0.5]) + style["light_shift"] * rng.uniform(-1.0, 1.0, size=2)
    dist2 = ((ys - light[0]) ** 2 + (xs - light[1]) ** 2) / 0.5
    rgb = rgb * (style["gain"] * (1.0 - style["vignette"] * dist2))[:, :, None]
    if style["warm"]:
        rgb = rgb * np.array([1.0 + style["warm"], 1.0, 1.0 - 1.5 * style["warm"]])
    # specular highlights: small saturated ellipses
    for _ in range(int(style["speculars"])):
        centre = rng.uniform(0.05, 0.95, size=2) * size
        radii = rng.uniform(0.004, 0.018, size=2) * size
        box, dy, dx = _window(size, centre, 2.5 * float(radii.max()))
        spot = np.exp(-((dy / radii[0]) ** 2 + (dx / radii[1]) ** 2) * 2.0)
        rgb[box] += 1.2 * spot[:, :, None]
    if style["blur"] > 0:
        sigma = style["blur"] * scale
        rgb = ndimage.gaussian_filter(rgb, sigma=(sigma, sigma, 0))
    rgb = rgb + style["noise"] * rng.standard_normal(rgb.shape)
    if style["fov"]:
        rgb = rgb * _fov(size)[:, :, None]
    return rgb


def render_endoscopy(
    rng: np.random.Generator, image_size: int = 256, site: str = "site_0", lesion_class: str = "polyp"
) -> EndoscopySample:
    """Render one endoscopy phantom with exactly one lesion, its mask and its MAdapter-style sentence.

    Args:
        rng: the random generator to draw from (its state fully determines the sample).
        image_size: height and width in pixels, >= 32. Defaults to 256.
        site: acquisition style, one of :data:`ENDOSCOPY_SITES` (``"site_0"`` .. ``"site_4"``).
            Defaults to ``"site_0"``.
        lesion_class: one of ``"polyp"``, ``"tumor"``, ``"inflammation"``, ``"nodule"``, ``"cyst"``.
            Defaults to ``"polyp"``.

    Returns:
        An :class:`EndoscopySample`: uint8 RGB image ``(image_size, image_size, 3)``, {0, 255} mask with one
        connected lesion, the measurement the sentence was written from, the sentence and the site.

    Raises:
        ValueError: when ``image_size < 32``, or ``site`` or ``lesion_class`` is unknown.

    Examples::

        >>> sample = render_endoscopy(np.random.default_rng(0), 64, "site_1", "cyst")
        >>> sample.image.shape, sample.sentence.startswith("One ")
        ((64, 64, 3), True)
    """
    if int(image_size) != image_size or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32, got {image_size!r}.")
    if site not in ENDOSCOPY_SITE_STYLES:
        raise ValueError(f"site must be one of {ENDOSCOPY_SITES}, got {site!r}.")
    if lesion_class not in LESION_CLASSES:
        raise ValueError(f"lesion_class must be one of {LESION_CLASSES}, got {lesion_class!r}.")
    size = int(image_size)
    fov = _fov(size) if ENDOSCOPY_SITE_STYLES[site]["fov"] else None
    target_size = _choice(rng, _CLASS_SIZES[lesion_class])
    target_shape = _choice(rng, _CLASS_SHAPES[lesion_class])
    best = None
    for _attempt in range(8):
        field_, mask = _lesion_shape(rng, size, lesion_class, target_size, target_shape, fov)
        if not mask.any():
            continue
        measurement = measure_lesion_mask(mask)
        matches = measurement.size == target_size and measurement.shape == target_shape
        score = int(matches) + int(_is_clear(measurement))
        if best is None or score > best[0]:
            best = (score, field_, mask, measurement)
        if score == 2:
            break
    if best is None:  # cannot happen for size >= 32, kept as a guard: a central disk
        field_ = blob_field(size, (size / 2.0, size / 2.0), (size / 8.0, size / 8.0))
        mask = field_ <= 1.0
        best = (0, field_, mask, measure_lesion_mask(mask))
    _, field_, mask, measurement = best
    surface = {"polyp": "smooth", "tumor": "ulcerated", "inflammation": "granular"}.get(lesion_class, "smooth")
    if lesion_class == "polyp" and rng.random() < 0.4:
        surface = "partially smooth"
    rgb, vessels, plain = _mucosa(rng, size)
    rgb, soft = _paint_lesion(rng, rgb, vessels, plain, field_, mask, lesion_class, surface)
    rgb = _apply_site(rng, rgb, site, soft)
    sentence = describe_endoscopy_lesion(
        measurement.size, measurement.shape, surface, lesion_class, measurement.position
    )
    out_mask = np.where(mask, 255, 0).astype(np.uint8)
    return EndoscopySample(to_uint8(rgb), out_mask, lesion_class, surface, measurement, sentence, site)
