# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Sentence grammars of the synthetic data sets, written to match the real text annotations they imitate.

Two grammars are implemented, both as pure functions of what was actually drawn (never of what the
renderer intended), so a sentence always agrees with its mask:

* **QaTa-COV19 (LViT release)** -- chest X-ray text. Grammar, as observed in the public QaTa test text
  (``shared/fixtures/qata_text_sample/Test_text_first_rows.csv``)::

      <Unilateral|Bilateral> pulmonary infection, <count> infected area[s], <zones> left lung[ and <zones> right lung].

  ``count`` is the number word of the number of infected areas (connected lesions): one, two, three, four...;
  ``area`` is singular only for one. ``Unilateral`` when only one lung holds lesions, ``Bilateral`` when both do.
  The left lung is always listed first. ``zones`` are the involved zones of that lung, in the fixed order
  ``upper middle lower`` (QaTa writes e.g. "upper middle left lung", "middle lower right lung"), and ``all``
  when the three zones are involved (QaTa: "all left lung"). Left and right are from the VIEWER's perspective,
  as in QaTa (fixtures README): the "left lung" is the one on the left half of the displayed image.
  The QaTa typos ("midlle", "oneinfected", missing spaces) are not reproduced.

* **MAdapter (MICCAI 2024) polyp annotations** -- endoscopy text. Grammar, as in ``Kvasir_train.csv``::

      One <size>,<shape>,<surface> <lesion noun> on the <position>.

  Attributes are joined by a comma WITHOUT a space (MAdapter's style). ``size`` is small/medium/large,
  ``shape`` circular/elliptical/irregular, ``surface`` smooth/partially smooth/ulcerated (MAdapter's words) or
  granular (added here for inflammation). ``position`` is a cell of a 3x3 grid: rows top/middle/bottom, columns
  left/middle/right, written "<row> <column>" ("top middle", "bottom left") except the central cell, written
  "center" ("on the center"), as Kvasir_train.csv does (Kvasir_test.csv writes "top center" instead of
  "top middle"; the train spelling is used). The lesion nouns extend MAdapter's "colonic polyp" to the five
  lesion classes of the MCDRL paper (section 3: polyps, tumors, inflammation, nodules, cysts).

The numeric rules that turn a measured mask into words (:func:`size_word`, :func:`shape_word`,
:func:`position_word`) live here too, so readers and tests can apply exactly the same thresholds.
MAdapter did not publish its thresholds; the ones below are this project's, documented in each function.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "COUNT_WORDS",
    "LUNGS",
    "LUNG_ZONES",
    "LESION_CLASSES",
    "LESION_NOUNS",
    "SURFACE_WORDS",
    "SIZE_THRESHOLDS",
    "SOLIDITY_IRREGULAR_BELOW",
    "ECCENTRICITY_ELLIPTICAL_FROM",
    "describe_lung_lesions",
    "describe_endoscopy_lesion",
    "size_word",
    "shape_word",
    "position_word",
]

COUNT_WORDS: tuple[str, ...] = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
"""Number words used by QaTa for the count of infected areas (index ``k`` is the word for ``k + 1``)."""

LUNGS: tuple[str, ...] = ("left", "right")
"""Lung names, from the viewer's perspective (left = small column index), as in QaTa-COV19."""

LUNG_ZONES: tuple[str, ...] = ("upper", "middle", "lower")
"""Lung zones in the order QaTa lists them."""

LESION_CLASSES: tuple[str, ...] = ("polyp", "tumor", "inflammation", "nodule", "cyst")
"""Endoscopy lesion classes, as listed by the MCDRL paper (section 3, problem setting)."""

LESION_NOUNS: dict[str, str] = {
    "polyp": "colonic polyp",
    "tumor": "colonic tumor",
    "inflammation": "inflammatory lesion",
    "nodule": "submucosal nodule",
    "cyst": "mucosal cyst",
}
"""Noun phrase of each lesion class in the endoscopy sentence ("colonic polyp" is MAdapter's own phrase)."""

SURFACE_WORDS: tuple[str, ...] = ("smooth", "partially smooth", "ulcerated", "granular")
"""Surface words: the first three are MAdapter's, ``granular`` is this project's addition for inflammation."""

SIZE_THRESHOLDS: tuple[float, float] = (0.03, 0.10)
"""Area fractions (lesion pixels / image pixels) separating small | medium | large: small ``< 0.03``,
medium ``0.03 <= f < 0.10``, large ``>= 0.10``."""

SOLIDITY_IRREGULAR_BELOW: float = 0.90
"""A lesion whose solidity (area / filled convex hull area) is below this value is ``irregular``."""

ECCENTRICITY_ELLIPTICAL_FROM: float = 0.65
"""A regular lesion whose second-moment eccentricity is at least this value is ``elliptical``, else ``circular``
(0.65 is an axis ratio of about 0.76)."""


def _count_word(count: int) -> str:
    if not 1 <= count <= len(COUNT_WORDS):
        raise ValueError(f"count: the number of lesions must be in 1..{len(COUNT_WORDS)}, got {count}.")
    return COUNT_WORDS[count - 1]


def describe_lung_lesions(lesions: Sequence[tuple[str, Iterable[str]]]) -> str:
    """Write the QaTa-COV19 sentence for a set of lung lesions.

    Args:
        lesions: one ``(lung, zones)`` pair per infected area (connected lesion), in any order. ``lung`` is
            ``"left"`` or ``"right"`` from the viewer's perspective (``"left"`` = the lung on the left half of the
            displayed image); ``zones`` is a non-empty iterable of the zones the lesion touches, each one of
            ``"upper"``, ``"middle"``, ``"lower"``. Between 1 and 10 lesions.

    Returns:
        The sentence, e.g. ``"Unilateral pulmonary infection, one infected area, middle lower left lung."`` or
        ``"Bilateral pulmonary infection, three infected areas, all left lung and upper right lung."``. The
        count word is the number of lesions; each lung lists the union of its lesions' zones.

    Raises:
        ValueError: when ``lesions`` is empty or longer than 10, a lung name or zone name is unknown, or a
            lesion has no zone.

    Examples::

        >>> describe_lung_lesions([("left", ["middle", "lower"])])
        'Unilateral pulmonary infection, one infected area, middle lower left lung.'
        >>> describe_lung_lesions([("right", ["lower"]), ("left", ["upper"])])
        'Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung.'
    """
    count_word = _count_word(len(lesions))
    involved: dict[str, set[str]] = {lung: set() for lung in LUNGS}
    for index, (lung, zones) in enumerate(lesions):
        if lung not in LUNGS:
            raise ValueError(f"lesions[{index}]: lung must be one of {LUNGS}, got {lung!r}.")
        zone_set = set(zones)
        if not zone_set:
            raise ValueError(f"lesions[{index}]: a lesion must touch at least one zone.")
        unknown = zone_set.difference(LUNG_ZONES)
        if unknown:
            raise ValueError(f"lesions[{index}]: zones must be among {LUNG_ZONES}, got {sorted(unknown)}.")
        involved[lung].update(zone_set)
    parts = []
    for lung in LUNGS:
        zones = involved[lung]
        if not zones:
            continue
        zone_text = "all" if len(zones) == len(LUNG_ZONES) else " ".join(z for z in LUNG_ZONES if z in zones)
        parts.append(f"{zone_text} {lung} lung")
    laterality = "Bilateral" if len(parts) == 2 else "Unilateral"
    noun = "area" if len(lesions) == 1 else "areas"
    return f"{laterality} pulmonary infection, {count_word} infected {noun}, {' and '.join(parts)}."


def describe_endoscopy_lesion(size: str, shape: str, surface: str, lesion_class: str, position: str) -> str:
    """Write the MAdapter-style sentence for one endoscopy lesion.

    Args:
        size: ``"small"``, ``"medium"`` or ``"large"`` (see :func:`size_word`).
        shape: ``"circular"``, ``"elliptical"`` or ``"irregular"`` (see :func:`shape_word`).
        surface: one of :data:`SURFACE_WORDS`: ``"smooth"``, ``"partially smooth"``, ``"ulcerated"``,
            ``"granular"``.
        lesion_class: one of :data:`LESION_CLASSES`: ``"polyp"``, ``"tumor"``, ``"inflammation"``,
            ``"nodule"``, ``"cyst"``; written with its noun phrase from :data:`LESION_NOUNS`.
        position: a 3x3 grid cell as returned by :func:`position_word`, e.g. ``"top middle"``, ``"center"``.

    Returns:
        The sentence, e.g. ``"One medium,irregular,smooth colonic polyp on the bottom left."``.

    Raises:
        ValueError: when any argument is not one of its listed values.

    Examples::

        >>> describe_endoscopy_lesion("small", "circular", "smooth", "nodule", "center")
        'One small,circular,smooth submucosal nodule on the center.'
    """
    choices = {
        "size": (size, ("small", "medium", "large")),
        "shape": (shape, ("circular", "elliptical", "irregular")),
        "surface": (surface, SURFACE_WORDS),
        "lesion_class": (lesion_class, LESION_CLASSES),
        "position": (position, _POSITIONS),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}.")
    return f"One {size},{shape},{surface} {LESION_NOUNS[lesion_class]} on the {position}."


def size_word(area_fraction: float) -> str:
    """Size word of a lesion from its area fraction.

    Args:
        area_fraction: lesion pixels divided by image pixels, in [0, 1].

    Returns:
        ``"small"`` below 0.03, ``"medium"`` from 0.03 to below 0.10, ``"large"`` from 0.10
        (:data:`SIZE_THRESHOLDS`).

    Raises:
        ValueError: when ``area_fraction`` is outside [0, 1].
    """
    if not 0.0 <= area_fraction <= 1.0:
        raise ValueError(f"area_fraction must be in [0, 1], got {area_fraction}.")
    if area_fraction < SIZE_THRESHOLDS[0]:
        return "small"
    return "medium" if area_fraction < SIZE_THRESHOLDS[1] else "large"


def shape_word(eccentricity: float, solidity: float) -> str:
    """Shape word of a lesion from two shape measurements of its mask.

    Args:
        eccentricity: eccentricity of the ellipse with the same second moments, ``sqrt(1 - minor**2 / major**2)``
            in [0, 1] (0 for a disk).
        solidity: mask area divided by the area of its filled convex hull, in (0, 1].

    Returns:
        ``"irregular"`` when ``solidity < 0.90`` (:data:`SOLIDITY_IRREGULAR_BELOW`); otherwise ``"elliptical"``
        when ``eccentricity >= 0.65`` (:data:`ECCENTRICITY_ELLIPTICAL_FROM`), else ``"circular"``.

    Raises:
        ValueError: when a value is outside its range.
    """
    if not 0.0 <= eccentricity <= 1.0:
        raise ValueError(f"eccentricity must be in [0, 1], got {eccentricity}.")
    if not 0.0 < solidity <= 1.0 + 1e-9:
        raise ValueError(f"solidity must be in (0, 1], got {solidity}.")
    if solidity < SOLIDITY_IRREGULAR_BELOW:
        return "irregular"
    return "elliptical" if eccentricity >= ECCENTRICITY_ELLIPTICAL_FROM else "circular"


_ROW_WORDS = ("top", "middle", "bottom")
_COL_WORDS = ("left", "middle", "right")
_POSITIONS = tuple("center" if (r, c) == ("middle", "middle") else f"{r} {c}" for r in _ROW_WORDS for c in _COL_WORDS)


def position_word(row_fraction: float, col_fraction: float) -> str:
    """Position of a lesion in the 3x3 grid, from its centroid.

    The image is cut in thirds both ways: a coordinate fraction ``f`` falls in third ``min(floor(3 * f), 2)``
    (0 = top/left, 1 = middle, 2 = bottom/right). The centroid fraction of a mask is
    ``(mean pixel index + 0.5) / size``, so that the image spans exactly [0, 1].

    Args:
        row_fraction: centroid row as a fraction of the image height, in [0, 1] (0 = top).
        col_fraction: centroid column as a fraction of the image width, in [0, 1] (0 = left as displayed).

    Returns:
        ``"<row> <column>"`` with rows ``top``/``middle``/``bottom`` and columns ``left``/``middle``/``right``,
        or ``"center"`` for the central cell (MAdapter's spelling).

    Raises:
        ValueError: when a fraction is outside [0, 1].
    """
    for name, value in (("row_fraction", row_fraction), ("col_fraction", col_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}.")
    row = _ROW_WORDS[min(int(row_fraction * 3.0), 2)]
    col = _COL_WORDS[min(int(col_fraction * 3.0), 2)]
    return "center" if (row, col) == ("middle", "middle") else f"{row} {col}"
