"""Per-object 2D morphometry with ImageJ / BioVoxxel definitions.

Objects are the 8-connected components of a binary mask (or the positive labels of an
instance label image).  Every parameter follows the ImageJ "Analyze Particles"
definitions (plus the three BioVoxxel Extended Particle Analyzer shape descriptors), so
numbers can be compared with a Fiji results table:

========================  =============================================================
key                       definition (pixel units, pixel (r, c) = square [c, c+1]x[r, r+1])
========================  =============================================================
``area``                  pixel count (holes excluded)
``x``, ``y``              mean pixel column / row + 0.5
``perimeter``             ImageJ traced perimeter (``PolygonRoi.getTracedPerimeter``) of
                          the outer outline traced by ``Wand`` from the top-left pixel
``major``, ``minor``      ImageJ ``EllipseFitter``: second moments with +1/12 per pixel,
                          axes rescaled so that pi*major*minor/4 = area
``angle``                 major-axis direction, degrees in [0, 180), counter-clockwise
                          from +x as seen on screen (y down)
``circularity``           4*pi*area/perimeter**2, clamped to 1
``feret``                 largest distance between pixel-corner convex-hull vertices
``feret_x``, ``feret_y``  left end point of that diameter (pixel-corner coordinates)
``feret_angle``           atan2(y1 - y2, x2 - x1) in degrees, [0, 180)
``min_feret``             rotating calipers over the hull (minimum caliper width)
``aspect_ratio``          major / minor
``roundness``             4*area/(pi*major**2)
``solidity``              area / area of the convex hull polygon
``feret_ar``              feret / min_feret (BioVoxxel)
``compactness``           sqrt(4*area/pi) / major (BioVoxxel)
``extent``                area / (bounding-box width * height) (BioVoxxel)
========================  =============================================================

Because ImageJ forces pi*major*minor/4 = area, ``roundness == 1/aspect_ratio`` and
``compactness == sqrt(roundness)`` exactly: those three are one degree of freedom and
must not be counted as independent tests.

Holes: area, centroid and the ellipse use the object's own pixels (holes excluded, as
ImageJ's default "include holes" off); outline, perimeter, hull, Feret and MinFeret use
the outer outline only.  When several objects share one outline tie (equal Feret
diagonals), the pair is chosen in ImageJ's order (counter-clockwise gift-wrap hull
starting at the top-left vertex, first pair wins), so ``feret_angle`` matches too.
"""

from __future__ import annotations

import math

import numpy as np
from rawsigma.analysis.measurement import moments_kernel, outline_kernel
from rawsigma.errors import ImageMismatchError, InputFileError
from scipy import ndimage as ndi

__all__ = [
    "PARAMETERS",
    "IMAGEJ_COLUMNS",
    "GLOBAL_PARAMETERS",
    "as_labels",
    "measure",
    "global_params",
    "traced_outline",
    "traced_perimeter",
    "corner_hull",
]

#: The 19 per-object parameters, in the paper's order.
PARAMETERS: tuple[str, ...] = (
    "area",
    "x",
    "y",
    "perimeter",
    "major",
    "minor",
    "angle",
    "circularity",
    "feret",
    "feret_x",
    "feret_y",
    "feret_angle",
    "min_feret",
    "aspect_ratio",
    "roundness",
    "solidity",
    "feret_ar",
    "compactness",
    "extent",
)

#: ImageJ / BioVoxxel results-table column of each parameter.
IMAGEJ_COLUMNS: dict[str, str] = {
    "area": "Area",
    "x": "X",
    "y": "Y",
    "perimeter": "Perim.",
    "major": "Major",
    "minor": "Minor",
    "angle": "Angle",
    "circularity": "Circ.",
    "feret": "Feret",
    "feret_x": "FeretX",
    "feret_y": "FeretY",
    "feret_angle": "FeretAngle",
    "min_feret": "MinFeret",
    "aspect_ratio": "AR",
    "roundness": "Round",
    "solidity": "Solidity",
    "feret_ar": "FeretAR",
    "compactness": "Compact",
    "extent": "Extent",
}

#: Keys of :func:`global_params`.
GLOBAL_PARAMETERS: tuple[str, ...] = ("count", "total_area")

_HALFPI = 1.5707963267949  # ImageJ EllipseFitter's literal
_TWELFTH = 0.08333333  # ImageJ EllipseFitter's literal for 1/12
_CORNER = 2.0 - math.sqrt(2.0)


def as_labels(labels: np.ndarray, ndim: int = 2) -> np.ndarray:
    """Validate a mask or label image and return integer instance labels.

    Parameters
    ----------
    labels : ndarray
        Boolean mask (objects = connected components with full connectivity: 8 in
        2D, 26 in 3D) or non-negative integer label image (0 = background).
    ndim : int
        Required number of dimensions.

    Returns
    -------
    ndarray of int32 or int64
        Instance labels.

    Raises
    ------
    InputFileError
        Wrong number of dimensions, float or negative labels.
    """
    arr = np.asarray(labels)
    if arr.ndim != ndim:
        raise InputFileError(f"labels: expected a {ndim}D image, got shape {arr.shape}")
    if arr.dtype == bool:
        lab, _ = ndi.label(arr, structure=np.ones((3,) * ndim, bool))
        return lab
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputFileError(
            f"labels: expected a boolean mask or an integer label image, got dtype {arr.dtype}"
        )
    if arr.size and arr.min() < 0:
        raise InputFileError("labels: negative label values")
    if arr.dtype.itemsize > 4 or arr.dtype.kind == "u":
        arr = arr.astype(np.int64, copy=False)
    return arr


def traced_outline(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trace the outer outline of one 8-connected object like ImageJ's ``Wand``.

    Starts right of the first run of the top-most row (the particle analyzer's
    seed), walks the pixel edges with the outside on the left and keeps only the
    vertices where the direction changes (``Wand.traceEdge``, 8-connected).

    Parameters
    ----------
    mask : ndarray of bool, (H, W)
        The object (one 8-connected component; other pixels False).

    Returns
    -------
    xs, ys : ndarray of int64
        Polygon vertices in pixel-corner coordinates of ``mask``.
    """
    m = np.pad(np.asarray(mask, bool), 1)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    grid = m.tolist()
    y0 = int(rows[0])
    x = int(np.argmax(m[y0]))
    while grid[y0][x]:
        x += 1
    # traceEdge(x, y0): pixel (x, y0) is outside -> start downwards from (x, y0 + 1)
    start_x, start_y, start_dir = x, y0 + 1, 3
    y = start_y
    direction = start_dir
    xs: list[int] = []
    ys: list[int] = []

    def inside(vx: int, vy: int, d: int) -> bool:
        d &= 3
        if d == 0:
            return grid[vy][vx]
        if d == 1:
            return grid[vy - 1][vx]
        if d == 2:
            return grid[vy - 1][vx - 1]
        return grid[vy][vx - 1]

    while True:
        new_dir = direction + 1
        while True:
            if inside(x, y, new_dir):
                break
            new_dir -= 1
            if new_dir < direction:
                break
        if new_dir != direction:
            xs.append(x)
            ys.append(y)
        d = new_dir & 3
        if d == 0:
            x += 1
        elif d == 1:
            y -= 1
        elif d == 2:
            x -= 1
        else:
            y += 1
        direction = new_dir
        if x == start_x and y == start_y and (direction & 3) == start_dir:
            break
    if xs[0] != x:
        xs.append(x)
        ys.append(y)
    return np.asarray(xs, np.int64) - 1, np.asarray(ys, np.int64) - 1


def traced_perimeter(xs: np.ndarray, ys: np.ndarray) -> float:
    """ImageJ ``PolygonRoi.getTracedPerimeter`` of a traced outline (pixel units).

    Edge length minus (2 - sqrt 2) per counted corner, where a vertex counts if the
    previous side is longer than one pixel or the previous vertex did not count.
    """
    n = len(xs)
    if n < 4:
        return 0.0
    xs = [int(v) for v in xs]
    ys = [int(v) for v in ys]
    sumdx = sumdy = n_corners = 0
    dx1 = xs[0] - xs[-1]
    dy1 = ys[0] - ys[-1]
    side1 = abs(dx1) + abs(dy1)
    corner = False
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        dx2 = xs[j] - xs[i]
        dy2 = ys[j] - ys[i]
        sumdx += abs(dx1)
        sumdy += abs(dy1)
        side2 = abs(dx2) + abs(dy2)
        if side1 > 1 or not corner:
            corner = True
            n_corners += 1
        else:
            corner = False
        dx1, dy1, side1 = dx2, dy2, side2
    return sumdx + sumdy - n_corners * _CORNER


def _row_corner_points(mask: np.ndarray) -> np.ndarray:
    """Pixel corners of the first and last pixel of every row, (k, 2) as (x, y)."""
    rows = np.flatnonzero(mask.any(axis=1))
    sub = mask[rows]
    first = np.argmax(sub, axis=1)
    last = sub.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)
    r = rows.astype(np.int64)
    xs = np.concatenate([first, first, last + 1, last + 1]).astype(np.int64)
    ys = np.concatenate([r, r + 1, r, r + 1])
    return np.stack([xs, ys], axis=1)


def corner_hull(mask: np.ndarray) -> np.ndarray:
    """Convex hull of the pixel corners of an object, in ImageJ's vertex order.

    Parameters
    ----------
    mask : ndarray of bool, (H, W)

    Returns
    -------
    ndarray of float64, (h, 2)
        Hull vertices (x, y) without collinear points, starting at the top-most,
        then left-most vertex and running counter-clockwise as seen on screen
        (ImageJ ``FloatPolygon.getConvexHull``).
    """
    pts = np.unique(_row_corner_points(np.asarray(mask, bool)), axis=0)  # sorted by x, y
    if len(pts) <= 2:
        return pts.astype(np.float64)
    p = pts.tolist()

    def cross(o, a, b) -> int:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for q in p:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], q) <= 0:
            lower.pop()
        lower.append(q)
    upper: list = []
    for q in reversed(p):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], q) <= 0:
            upper.pop()
        upper.append(q)
    hull = np.asarray(lower[:-1] + upper[:-1], np.float64)  # positive area in (x, y)
    hull = hull[::-1]  # ImageJ: negative signed area in (x, y) = CCW on a y-down screen
    start = np.lexsort((hull[:, 0], hull[:, 1]))[0]
    return np.roll(hull, -start, axis=0)


def _feret(hull: np.ndarray) -> tuple[float, float, float, float, float]:
    """ImageJ ``Roi.getFeretValues``: (feret, angle, min_feret, feret_x, feret_y)."""
    x = hull[:, 0]
    y = hull[:, 1]
    h = len(hull)
    d2 = (x[:, None] - x[None, :]) ** 2 + (y[:, None] - y[None, :]) ** 2
    d2[np.tril_indices(h)] = -1.0
    k = int(np.argmax(d2))  # first maximum in (i, j) loop order, as ImageJ
    p1, p2 = divmod(k, h)
    if x[p1] > x[p2]:
        p1, p2 = p2, p1
    feret = math.sqrt(max(d2.flat[k], 0.0))
    angle = math.degrees(math.atan2(y[p1] - y[p2], x[p2] - x[p1]))
    if angle < 0:
        angle += 180.0
    # rotating calipers: edge (i-1, i), farthest vertex, minimum over edges
    xprev = np.roll(x, 1)
    yprev = np.roll(y, 1)
    xn = y - yprev
    yn = xprev - x
    norm = np.hypot(xn, yn)
    xn = xn / norm
    yn = yn / norm
    dist = (x[None, :] - x[:, None]) * xn[:, None] + (y[None, :] - y[:, None]) * yn[:, None]
    min_feret = float(np.min(np.maximum(dist.max(axis=1), 0.0)))
    return feret, angle, min_feret, float(x[p1]), float(y[p1])


def _shoelace(hull: np.ndarray) -> float:
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def _ellipse(
    n: np.ndarray, sx: np.ndarray, sy: np.ndarray, sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised ImageJ ``EllipseFitter.getEllipseParam`` from pixel sums."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sxx = sxx + _TWELFTH * n
        syy = syy + _TWELFTH * n
        x1 = sx / n
        y1 = sy / n
        u20 = sxx / n - x1 * x1
        u02 = syy / n - y1 * y1
        u11 = sxy / n - x1 * y1
        m4 = 4.0 * np.abs(u02 * u20 - u11 * u11)
        m4 = np.where(m4 < 0.000001, 0.000001, m4)
        a11 = u02 / m4
        a12 = u11 / m4
        a22 = u20 / m4
        tmp = a11 - a22
        tmp = np.where(tmp == 0.0, 0.000001, tmp)
        theta = 0.5 * np.arctan(2.0 * a12 / tmp)
        theta = np.where(theta < 0.0, theta + _HALFPI, theta)
        zero = a12 == 0.0
        swap = zero & (a22 > a11)
        vert = zero & ~(a22 > a11) & (a11 != a22)
        theta = np.where(a12 > 0.0, theta + _HALFPI, theta)
        theta = np.where(swap, 0.0, theta)
        theta = np.where(vert, _HALFPI, theta)
        a11, a22 = np.where(swap, a22, a11), np.where(swap, a11, a22)
        s = np.sin(theta)
        s = np.where(s == 0.0, 0.000001, s)
        z = a12 * np.cos(theta) / s
        major = np.sqrt(1.0 / np.abs(a22 + z))
        minor = np.sqrt(1.0 / np.abs(a11 - z))
        scale = np.sqrt(n / (np.pi * major * minor))
        major = major * scale * 2.0
        minor = minor * scale * 2.0
        angle = 180.0 * theta / np.pi
        angle = np.where(angle == 180.0, 0.0, angle)
    return np.maximum(major, minor), np.minimum(major, minor), angle


def measure(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Measure every object with ImageJ / BioVoxxel definitions.

    Parameters
    ----------
    labels : ndarray, (H, W)
        Boolean mask (objects = 8-connected components) or integer instance labels
        (0 = background; every positive label is one object and should be one
        8-connected component; only the component holding its top-left pixel is
        outlined).

    Returns
    -------
    dict of str to ndarray
        ``"label"`` (int64) and the 19 :data:`PARAMETERS` (float64), one entry per
        object in increasing label order; lengths in pixels, areas in pixels²,
        angles in degrees.  Empty arrays when there are no objects.
    """
    lab = as_labels(labels, 2)
    out: dict[str, np.ndarray] = {"label": np.zeros(0, np.int64)}
    out.update({k: np.zeros(0) for k in PARAMETERS})
    nmax = int(lab.max()) if lab.size else 0
    if nmax == 0:
        return out
    small = lab.astype(np.int32, copy=False) if nmax < 2**31 else lab  # one kernel signature
    # boxes and pixel sums with coordinates local to the bounding box (as EllipseFitter)
    box, count, sums = moments_kernel.label_moments(small, nmax)
    ids = np.flatnonzero(count).astype(np.int64)
    top, left, height, width = box
    n = count[ids]
    sx, sy, sxx, syy, sxy = sums[:, ids]
    major, minor, angle = _ellipse(n, sx, sy, sxx, syy, sxy)

    nv, sumd, corners, vals = outline_kernel.shape_params(small, ids, top, left, height, width)
    # traced_perimeter: (sum |dx| + |dy|) - corners * (2 - sqrt 2), 0 below 4 vertices
    perim = np.where(nv >= 4, sumd.astype(np.float64) - corners.astype(np.float64) * _CORNER, 0.0)
    feret, fangle, minf, fx, fy, hull_area = np.ascontiguousarray(vals.T)

    area = n
    with np.errstate(divide="ignore", invalid="ignore"):
        circ = np.where(perim > 0, np.minimum(4.0 * np.pi * area / perim**2, 1.0), 0.0)
        out = {
            "label": ids,
            "area": area,
            "x": sx / n + left[ids] + 0.5,
            "y": sy / n + top[ids] + 0.5,
            "perimeter": perim,
            "major": major,
            "minor": minor,
            "angle": angle,
            "circularity": circ,
            "feret": feret,
            "feret_x": fx,
            "feret_y": fy,
            "feret_angle": fangle,
            "min_feret": minf,
            "aspect_ratio": major / minor,
            "roundness": 4.0 * area / (np.pi * major**2),
            "solidity": area / hull_area,
            "feret_ar": feret / minf,
            "compactness": np.sqrt(4.0 * area / np.pi) / major,
            "extent": area / (width[ids] * height[ids]),
        }
    return out


def global_params(labels: np.ndarray) -> dict[str, float]:
    """Global parameters of a 2D segmentation.

    Parameters
    ----------
    labels : ndarray, (H, W)
        Boolean mask (8-connected objects) or integer instance labels.

    Returns
    -------
    dict
        ``count`` (number of objects) and ``total_area`` (object pixels, pixels²).
    """
    lab = as_labels(labels, 2)
    present = np.unique(lab)
    count = int(np.count_nonzero(present))
    return {"count": float(count), "total_area": float(np.count_nonzero(lab))}


def check_same_shape(image: np.ndarray, labels: np.ndarray, what: str = "labels") -> None:
    """Raise :class:`ImageMismatchError` if ``labels`` and ``image`` differ in shape."""
    if np.shape(image) != np.shape(labels):
        raise ImageMismatchError(
            f"{what}: shape {np.shape(labels)} does not match the image shape {np.shape(image)}"
        )
