# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Synthetic frontal chest X-ray phantoms with lung-zone lesions and QaTa-COV19-style sentences.

The phantom imitates a PA chest radiograph: dark air outside the body, soft tissue, two dark lung fields, the
mediastinum and the heart shadow (drawn towards the patient's left, i.e. the viewer's right), the spine, the
clavicles and rib arcs, vascular markings and noise. One to four soft opacities ("infected areas") are drawn
inside the lungs; they are the mask. Some are faint (low contrast) but still described. Zero to two
lesion-like distractors (same kind of opacity, NOT in the mask, NOT described) are drawn only in lung zones that
hold no real lesion, so the sentence carries information that the image alone does not.

Zone geometry (shared by the renderer, the sentence and any check of it; see :func:`lung_zone_edges`):

* Left/right are from the **viewer's perspective**, as in QaTa-COV19's text: the "left lung" is the lung on the
  left half of the image as displayed (column index ``< image_size // 2``), the "right lung" the other one.
  The lungs never reach the midline, so the split is unambiguous.
* The lung band spans rows ``LUNG_BAND = (0.12, 0.88)`` of the image height (the lungs are drawn inside it);
  it is cut into three equal horizontal zones: upper, middle, lower. Rows above the band count as upper, rows
  below it as lower. A lesion involves a zone when ANY of its mask pixels lies in that zone's rows; the
  renderer rejects lesions covering less than 15% of their area in a zone they touch, so no lesion merely
  grazes a boundary (the description survives mild resizing).
* :func:`lung_zone_map` writes this geometry out: the drawn lung fields labelled by lung and zone
  (:data:`LUNG_ZONE_LABELS`), returned as ``ChestXraySample.lung_zones`` without any further random draw, so the
  image, mask and sentence of a seed are unchanged; the text-mask consistency metric
  (:mod:`common.metrics.text_consistency`) reads it as the image's lung fields.
* The sentence (see :mod:`common.data.synthetic_text`) counts connected lesions (4- and 8-connectivity agree:
  lesions are kept at least 2 pixels apart) and lists, per lung, the union of its lesions' zones.

Acquisition styles ("sites", :data:`CXR_SITES`) change gamma, contrast, offset, blur and noise level, and one
adds a burnt-in marker, as different hospitals' radiographs would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .synthetic_draw import blob_field, dilate, largest_component, random_harmonics, smooth_noise, to_uint8
from .synthetic_text import LUNG_ZONES, LUNGS, describe_lung_lesions

__all__ = [
    "CXR_SITES",
    "CXR_SITE_STYLES",
    "LUNG_BAND",
    "LUNG_ZONE_LABELS",
    "MIN_ZONE_FRACTION",
    "LungLesion",
    "LungDistractor",
    "ChestXraySample",
    "lung_zone_edges",
    "lesion_zones",
    "lung_zone_map",
    "render_chest_xray",
]

LUNG_BAND: tuple[float, float] = (0.12, 0.88)
"""Top and bottom of the lung band, as fractions of the image height; cut into three equal zones."""

LUNG_ZONE_LABELS: dict[tuple[str, str], int] = {
    (lung, zone): 1 + 3 * i + j for i, lung in enumerate(LUNGS) for j, zone in enumerate(LUNG_ZONES)
}
"""Values of the lung zone map (:func:`lung_zone_map`): ``("left", "upper") -> 1``, ``("left", "middle") -> 2``,
``("left", "lower") -> 3``, ``("right", "upper") -> 4`` ... ``("right", "lower") -> 6``; 0 outside the lungs."""

MIN_ZONE_FRACTION: float = 0.15
"""Smallest share of a lesion's pixels allowed in a zone it touches (renderer rejection rule)."""

CXR_SITE_STYLES: dict[str, dict[str, float]] = {
    # reference digital radiograph
    "site_0": {"gamma": 1.0, "contrast": 1.0, "offset": 0.0, "blur": 0.0, "noise": 0.010, "marker": 0.0},
    # high-contrast, brighter processing
    "site_1": {"gamma": 0.75, "contrast": 1.15, "offset": -0.05, "blur": 0.0, "noise": 0.015, "marker": 0.0},
    # washed-out portable AP film: low contrast, soft
    "site_2": {"gamma": 1.4, "contrast": 0.70, "offset": 0.12, "blur": 1.2, "noise": 0.020, "marker": 0.0},
    # noisy computed radiography with a burnt-in side marker
    "site_3": {"gamma": 1.0, "contrast": 0.90, "offset": 0.03, "blur": 0.6, "noise": 0.035, "marker": 1.0},
}
"""Acquisition style of each site: ``out = offset + contrast * in ** gamma``, then Gaussian blur (sigma in pixels
at 256 px, scaled with the image size), additive Gaussian noise (std on the [0, 1] scale) and an optional bright
marker block in the top-right corner."""

CXR_SITES: tuple[str, ...] = tuple(CXR_SITE_STYLES)
"""Site names: ``site_0`` .. ``site_3``."""


@dataclass
class LungLesion:
    """A real lesion (infected area): in the mask and in the sentence.

    Attributes:
        lung: ``"left"`` or ``"right"`` (viewer's perspective).
        zones: zones the lesion touches, in ``upper, middle, lower`` order.
        contrast: peak opacity added on the [0, 1] intensity scale, before the site style.
        faint: whether the lesion was drawn with low contrast (< 0.08).
        mask: boolean ``(H, W)`` mask of this lesion alone.
    """

    lung: str
    zones: tuple[str, ...]
    contrast: float
    faint: bool
    mask: np.ndarray = field(repr=False)


@dataclass
class LungDistractor:
    """A lesion-like opacity that is NOT a lesion: outside the mask and in a zone the sentence does not name.

    Attributes:
        lung: ``"left"`` or ``"right"`` (viewer's perspective).
        zone: the single zone holding it; no real lesion of the same lung touches this zone.
        contrast: peak opacity added on the [0, 1] intensity scale, before the site style.
        mask: boolean ``(H, W)`` footprint of the opacity (its core dilated by the blur reach).
    """

    lung: str
    zone: str
    contrast: float
    mask: np.ndarray = field(repr=False)


@dataclass
class ChestXraySample:
    """One rendered chest X-ray phantom.

    Attributes:
        image: uint8 ``(H, W)`` grayscale image.
        mask: uint8 ``(H, W)`` mask, 255 on lesions and 0 elsewhere.
        lesions: the real lesions, one per connected component of ``mask``.
        distractors: the lesion-like distractors (not in ``mask``, not described).
        sentence: the QaTa-style description of ``lesions``.
        site: the acquisition style used, one of :data:`CXR_SITES`.
        lung_zones: uint8 ``(H, W)`` lung zone map of the drawn lungs (:func:`lung_zone_map`, values
            :data:`LUNG_ZONE_LABELS`); every lesion pixel lies in it, in the zone its sentence names.
    """

    image: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    lesions: list[LungLesion]
    distractors: list[LungDistractor]
    sentence: str
    site: str
    lung_zones: np.ndarray | None = field(default=None, repr=False)


def lung_zone_edges(image_size: int) -> tuple[int, int]:
    """Row indices where the middle and the lower lung zones start.

    The lung band ``LUNG_BAND = (0.12, 0.88)`` (fractions of the height) is cut into three equal zones.

    Args:
        image_size: image height in pixels (>= 1).

    Returns:
        ``(middle_start, lower_start)``: rows ``< middle_start`` are upper, rows in
        ``[middle_start, lower_start)`` middle, rows ``>= lower_start`` lower. Each is
        ``round(image_size * (top + k * (bottom - top) / 3))`` for ``k = 1, 2``.
    """
    top, bottom = LUNG_BAND
    third = (bottom - top) / 3.0
    return int(round(image_size * (top + third))), int(round(image_size * (top + 2.0 * third)))


def _zone_fractions(mask: np.ndarray) -> np.ndarray:
    """Share of a mask's pixels in the upper, middle and lower zone rows."""
    edges = lung_zone_edges(mask.shape[0])
    rows = mask.sum(axis=1)
    counts = np.array([rows[: edges[0]].sum(), rows[edges[0] : edges[1]].sum(), rows[edges[1] :].sum()], float)
    total = counts.sum()
    return counts / total if total > 0 else counts


def lesion_zones(component: np.ndarray) -> tuple[str, tuple[str, ...]]:
    """Lung and zones of one connected lesion, by the zone geometry of this module.

    Args:
        component: boolean ``(H, W)`` mask of one lesion (square image), non-empty, on one side of the midline.

    Returns:
        ``(lung, zones)``: ``lung`` is ``"left"`` when the lesion lies in columns ``< W // 2`` (viewer's left),
        else ``"right"``; ``zones`` are the zones whose rows hold any lesion pixel, in ``upper, middle, lower``
        order.

    Raises:
        ValueError: when ``component`` is empty or crosses the midline column ``W // 2``.
    """
    component = np.asarray(component, dtype=bool)
    cols = np.nonzero(component.any(axis=0))[0]
    if cols.size == 0:
        raise ValueError("component: the lesion mask is empty.")
    midline = component.shape[1] // 2
    if cols[0] < midline <= cols[-1]:
        raise ValueError(f"component: the lesion crosses the midline column {midline}.")
    lung = "left" if cols[-1] < midline else "right"
    fractions = _zone_fractions(component)
    return lung, tuple(zone for zone, share in zip(LUNG_ZONES, fractions) if share > 0)


def lung_zone_map(lungs: np.ndarray) -> np.ndarray:
    """The lung zone map of a lung field mask, by the zone geometry of this module.

    Args:
        lungs: boolean ``(H, W)`` mask of both lung fields (square image); neither reaches the midline.

    Returns:
        uint8 ``(H, W)``: 0 outside the lungs, else :data:`LUNG_ZONE_LABELS` of ``(lung, zone)``, the lung being
        ``"left"`` in columns ``< W // 2`` (viewer's left) and the zone given by the rows of
        :func:`lung_zone_edges`, exactly as :func:`lesion_zones` assigns a lesion pixel.

    Raises:
        ValueError: when ``lungs`` is not 2D.
    """
    lungs = np.asarray(lungs, dtype=bool)
    if lungs.ndim != 2:
        raise ValueError(f"lungs must be a 2D mask, got shape {lungs.shape}.")
    height, width = lungs.shape
    middle_start, lower_start = lung_zone_edges(height)
    zone_of_row = np.zeros(height, dtype=np.uint8)
    zone_of_row[middle_start:lower_start] = 1
    zone_of_row[lower_start:] = 2
    lung_of_col = (np.arange(width) >= width // 2).astype(np.uint8)
    labels = 1 + 3 * lung_of_col[None, :] + zone_of_row[:, None]
    return np.where(lungs, labels, 0).astype(np.uint8)


@dataclass
class _Anatomy:
    lungs: np.ndarray  # bool (H, W), both lungs
    lung_side: dict[str, tuple[float, float]]  # lung -> (centre column, half width) in pixels
    base: np.ndarray  # float (H, W) image without lesions


def _draw_anatomy(rng: np.random.Generator, size: int) -> _Anatomy:
    axis = (np.arange(size, dtype=np.float64) + 0.5) / size
    ys, xs = axis[:, None], axis[None, :]  # broadcastable row / column coordinates (fractions)
    scale = size / 256.0
    dist_mid = np.abs(xs - 0.5)

    # body outline: narrower at the neck, soft edge
    half_width = 0.46 - 0.26 * np.clip((0.13 - ys) / 0.13, 0.0, 1.0) + rng.uniform(-0.015, 0.015)
    body = np.clip((half_width - dist_mid) / 0.012, 0.0, 1.0)

    # lungs: apex-rounded fields with a diaphragm dome, minus the heart
    top = LUNG_BAND[0] + 0.01 + rng.uniform(0.0, 0.015)
    bottom = LUNG_BAND[1] - 0.02 - rng.uniform(0.0, 0.015)
    t = np.clip((ys - top) / (bottom - top), 0.0, 1.0)
    apex = np.sin(0.5 * np.pi * np.clip(t / 0.42, 0.0, 1.0)) ** 0.6
    lungs = np.zeros((size, size), dtype=bool)
    lung_side = {}
    for lung, sign in (("left", -1.0), ("right", 1.0)):
        centre = 0.5 + sign * (0.205 + rng.uniform(-0.01, 0.01))
        width = 0.165 + rng.uniform(-0.012, 0.012)
        dome = bottom - 0.07 * np.clip(1.0 - ((xs - centre) / width) ** 2, 0.0, 1.0)
        lungs |= (np.abs(xs - centre) <= width * apex) & (ys >= top) & (ys <= dome)
        lung_side[lung] = (centre * size, width * size)
    heart_field = blob_field(
        size,
        ((0.675 + rng.uniform(-0.02, 0.02)) * size, (0.55 + rng.uniform(-0.015, 0.015)) * size),
        ((0.14 + rng.uniform(-0.01, 0.01)) * size, (0.19 + rng.uniform(-0.015, 0.015)) * size),
        angle=rng.uniform(-0.3, -0.1),
    )
    heart = heart_field <= 1.0
    lungs &= ~heart

    edge_sigma = max(1.0, 1.5 * scale)
    soft = ndimage.gaussian_filter(np.stack([lungs, heart]).astype(np.float64), sigma=(0, edge_sigma, edge_sigma))
    lung_soft, heart_soft = soft[0], soft[1]

    tissue = 0.06 + 0.50 * body
    tissue += 0.10 * body * np.clip((ys - 0.80) / 0.15, 0.0, 1.0)  # abdomen below the diaphragm
    tissue += 0.05 * body * np.clip((dist_mid - 0.30) / 0.15, 0.0, 1.0)  # lateral soft tissue
    # mediastinum above the heart and the spine
    tissue += (0.10 * np.clip((0.065 - dist_mid) / 0.01, 0.0, 1.0) + 0.05 * np.exp(-((dist_mid / 0.022) ** 2))) * body
    # vascular markings, denser near the hila
    hilum = np.exp(-(((dist_mid - 0.11) / 0.12) ** 2)) * np.exp(-(((ys - 0.47) / 0.2) ** 2))
    vessels = np.clip(smooth_noise(rng, size, max(4, int(28 * scale))), 0.0, None)
    lung_density = -0.33 * (1.0 - 0.25 * np.clip((ys - 0.55) / 0.3, 0.0, 1.0)) + (0.03 + 0.06 * hilum) * vessels
    # posterior rib arcs (a warped periodic pattern)
    warp = ys + 0.35 * dist_mid - 1.1 * dist_mid * dist_mid
    period = 0.08 + rng.uniform(-0.004, 0.004)
    phase = (warp - rng.uniform(0.0, period)) / period
    ribs = np.clip((np.cos(2.0 * np.pi * phase) - 0.6) / 0.4, 0.0, 1.0)
    ribs *= np.clip((warp - 0.08) / 0.04, 0.0, 1.0) * np.clip((0.80 - warp) / 0.05, 0.0, 1.0)
    ribs *= np.clip((dist_mid - 0.05) / 0.03, 0.0, 1.0) * body
    image = tissue + lung_soft * (lung_density + 0.045 * ribs) + 0.02 * ribs + 0.07 * heart_soft
    # clavicles (only the top rows are touched)
    rows = slice(0, int(0.3 * size))
    clavicle_row = 0.135 + rng.uniform(-0.01, 0.01) + 0.35 * (dist_mid - 0.2) ** 2
    clavicles = np.exp(-(((ys[rows] - clavicle_row) / 0.013) ** 2))
    clavicles *= np.clip((dist_mid - 0.05) / 0.03, 0.0, 1.0) * np.clip((0.36 - dist_mid) / 0.04, 0.0, 1.0)
    image[rows] += 0.09 * clavicles * body[rows]
    # low-frequency density variation
    image += 0.02 * smooth_noise(rng, size, 6) * body
    return _Anatomy(lungs=lungs, lung_side=lung_side, base=image)


def _place_blob(
    rng: np.random.Generator,
    size: int,
    row_range: tuple[float, float],
    lung_centre: float,
    lung_width: float,
    radii: tuple[float, float],
    roughness: float,
) -> np.ndarray:
    """Boolean blob centred in ``row_range`` (pixels) inside the given lung's columns."""
    harmonics = random_harmonics(rng, roughness)
    shrink = 1.0 + float(np.abs(harmonics[:, 1]).sum())
    ry, rx = max(radii[0] / shrink, 1.2), max(radii[1] / shrink, 1.2)
    centre_row = 0.5 * (row_range[0] + row_range[1]) + rng.uniform(-0.15, 0.15) * (row_range[1] - row_range[0] - 2 * ry)
    centre_col = lung_centre + rng.uniform(-0.7, 0.7) * max(lung_width - rx, 0.0)
    field_ = blob_field(size, (centre_row, centre_col), (ry, rx), angle=rng.uniform(-0.3, 0.3), harmonics=harmonics)
    return field_ <= 1.0


def render_chest_xray(rng: np.random.Generator, image_size: int = 256, site: str = "site_0") -> ChestXraySample:
    """Render one chest X-ray phantom, its lesion mask and its QaTa-style sentence.

    Args:
        rng: the random generator to draw from (its state fully determines the sample).
        image_size: height and width in pixels, >= 32. Defaults to 256.
        site: acquisition style, one of :data:`CXR_SITES` (``"site_0"`` .. ``"site_3"``). Defaults to ``"site_0"``.

    Returns:
        A :class:`ChestXraySample`: uint8 image and {0, 255} mask of shape ``(image_size, image_size)``, 1 to 4
        real lesions with their lung and zones, 0 to 2 distractors, the sentence and the site.

    Raises:
        ValueError: when ``image_size < 32`` or ``site`` is unknown.

    Examples::

        >>> sample = render_chest_xray(np.random.default_rng(0), 64, "site_1")
        >>> sample.image.shape, sample.mask.dtype, sample.sentence.endswith("lung.")
        ((64, 64), dtype('uint8'), True)
    """
    if int(image_size) != image_size or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32, got {image_size!r}.")
    if site not in CXR_SITE_STYLES:
        raise ValueError(f"site must be one of {CXR_SITES}, got {site!r}.")
    size = int(image_size)
    scale = size / 256.0
    anatomy = _draw_anatomy(rng, size)
    edges = lung_zone_edges(size)
    zone_rows = {"upper": (0.0, float(edges[0])), "middle": (float(edges[0]), float(edges[1]))}
    zone_rows["lower"] = (float(edges[1]), float(size))
    band_top, band_bottom = LUNG_BAND[0] * size, LUNG_BAND[1] * size
    zone_height = (band_bottom - band_top) / 3.0
    min_area = max(5, int(0.0015 * size * size))
    gap = 2

    lesions: list[LungLesion] = []
    occupied = np.zeros((size, size), dtype=bool)
    wanted = int(rng.choice([1, 2, 3, 4], p=[0.4, 0.3, 0.2, 0.1]))
    for _ in range(wanted):
        for _attempt in range(30):
            lung = LUNGS[int(rng.integers(0, 2))]
            span = int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))
            start = int(rng.integers(0, 4 - span))
            rows = (band_top + start * zone_height, band_top + (start + span) * zone_height)
            half = 0.5 * (rows[1] - rows[0])
            ry = half * (rng.uniform(0.55, 0.92) if span > 1 else rng.uniform(0.3, 0.75))
            centre, width = anatomy.lung_side[lung]
            rx = min(size * rng.uniform(0.035, 0.09), 0.8 * width)
            blob = _place_blob(rng, size, rows, centre, width, (ry, rx), roughness=0.12)
            candidate = largest_component(blob & anatomy.lungs)
            area = int(candidate.sum())
            if area < min_area or (candidate & occupied).any():
                continue
            shares = _zone_fractions(candidate)
            if np.any((shares > 0) & (shares < MIN_ZONE_FRACTION)):
                continue
            faint = bool(rng.random() < 0.25)
            contrast = rng.uniform(0.045, 0.07) if faint else rng.uniform(0.10, 0.20)
            lung_name, zones = lesion_zones(candidate)
            lesions.append(LungLesion(lung_name, zones, float(contrast), faint, candidate))
            occupied |= dilate(candidate, gap + 1)
            break
    if not lesions:  # fallback that always fits: a small disk in the middle of the left lung's middle zone
        centre, width = anatomy.lung_side["left"]
        disk = blob_field(size, (0.5 * (edges[0] + edges[1]), centre), (0.3 * zone_height, 0.5 * width)) <= 1.0
        candidate = largest_component(disk & anatomy.lungs)
        lung_name, zones = lesion_zones(candidate)
        lesions.append(LungLesion(lung_name, zones, 0.15, False, candidate))
        occupied |= dilate(candidate, gap + 1)

    # distractors: lesion-like opacities in zones of a lung that hold no real lesion of that lung
    blur_reach = int(np.ceil(2.5 * max(0.8, 1.6 * scale)))
    involved = {(les.lung, zone) for les in lesions for zone in les.zones}
    free = [(lung, zone) for lung in LUNGS for zone in LUNG_ZONES if (lung, zone) not in involved]
    distractors: list[LungDistractor] = []
    distractor_cores: list[np.ndarray] = []
    wanted_distractors = min(int(rng.choice([0, 1, 2], p=[0.35, 0.4, 0.25])), len(free))
    for _ in range(wanted_distractors):
        for _attempt in range(20):
            lung, zone = free[int(rng.integers(0, len(free)))]
            lo, hi = zone_rows[zone]
            lo, hi = max(lo, band_top), min(hi, band_bottom)
            centre, width = anatomy.lung_side[lung]
            radius = size * rng.uniform(0.02, 0.05)
            radii = (min(radius * rng.uniform(0.8, 1.3), 0.45 * (hi - lo)), min(radius, 0.8 * width))
            core = largest_component(_place_blob(rng, size, (lo, hi), centre, width, radii, 0.1) & anatomy.lungs)
            if core.sum() < min_area:
                continue
            footprint = dilate(core, blur_reach)
            rows = np.nonzero(footprint.any(axis=1))[0]
            z_lo, z_hi = zone_rows[zone]
            if rows[0] < z_lo + 1 or rows[-1] >= z_hi - 1 or (footprint & occupied).any():
                continue
            if lesion_zones(core)[0] != lung:
                continue
            contrast = float(rng.uniform(0.07, 0.18))
            distractors.append(LungDistractor(lung, zone, contrast, footprint))
            distractor_cores.append(core)
            occupied |= footprint
            break

    # draw opacities: mottled, soft-edged, confined to the lungs
    weights = np.zeros((size, size))
    for les in lesions:
        weights[les.mask] = les.contrast
    core_sigma = max(0.8, 1.6 * scale)
    for dis, core in zip(distractors, distractor_cores):
        weights[core] = dis.contrast
    mottle = 1.0 + 0.3 * smooth_noise(rng, size, max(4, int(40 * scale)))
    opacity = ndimage.gaussian_filter(weights * mottle, sigma=core_sigma)
    image = anatomy.base + opacity

    style = CXR_SITE_STYLES[site]
    image = style["offset"] + style["contrast"] * np.clip(image, 0.0, 1.0) ** style["gamma"]
    if style["blur"] > 0:
        image = ndimage.gaussian_filter(image, sigma=style["blur"] * scale)
    image = image + style["noise"] * rng.standard_normal((size, size))
    if style["marker"] > 0:
        side = max(3, int(0.05 * size))
        r0, c0 = int(0.03 * size), size - int(0.03 * size) - side
        image[r0 : r0 + side, c0 : c0 + side] = 0.95

    mask = np.zeros((size, size), dtype=np.uint8)
    for les in lesions:
        mask[les.mask] = 255
    sentence = describe_lung_lesions([(les.lung, les.zones) for les in lesions])
    zones = lung_zone_map(anatomy.lungs)  # no random draw: the image, mask and sentence are unchanged
    return ChestXraySample(to_uint8(image), mask, lesions, distractors, sentence, site, zones)
