"""Procedural street scenes with Cityscapes train-id labels.

``render_scene(seed, height, width)`` draws a driving image and its per-pixel labels from
a seed alone: a pinhole camera over a flat road with a vanishing point, lanes with
markings, kerbs and sidewalks, facades with windows, walls, fences and hedges, a sky with
clouds, a distant skyline, poles with traffic signs and lights, trees, parked and moving
cars, trucks, buses and trams, pedestrians, cyclists and motorcyclists, cast shadows,
haze, texture grain and sensor noise. Block complexity (Eq. 1 of the SegBlocks paper)
therefore varies the way it does in real driving images: large flat sky and road areas,
detailed objects and edges.

Geometry. World axes are X to the right, Y up from the road surface and Z forward from
the camera; ``s`` is the position along the road. A scene is an infinite road: its
content is generated in 60 m segments, each from its own random stream, so that
``render_scene(seed, h, w, t)`` for growing ``t`` (metres driven) shows one consistent
world with the camera moving forward; other road users move at their own speeds.

Determinism. The layout (everything that defines the labels) depends only on ``seed``
and ``t``, never on the resolution: the same seed at 512x1024 and 1024x2048 shows the
same scene (focal length and principal point scale with the width, the horizon with the
height). Texture grain and sensor noise are drawn per frame from ``(seed, t, window)``.
Rendering a ``window`` of a virtual frame yields exactly the labels of that crop of the
full frame, at the cost of the window's pixels only (used for fast training crops).

Labels are Cityscapes train ids (see :mod:`segblocks_core.classes`); 255 (ignore) only
marks the ego vehicle's bonnet, which appears in some scenes as in Cityscapes.

Everything is vectorised numpy: a 1024x2048 frame renders in about 0.3 s on one core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Optional

import numpy as np

__all__ = ["Camera", "Scene", "render_scene", "render_sequence", "IGNORE_ID"]

(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION, TERRAIN,
 SKY, PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)
IGNORE_ID = 255

SEGMENT = 60.0          # metres of road per random stream
Z_NEAR = 1.2            # nearest depth at which an object is drawn
Z_OBJECTS = 200.0       # farthest depth at which objects are drawn
Z_PLANES = 700.0        # facades farther away give way to the distant skyline
_OFFSET = 1 << 24       # keeps segment indices non-negative for SeedSequence

# plane lot kinds
_GAP, _BUILDING, _HEDGE, _WALL, _FENCE = range(5)

_F32 = np.float32


# ---------------------------------------------------------------------------------------
# public types
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    """Pinhole camera over a flat road, in pixel coordinates of the full (virtual) frame.

    Attributes:
        height, width: frame size in pixels.
        focal: focal length in pixels.
        cx: column of the principal point; the road's vanishing point lies on it.
        horizon: row of the horizon.
        mount: camera height above the road in metres.
    """

    height: int
    width: int
    focal: float
    cx: float
    horizon: float
    mount: float

    def project(self, x, y, z):
        """World point(s) ``(x, y, z)`` in metres -> pixel ``(u, v)`` (column, row)."""
        return self.cx + self.focal * x / z, self.horizon + self.focal * (self.mount - y) / z


@dataclass
class Scene:
    """One rendered frame.

    Attributes:
        image (np.ndarray[H, W, 3] uint8): RGB image.
        label (np.ndarray[H, W] uint8): Cityscapes train ids, 255 = ignore.
        seed: scene seed.
        t: metres the camera has driven since ``t = 0``.
        camera: the camera of the full frame.
        window: ``(top, left, height, width)`` of the rendered part of the full frame.
    """

    image: np.ndarray
    label: np.ndarray
    seed: int
    t: float
    camera: Camera
    window: tuple[int, int, int, int]


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------


def _hash01(a, b, salt: int) -> np.ndarray:
    """Pseudo-random values in [0, 1) for integer lattice points ``(a, b)`` (vectorised,
    stateless: the same point always gets the same value)."""
    h = (np.asarray(a, np.int64) * 73856093) ^ (np.asarray(b, np.int64) * 19349663) ^ (int(salt) * 83492791)
    h &= 0xFFFFFFFF
    h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & 0xFFFFFFFF
    h = ((h ^ (h >> 12)) * 0x297A2D39) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0xFFFFFF).astype(_F32) * _F32(1.0 / 16777216.0)


_TILE = np.random.default_rng(20240607).random((256, 256), dtype=_F32)


def _tile(ix, iy, salt: int = 0) -> np.ndarray:
    """Pseudo-random values in [0, 1) for integer lattice points, from a fixed 256x256
    tile (much cheaper than hashing on large pixel arrays; repeats every 256 cells)."""
    return _TILE[(np.asarray(ix, np.int64) + salt) & 255, (np.asarray(iy, np.int64) + 3 * salt) & 255]


def _smooth(t):
    return t * t * (3 - 2 * t)


def _value_noise_1d(x: np.ndarray, scale: float, salt: int, lo: float = -200.0, hi: float = 200.0) -> np.ndarray:
    """Smooth 1-D value noise in [0, 1) with features of ``scale`` metres on ``x`` clipped to
    ``[lo, hi]`` (a table lookup, so it is cheap on 2-D arrays)."""
    n0 = int(math.floor(lo / scale)) - 1
    table = _hash01(np.arange(n0, int(math.ceil(hi / scale)) + 2), 7, salt)
    p = np.clip(x, lo, hi) * _F32(1.0 / scale) - _F32(n0)
    i = p.astype(np.int64)
    f = _smooth((p - i).astype(_F32))
    a = table[i]
    return a + (table[i + 1] - a) * f


def _lerp_index(coords: np.ndarray, lo: float, step: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lattice cell and smooth-step weight of ``coords`` on the lattice ``lo + k*step``."""
    p = np.clip((coords - lo) / step, 0, n - 1.001)
    i = p.astype(np.int64)
    return i, _smooth(p - i).astype(_F32)


def _angular_noise(ax: np.ndarray, ay: np.ndarray, cells: float, seed_key) -> np.ndarray:
    """Smooth 2-D noise in [0, 1) over view angles (static for a scene, independent of the
    resolution): separable smooth-step interpolation of random lattice values. Gathers,
    not matrix products, so it never starts BLAS threads inside data-loader workers."""
    n = int(3.2 * cells) + 3
    grid = np.random.default_rng(seed_key).random((n, n), dtype=_F32)
    iy, fy = _lerp_index(ay, -1.6, 1.0 / cells, n)
    ix, fx = _lerp_index(ax, -1.6, 1.0 / cells, n)
    rows = grid[iy] * (1 - fy)[:, None] + grid[iy + 1] * fy[:, None]          # [h, n]
    left = rows[:, ix]
    return left + (rows[:, ix + 1] - left) * fx[None, :]


def _rgb(*c) -> np.ndarray:
    return np.array(c, _F32)


def _jitter(rng, colour, amount=0.12) -> np.ndarray:
    return np.clip(np.asarray(colour, _F32) * _F32(1 + rng.uniform(-amount, amount)) +
                   rng.uniform(-10, 10, 3).astype(_F32), 0, 255).astype(_F32)


_FACADE_COLOURS = np.array([
    (200, 190, 170), (170, 160, 150), (150, 90, 70), (215, 210, 200), (120, 110, 105),
    (190, 170, 120), (160, 150, 140), (110, 70, 60), (225, 220, 205), (140, 140, 150),
    (180, 120, 90), (90, 90, 95),
], _F32)
_CAR_COLOURS = np.array([
    (235, 235, 235), (25, 25, 28), (150, 152, 158), (95, 97, 100), (160, 20, 25),
    (20, 40, 110), (40, 70, 140), (200, 200, 205), (60, 60, 62), (120, 30, 40),
    (30, 80, 60), (180, 150, 100), (210, 120, 30),
], _F32)
_CLOTHES = np.array([
    (20, 20, 25), (60, 60, 70), (30, 40, 90), (140, 30, 35), (200, 200, 200), (90, 70, 50),
    (40, 80, 50), (150, 130, 110), (230, 180, 60), (100, 40, 110), (50, 90, 140), (10, 10, 10),
], _F32)
_SKIN = np.array([(230, 190, 160), (200, 150, 120), (150, 100, 70), (100, 65, 45)], _F32)
_GREENS = np.array([(70, 100, 35), (55, 85, 40), (90, 115, 45), (45, 70, 30), (100, 110, 50)], _F32)


# ---------------------------------------------------------------------------------------
# scene layout: everything drawn from the seed alone
# ---------------------------------------------------------------------------------------


@dataclass
class _Layout:
    seed: int
    kind: str
    fscale: float
    yaw: float
    pitch: float
    mount: float
    lanes: list            # (x centre, speed u, direction +1 same / -1 oncoming)
    markings: list         # (x, width, dash period (0 = solid), dash duty, colour)
    xl: float
    xr: float
    parking: tuple         # x centre of the parking strip per side or None
    sidewalk: tuple        # width per side (left, right)
    verge: tuple
    verge_class: tuple
    front_prob: tuple      # probability of a wall/fence/hedge lot per side
    back_mix: tuple        # plane lot kinds of the back plane: probabilities (gap, building, hedge)
    building_height: tuple
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    cloud_amount: float
    cloud_colour: np.ndarray
    sun_side: int
    shade: float
    shadow_k: float
    shadow_strength: float
    gain: float
    white_balance: np.ndarray
    haze: np.ndarray
    visibility: float
    asphalt: np.ndarray
    asphalt_tex: float
    paving: np.ndarray
    kerb: np.ndarray
    terrain: np.ndarray
    distant_kind: int
    distant_colour: np.ndarray
    hood: float
    hood_colour: np.ndarray
    noise_sigma: float
    vehicle_gap: float
    person_density: float
    pole_spacing: float
    tree_spacing: tuple
    tram: bool
    crosswalk_prob: float


@lru_cache(maxsize=128)
def _layout(seed: int) -> _Layout:
    rng = np.random.default_rng([seed, 1])
    kind = str(rng.choice(["urban", "suburban", "open"], p=[0.5, 0.32, 0.18]))
    lw = rng.uniform(2.9, 3.7)
    n_same = int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))
    n_opp = int(rng.choice([0, 1, 2], p=[0.2, 0.55, 0.25]))
    ego = int(rng.integers(0, n_same))
    dx = rng.uniform(-0.35, 0.35)
    same = [(ego - i) * lw - dx for i in range(n_same)]
    opp = [same[-1] - (j + 1) * lw for j in range(n_opp)]
    lanes = [(x, 1.0 + rng.uniform(-0.12, 0.08) if i == ego else rng.uniform(0.7, 1.3), 1)
             for i, x in enumerate(same)]
    lanes += [(x, rng.uniform(-1.3, -0.7), -1) for x in opp]
    xr = same[0] + lw / 2
    xl = (opp[-1] if opp else same[-1]) - lw / 2
    white = _rgb(235, 235, 230) * _F32(rng.uniform(0.8, 1.0))
    markings = [(same[i] - lw / 2, 0.13, 9.0, 0.33, white) for i in range(n_same - 1)]
    if n_opp:
        centre = same[-1] - lw / 2
        colour = _rgb(230, 190, 40) if rng.random() < 0.15 else white
        if rng.random() < 0.35:
            markings += [(centre - 0.12, 0.1, 0.0, 1.0, colour), (centre + 0.12, 0.1, 0.0, 1.0, colour)]
        else:
            markings.append((centre, 0.14, 0.0 if rng.random() < 0.7 else 6.0, 0.5, colour))
    markings += [(opp[j] - lw / 2, 0.13, 9.0, 0.33, white) for j in range(n_opp - 1)]
    parking = [None, None]
    if kind != "open" and rng.random() < 0.5:
        parking[1] = xr + 1.1
        xr += 2.2
    if kind == "urban" and rng.random() < (0.3 if n_opp else 0.5):
        parking[0] = xl - 1.1
        xl -= 2.2
    if rng.random() < 0.5:
        if parking[1] is None:
            markings.append((xr - 0.35, 0.13, 0.0, 1.0, white))
        if parking[0] is None:
            markings.append((xl + 0.35, 0.13, 0.0, 1.0, white))

    if kind == "urban":
        sidewalk = tuple(rng.uniform(2.0, 5.5, 2))
        verge = tuple(np.where(rng.random(2) < 0.2, rng.uniform(1.0, 4.0, 2), 0.0))
        verge_class = tuple(int(c) for c in rng.choice([SIDEWALK, TERRAIN], 2, p=[0.5, 0.5]))
        back_mix = (0.06, 0.86, 0.08)
        building_height = (9.0, 30.0)
        front_prob = tuple(rng.uniform(0.0, 0.25, 2))
    elif kind == "suburban":
        sidewalk = tuple(rng.uniform(1.5, 3.0, 2))
        verge = tuple(rng.uniform(1.0, 7.0, 2))
        verge_class = (TERRAIN, TERRAIN)
        back_mix = (0.12, 0.45, 0.43)
        building_height = (5.0, 13.0)
        front_prob = tuple(rng.uniform(0.15, 0.6, 2))
    else:
        sidewalk = tuple(np.where(rng.random(2) < 0.6, rng.uniform(1.2, 2.5, 2), 0.6))
        verge = tuple(rng.uniform(3.0, 15.0, 2))
        verge_class = (TERRAIN, TERRAIN)
        back_mix = (0.35, 0.1, 0.55)
        building_height = (4.0, 9.0)
        front_prob = tuple(rng.uniform(0.1, 0.5, 2))

    overcast = rng.random() < 0.3
    if overcast:
        grey = rng.uniform(170, 225)
        sky_horizon = _rgb(grey, grey, grey + 5)
        sky_zenith = sky_horizon * _F32(rng.uniform(0.8, 0.95))
        cloud_amount = rng.uniform(0.2, 0.5)
    else:
        sky_horizon = _rgb(rng.uniform(175, 215), rng.uniform(195, 225), rng.uniform(220, 245))
        sky_zenith = _rgb(rng.uniform(50, 110), rng.uniform(100, 150), rng.uniform(170, 230))
        cloud_amount = rng.uniform(0.0, 0.9)
    sun_side = 0 if overcast else int(rng.choice([-1, 1]))
    gain = rng.uniform(0.75, 1.15)
    return _Layout(
        seed=seed, kind=kind,
        fscale=rng.uniform(0.8, 1.15), yaw=rng.uniform(-0.05, 0.05), pitch=rng.uniform(-0.01, 0.06),
        mount=rng.uniform(1.25, 1.75),
        lanes=lanes, markings=markings, xl=xl, xr=xr, parking=tuple(parking),
        sidewalk=sidewalk, verge=verge, verge_class=verge_class, front_prob=front_prob,
        back_mix=back_mix, building_height=building_height,
        sky_horizon=sky_horizon, sky_zenith=sky_zenith, cloud_amount=cloud_amount,
        cloud_colour=_rgb(1, 1, 1) * _F32(rng.uniform(200, 250)),
        sun_side=sun_side, shade=rng.uniform(0.88, 0.95) if overcast else rng.uniform(0.55, 0.8),
        shadow_k=rng.uniform(0.3, 1.2), shadow_strength=rng.uniform(0.45, 0.7),
        gain=gain, white_balance=_rgb(*rng.uniform(0.92, 1.08, 3)),
        haze=sky_horizon.copy(), visibility=rng.uniform(250, 1500),
        asphalt=_rgb(1, 1, 1) * _F32(rng.uniform(70, 120)) + _rgb(*rng.uniform(-4, 4, 3)),
        asphalt_tex=rng.uniform(0.03, 0.08),
        paving=_rgb(*(np.array([1, 1, 1]) * rng.uniform(130, 185) + rng.uniform(-12, 12, 3))),
        kerb=_rgb(1, 1, 1) * _F32(rng.uniform(150, 200)),
        terrain=_jitter(rng, [(110, 130, 60), (130, 120, 80), (90, 120, 55)][rng.integers(0, 3)], 0.15),
        distant_kind=BUILDING if kind == "urban" or rng.random() < 0.3 else VEGETATION,
        distant_colour=_rgb(*rng.uniform(100, 160, 3)),
        hood=rng.uniform(0.05, 0.11) if rng.random() < 0.35 else 0.0,
        hood_colour=_CAR_COLOURS[rng.integers(0, len(_CAR_COLOURS))] * _F32(0.6),
        noise_sigma=rng.uniform(1.0, 3.0),
        vehicle_gap={"urban": rng.uniform(5, 30), "suburban": rng.uniform(12, 60),
                     "open": rng.uniform(25, 120)}[kind],
        person_density={"urban": rng.uniform(0.02, 0.3), "suburban": rng.uniform(0.0, 0.08),
                         "open": rng.uniform(0.0, 0.02)}[kind],
        pole_spacing=rng.uniform(14, 40),
        tree_spacing=tuple(rng.uniform(6, 20, 2) if kind != "urban" or rng.random() < 0.5 else (0.0, 0.0)),
        tram=kind == "urban" and rng.random() < 0.15,
        crosswalk_prob={"urban": 0.35, "suburban": 0.12, "open": 0.0}[kind],
    )


def _camera(lay: _Layout, height: int, width: int) -> Camera:
    f = lay.fscale * width
    return Camera(height=height, width=width, focal=f, cx=width / 2 + lay.yaw * f,
                  horizon=height / 2 - lay.pitch * f, mount=lay.mount)


def _side_edge(lay: _Layout, side: int) -> float:
    """|x| of the road edge on side 0 (left) / 1 (right)."""
    return -lay.xl if side == 0 else lay.xr


def _plane_x(lay: _Layout, side: int, back: bool) -> float:
    sign = -1.0 if side == 0 else 1.0
    d = _side_edge(lay, side) + lay.sidewalk[side] + (lay.verge[side] if back else 0.0)
    return sign * (d + (0.05 if back else 0.0))


# ---------------------------------------------------------------------------------------
# facade planes: lots along the road on each side
# ---------------------------------------------------------------------------------------


@dataclass
class _Lots:
    s0: np.ndarray
    kind: np.ndarray
    height: np.ndarray
    colour: np.ndarray     # [n, 3]
    p: np.ndarray          # [n, 8] kind-specific parameters


@lru_cache(maxsize=4096)
def _segment_lots(seed: int, side: int, back: bool, k: int) -> list:
    lay = _layout(seed)
    rng = np.random.default_rng([lay.seed, 2, side, int(back), k + _OFFSET])
    s, end = k * SEGMENT, (k + 1) * SEGMENT
    lots = []
    while s < end:
        p = np.zeros(8, _F32)
        if back:
            kind = int(rng.choice([_GAP, _BUILDING, _HEDGE], p=lay.back_mix))
        else:
            kind = int(rng.choice([_GAP, _WALL, _FENCE, _HEDGE],
                                  p=[1 - lay.front_prob[side]] + [lay.front_prob[side] / 3] * 3))
        if kind == _BUILDING:
            length = rng.uniform(7, 32)
            height = rng.uniform(*lay.building_height)
            colour = _jitter(rng, _FACADE_COLOURS[rng.integers(0, len(_FACADE_COLOURS))])
            p[:] = (rng.uniform(2.9, 3.6), rng.uniform(1.6, 3.2), rng.uniform(0.35, 0.7),
                    rng.uniform(0.4, 0.65), rng.uniform(0, 1), rng.uniform(3.2, 4.5),
                    float(rng.random() < 0.55), rng.integers(0, 1 << 20))
        elif kind == _HEDGE:
            length = rng.uniform(6, 40)
            tall = back and rng.random() < 0.75
            height = rng.uniform(5, 14) if tall else rng.uniform(0.8, 2.2)
            colour = _jitter(rng, _GREENS[rng.integers(0, len(_GREENS))], 0.2)
            p[:] = (rng.uniform(0.1, 0.3) * height, rng.uniform(2, 9), rng.uniform(0, 6.3),
                    rng.uniform(0.05, 0.12) * height, rng.uniform(0.7, 2.0), rng.uniform(0, 6.3),
                    0, rng.integers(0, 1 << 20))
        elif kind == _WALL:
            length = rng.uniform(5, 30)
            height = rng.uniform(0.8, 2.6)
            colour = _jitter(rng, [(160, 155, 145), (150, 90, 70), (190, 185, 170), (110, 110, 110)][rng.integers(0, 4)])
            p[:3] = (rng.uniform(1.5, 4.0), rng.uniform(0.05, 0.15), float(rng.random() < 0.5))
        elif kind == _FENCE:
            length = rng.uniform(5, 35)
            height = rng.uniform(0.9, 2.0)
            colour = _jitter(rng, [(90, 95, 90), (60, 62, 60), (150, 150, 140), (120, 90, 60)][rng.integers(0, 4)])
            p[:5] = (rng.uniform(2.0, 3.0), rng.uniform(0.06, 0.14), rng.uniform(0.08, 0.2),
                     rng.uniform(0.02, 0.05), float(rng.random() < 0.5))
        else:
            length = rng.uniform(3, 15) if back else rng.uniform(5, 40)
            height, colour = 0.0, np.zeros(3, _F32)
        lots.append((s, kind, height, colour, p))
        s += length
    return lots


def _lots(lay: _Layout, side: int, back: bool, s_lo: float, s_hi: float) -> _Lots:
    rows = []
    for k in range(int(math.floor(s_lo / SEGMENT)) - 1, int(math.floor(s_hi / SEGMENT)) + 1):
        rows += _segment_lots(lay.seed, side, back, k)
    return _Lots(
        s0=np.array([r[0] for r in rows], np.float64),
        kind=np.array([r[1] for r in rows], np.int64),
        height=np.array([r[2] for r in rows], _F32),
        colour=np.stack([r[3] for r in rows]).astype(_F32),
        p=np.stack([r[4] for r in rows]).astype(_F32),
    )


# ---------------------------------------------------------------------------------------
# the canvas: the rendered window of the virtual frame
# ---------------------------------------------------------------------------------------


class _Canvas:
    def __init__(self, cam: Camera, top: int, left: int, h: int, w: int):
        self.cam = cam
        self.top, self.left, self.h, self.w = top, left, h, w
        self.img = np.empty((h, w, 3), _F32)
        self.lab = np.full((h, w), SKY, np.uint8)
        self.tex = np.zeros((h, w), _F32)          # relative amplitude of texture grain
        self.v = np.arange(top, top + h, dtype=_F32) + _F32(0.5)    # pixel-centre rows
        self.u = np.arange(left, left + w, dtype=_F32) + _F32(0.5)  # pixel-centre columns

    def span(self, v0, v1, u0, u1) -> Optional[tuple[int, int, int, int]]:
        """Local index box of the virtual pixel box ``[v0, v1) x [u0, u1)``, clipped."""
        if not (np.isfinite(v0) and np.isfinite(v1) and np.isfinite(u0) and np.isfinite(u1)):
            return None
        r0 = max(int(math.floor(v0)) - self.top, 0)
        r1 = min(int(math.ceil(v1)) - self.top, self.h)
        c0 = max(int(math.floor(u0)) - self.left, 0)
        c1 = min(int(math.ceil(u1)) - self.left, self.w)
        if r0 >= r1 or c0 >= c1:
            return None
        return r0, r1, c0, c1

    def paint(self, box, mask, colour, label: int, tex) -> None:
        r0, r1, c0, c1 = box
        np.copyto(self.img[r0:r1, c0:c1], colour, where=mask[..., None])
        np.copyto(self.lab[r0:r1, c0:c1], np.uint8(label), where=mask)
        np.copyto(self.tex[r0:r1, c0:c1], tex, where=mask)

    def billboard(self, z: float, x0: float, x1: float, y0: float, y1: float):
        """Box, local x ``[1, w]`` and y ``[h, 1]`` (metres) of a fronto-parallel rectangle
        at depth ``z``; None when it is off-canvas or smaller than a pixel."""
        cam = self.cam
        if z < Z_NEAR:
            return None
        k = cam.focal / z
        if (y1 - y0) * k < 1.0 or (x1 - x0) * k < 0.5:
            return None
        box = self.span(cam.horizon + (cam.mount - y1) * k, cam.horizon + (cam.mount - y0) * k + 1,
                        cam.cx + x0 * k, cam.cx + x1 * k + 1)
        if box is None:
            return None
        r0, r1, c0, c1 = box
        xs = ((self.u[c0:c1] - cam.cx) / k)[None, :]
        ys = (cam.mount - (self.v[r0:r1] - cam.horizon) / k)[:, None]
        return box, xs, ys


# ---------------------------------------------------------------------------------------
# background: sky, distant skyline, ground, facades
# ---------------------------------------------------------------------------------------


def _draw_sky(cv: _Canvas, lay: _Layout) -> None:
    cam = cv.cam
    ay = (cv.v - cam.horizon) / cam.focal
    g = np.clip(-ay / 0.45, 0, 1) ** _F32(0.8)
    col = lay.sky_horizon[None, :] * (1 - g[:, None]) + lay.sky_zenith[None, :] * g[:, None]
    cv.img[:] = col[:, None, :]
    sky_rows = int(np.searchsorted(cv.v, cam.horizon))
    if sky_rows and lay.cloud_amount > 0.02:
        ax = (cv.u - cam.cx) / cam.focal
        n = (_angular_noise(ax, ay[:sky_rows], 3.0, [lay.seed, 3]) * 0.65 +
             _angular_noise(ax, ay[:sky_rows], 11.0, [lay.seed, 4]) * 0.35)
        a = np.clip((n - (1 - lay.cloud_amount * 0.6)) * 4.0, 0, 1)
        a *= _F32(0.9)
        shade = (0.82 + 0.25 * n)[..., None] * lay.cloud_colour
        sub = cv.img[:sky_rows]
        sub += a[..., None] * (shade - sub)


def _draw_distant(cv: _Canvas, lay: _Layout) -> None:
    """Far skyline (buildings or a tree line) over the horizon, behind every facade."""
    cam = cv.cam
    ax = (cv.u - cam.cx) / cam.focal
    rng_key = lay.seed * 7919 + 5
    if lay.distant_kind == BUILDING:
        cell = np.floor(ax / 0.025).astype(np.int64)
        prof = 0.004 + 0.035 * _hash01(cell, 1, rng_key) ** 2
    else:
        prof = 0.006 + 0.012 * _value_noise_1d(ax, 0.04, rng_key, -2, 2) + 0.004 * _hash01(np.floor(ax / 0.002).astype(np.int64), 2, rng_key)
    top = cam.horizon - prof * cam.focal
    r1 = int(np.searchsorted(cv.v, cam.horizon + 1.0))
    r0 = int(np.searchsorted(cv.v, top.min()))
    if r1 <= r0:
        return
    mask = cv.v[r0:r1, None] >= top[None, :]
    colour = (lay.distant_colour * 0.35 + lay.haze * 0.65)
    if lay.distant_kind == VEGETATION:
        colour = colour * _rgb(0.8, 0.95, 0.75)
    shade = (0.92 + 0.1 * _hash01(np.floor(ax / 0.006).astype(np.int64), 3, rng_key))[None, :, None]
    cv.paint((r0, r1, 0, cv.w), mask, colour * shade, lay.distant_kind, _F32(0.02))


def _row_spans(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat (row, column) indices of per-row column intervals ``[lo[r], hi[r])``."""
    n = np.maximum(hi - lo, 0)
    total = int(n.sum())
    rows = np.repeat(np.arange(len(n)), n)
    cols = np.arange(total) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
    return rows, cols


class _Ground:
    """Rows below the horizon of a canvas: depth per row, lateral position per pixel, and
    the pixels of ground strips ``a <= X < b`` as flat index arrays (their cost is their
    area, not the frame's)."""

    def __init__(self, cv: _Canvas, t: float):
        cam = cv.cam
        self.cv = cv
        self.r0 = int(np.searchsorted(cv.v, cam.horizon + 0.25))
        dv = cv.v[self.r0:] - _F32(cam.horizon)
        self.z = np.minimum(_F32(cam.focal * cam.mount) / dv, _F32(1e5))
        self.s = self.z.astype(np.float64) + t
        self.mpp = self.z / _F32(cam.focal)                   # metres per pixel, laterally
        self.inv = 1.0 / self.mpp.astype(np.float64)

    def strip(self, a: float, b: float, margin: bool = True):
        """Pixels (rows, cols, lateral x) whose centre may be within a pixel of ``[a, b)``."""
        cv, cam = self.cv, self.cv.cam
        pad = 1.0 if margin else 0.0
        lo = np.ceil(cam.cx + a * self.inv - pad - cv.left - 0.5)
        hi = np.floor(cam.cx + b * self.inv + pad - cv.left - 0.5) + 1
        lo = np.clip(np.nan_to_num(lo, nan=0, posinf=cv.w, neginf=0), 0, cv.w).astype(np.int64)
        hi = np.clip(np.nan_to_num(hi, nan=0, posinf=cv.w, neginf=0), 0, cv.w).astype(np.int64)
        rows, cols = _row_spans(lo, hi)
        x = (cv.u[cols] - _F32(cam.cx)) * self.mpp[rows]
        return rows, cols, x

    def line(self, alpha: np.ndarray, centre: float, half_width: float, strength: float = 1.0,
             rows_on: Optional[np.ndarray] = None) -> None:
        """Accumulate (max) the anti-aliased coverage of the line ``X = centre``."""
        rows, cols, x = self.strip(centre - half_width, centre + half_width)
        a = np.clip(0.5 + (half_width - np.abs(x - _F32(centre))) / self.mpp[rows], 0, 1) * _F32(strength)
        if rows_on is not None:
            a *= rows_on[rows]
        cur = alpha[rows, cols]
        alpha[rows, cols] = np.maximum(cur, a)


def _blend(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """``img += alpha * (colour - img)`` on the pixels where alpha > 0, in place."""
    r, c = np.nonzero(alpha)
    if len(r):
        sub = img[r, c]
        sub += alpha[r, c][:, None] * (colour - sub)
        img[r, c] = sub


def _draw_ground(cv: _Canvas, lay: _Layout, t: float, back_lots: list) -> None:
    cam = cv.cam
    g = _Ground(cv, t)
    r0 = g.r0
    if r0 >= cv.h:
        return
    hr, w = cv.h - r0, cv.w
    x = (cv.u[None, :] - _F32(cam.cx)) * g.mpp[:, None]                   # [hr, w]
    xl, xr = lay.xl, lay.xr
    swl, swr = lay.sidewalk
    lab = np.full((hr, w), ROAD, np.uint8)
    lab[x > xr] = SIDEWALK
    lab[x > xr + swr] = lay.verge_class[1]
    lab[x < xl] = SIDEWALK
    lab[x < xl - swl] = lay.verge_class[0]
    del x
    lut = np.zeros((256, 3), _F32)
    lut[ROAD] = lay.asphalt
    lut[SIDEWALK] = lay.paving
    lut[TERRAIN] = lay.terrain
    img = cv.img[r0:]
    np.take(lut, lab, axis=0, out=img)
    tex_lut = np.zeros(256, _F32)
    tex_lut[ROAD] = lay.asphalt_tex
    tex_lut[SIDEWALK] = 0.04
    tex_lut[TERRAIN] = 0.22
    cv.tex[r0:] = tex_lut[lab]
    cv.lab[r0:] = lab

    shade = np.ones((hr, w), _F32)          # multiplicative light: patches, joints, shadows
    key = lay.seed * 31 + 11
    s32 = g.s.astype(_F32)
    # repaired asphalt patches
    rows, cols, xs = g.strip(xl, xr, margin=False)
    patch = _value_noise_1d(s32, 7.0, key, t - 10, t + 2000)[rows] * _value_noise_1d(xs, 2.5, key + 1, -80, 80)
    shade[rows, cols] = 0.88 + 0.3 * patch
    # grass: dry and green patches
    big = 1e4
    for a, b, cls in ((-big, xl - swl, lay.verge_class[0]), (xr + swr, big, lay.verge_class[1])):
        rows, cols, xs = g.strip(a, b, margin=False)
        if cls == TERRAIN and len(rows):
            var = _value_noise_1d(xs + 0.37 * s32[rows], 1.3, key + 2, -400, 2400)
            shade[rows, cols] = 0.7 + 0.6 * var
    # paving joints on sidewalks, faded out where they would alias
    tile = 0.5 if lay.kind == "urban" else 1.0
    fade = np.clip((tile / g.mpp - 3.0) / 6.0, 0, 1)
    if fade.any():
        ds = tile / 2 - np.abs((s32 / tile) % 1.0 - 0.5) * tile
        joint_s = np.clip(0.5 + (0.015 - ds) * cam.focal * cam.mount / (g.z * g.z), 0, 1)
        for a, b in ((xl - swl, xl), (xr, xr + swr)):
            rows, cols, xs = g.strip(a, b, margin=False)
            dx = tile / 2 - np.abs((xs / tile) % 1.0 - 0.5) * tile
            j = np.maximum(np.clip(0.5 + (0.015 - dx) / g.mpp[rows], 0, 1), joint_s[rows]) * fade[rows]
            shade[rows, cols] *= 1 - 0.3 * j
    # kerb gutters
    gutter = np.zeros((hr, w), _F32)
    g.line(gutter, xr - 0.2, 0.2, 0.35)
    g.line(gutter, xl + 0.2, 0.2, 0.35)
    shade *= 1 - gutter
    del gutter
    # cast shadows of the facades on the side opposite the sun
    if lay.sun_side:
        side = 0 if lay.sun_side > 0 else 1
        lots = back_lots[side]
        idx = np.clip(np.searchsorted(lots.s0, g.s, side="right") - 1, 0, len(lots.s0) - 1)
        depth = lots.height[idx] * (lots.kind[idx] != _GAP) * lay.shadow_k
        plane = abs(_plane_x(lay, side, True))
        edge = plane - depth                                                  # [hr], |X|
        sign = -1.0 if side == 0 else 1.0
        inv = g.inv
        # columns beyond the shadow edge on that side
        cut = cam.cx + sign * edge * inv - cv.left - 0.5
        cut = np.clip(np.nan_to_num(cut, nan=0.0, posinf=w, neginf=0.0), -1, w + 1)
        cols_idx = np.arange(w, dtype=np.float64)[None, :]
        if sign > 0:
            sh = np.clip(cols_idx - cut[:, None] + 0.5, 0, 1)
        else:
            sh = np.clip(cut[:, None] - cols_idx + 0.5, 0, 1)
        shade *= (1 - lay.shadow_strength * sh).astype(_F32)
    img *= shade[..., None]
    del shade

    # bright paint: kerb stones, lane markings, crosswalks
    kerb = np.zeros((hr, w), _F32)
    g.line(kerb, xr + 0.09, 0.09, 0.8)
    g.line(kerb, xl - 0.09, 0.09, 0.8)
    _blend(img, kerb, lay.kerb)
    del kerb
    paints: dict = {}
    for mx, width, period, duty, colour in lay.markings:
        alpha = paints.setdefault(tuple(colour.tolist()), np.zeros((hr, w), _F32))
        on = (((g.s + 3.1) / period) % 1.0 < duty).astype(_F32) if period else None
        g.line(alpha, mx, width / 2, 0.9, on)
    for k in range(int(math.floor(t / SEGMENT)), int(math.floor((t + Z_PLANES) / SEGMENT)) + 1):
        r = np.random.default_rng([lay.seed, 5, k + _OFFSET])
        if r.random() < lay.crosswalk_prob:
            c0 = k * SEGMENT + r.uniform(5, SEGMENT - 10)
            on = ((g.s > c0) & (g.s < c0 + r.uniform(3, 5))).astype(_F32)
            if on.any():
                alpha = paints.setdefault((230.0, 230.0, 225.0), np.zeros((hr, w), _F32))
                rows, cols, xs = g.strip(xl + 0.3, xr - 0.3, margin=False)
                a = np.clip(0.5 + (0.25 - np.abs(((xs - xl) % 1.0) - 0.5)) / g.mpp[rows], 0, 1) * on[rows] * 0.85
                alpha[rows, cols] = np.maximum(alpha[rows, cols], a)
    for colour, alpha in paints.items():
        _blend(img, alpha, np.array(colour, _F32))
    # aerial perspective
    a = (1 - np.exp(-g.z / lay.visibility))
    img *= (1 - a)[:, None, None]
    img += (a[:, None] * lay.haze[None, :])[:, None, :]


def _draw_plane(cv: _Canvas, lay: _Layout, lots: _Lots, x_plane: float, t: float, lit: float) -> None:
    """A vertical plane ``X = x_plane`` along the road, lot by lot (each lot is a run of
    columns with scalar parameters, so the work is bounded by the lots' pixel boxes)."""
    cam = cv.cam
    du = cv.u - _F32(cam.cx)
    with np.errstate(divide="ignore", invalid="ignore"):
        z_all = _F32(cam.focal * x_plane) / du
    ok = (z_all > 0.3) & (z_all < Z_PLANES)
    cols = np.flatnonzero(ok)
    if not len(cols):
        return
    c0, c1 = int(cols[0]), int(cols[-1]) + 1       # z is monotonic: valid columns are contiguous
    z_all = z_all[c0:c1]
    s_all = z_all.astype(np.float64) + t
    idx = np.clip(np.searchsorted(lots.s0, s_all, side="right") - 1, 0, len(lots.s0) - 1)
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(idx)) + 1, [c1 - c0]))
    for a, b in zip(bounds[:-1], bounds[1:]):
        li = int(idx[a])
        kind = int(lots.kind[li])
        if kind == _GAP:
            continue
        z = z_all[a:b]
        s = s_all[a:b]
        s_rel = (s - lots.s0[li]).astype(_F32)
        p = lots.p[li]
        height = np.full(b - a, lots.height[li], _F32)
        if kind == _HEDGE:
            sf = s.astype(_F32)
            jag = _tile(np.floor(s / 0.25).astype(np.int64), 5, int(p[7]) & 255)
            height += (p[0] * np.sin(sf / p[1] + p[2]) + p[3] * np.sin(sf / p[4] + p[5])
                       + 0.08 * lots.height[li] * (jag - 0.5))
            np.maximum(height, 0.3, out=height)
        k = _F32(cam.focal) / z
        vtop = _F32(cam.horizon) - (height - _F32(cam.mount)) * k
        vbot = _F32(cam.horizon) + _F32(cam.mount) * k
        box = cv.span(vtop.min(), vbot.max() + 1, cv.left + c0 + a, cv.left + c0 + b)
        if box is None:
            continue
        r0, r1, bc0, bc1 = box
        sl = slice(bc0 - c0 - a, bc1 - c0 - a)            # the lot's columns inside the canvas
        z, k, s_rel, height = z[sl], k[sl], s_rel[sl], height[sl]
        y = _F32(cam.mount) - (cv.v[r0:r1, None] - _F32(cam.horizon)) / k[None, :]
        inside = (y >= 0) & (y < height[None, :])
        if not inside.any():
            continue
        base = lots.colour[li] * _F32(lit)
        if kind == _BUILDING:
            fh, wsp, wwf, whf, off, gf, shop = (float(v) for v in p[:7])
            fy = (y - gf) / fh
            fi = np.floor(fy)
            fr = fy - fi
            cxw = s_rel / wsp + off
            ci = np.floor(cxw)
            win_col = (cxw - ci) < wwf                                         # [wc]
            upper = (y > gf) & (y < height[None, :] - 0.7)
            glazing = upper & win_col[None, :] & (np.abs(fr - 0.5) < whf / 2)
            if shop > 0.5:
                glazing |= (y < gf - 0.5) & (y > 0.4) & ((s_rel % 4.0) < 3.2)[None, :]
            else:
                glazing |= (y < 2.2) & (((s_rel / 9.0 + off) % 1.0) < 0.12)[None, :]
            f = np.where(upper & (fr < 0.05), _F32(0.82), _F32(1.0))
            f[y > height[None, :] - 0.45] = 0.7
            colour = base * f[..., None]
            bright = _tile(ci.astype(np.int64)[None, :], fi.astype(np.int64), int(p[7]) & 255)
            bright = 0.35 + 0.8 * bright * bright
            glass = (_rgb(70, 85, 100) * bright[..., None] + lay.sky_horizon * _F32(0.25)) * _F32(lit)
            np.copyto(colour, glass, where=glazing[..., None])
            label, tex = BUILDING, 0.03
        elif kind == _HEDGE:
            sf = s[sl].astype(_F32)
            blot = _tile(np.floor(sf / 0.8).astype(np.int64)[None, :], np.floor(y / 0.8).astype(np.int64), 11)
            leaf = _tile(np.floor(sf / 0.15).astype(np.int64)[None, :], np.floor(y / 0.15).astype(np.int64), 17)
            shade = (0.55 + 0.35 * blot + 0.35 * leaf) * (0.65 + 0.35 * np.clip(y / height[None, :], 0, 1))
            colour = base * shade[..., None]
            label, tex = VEGETATION, 0.3
        elif kind == _WALL:
            joint = (s_rel % p[0]) < 0.03
            f = np.where(joint[None, :] | (y > height[None, :] - p[1]), _F32(0.78), _F32(1.0))
            colour = base * f[..., None]
            label, tex = WALL, 0.06
        else:   # fence: posts and rails opaque, bars or mesh see-through (labelled as fence)
            post_sp, post_w, bar_sp, bar_w, mesh = (float(v) for v in p[:5])
            post = (s_rel % post_sp) < post_w
            rail = (y > height[None, :] - 0.06) | ((y > 0.1) & (y < 0.16))
            if mesh > 0.5:
                cover = np.full(len(z), 0.35, _F32)
            else:
                cover = np.where(bar_sp * k > 3, ((s_rel % bar_sp) < bar_w).astype(_F32), _F32(bar_w / bar_sp))
            alpha = np.where(post[None, :] | rail, _F32(1.0), cover[None, :])
            behind = cv.img[r0:r1, bc0:bc1]
            colour = behind + alpha[..., None] * (base - behind)
            label, tex = FENCE, 0.05
        hz = (1 - np.exp(-z / lay.visibility))[None, :, None]
        colour += hz * (lay.haze - colour)
        cv.paint(box, inside, colour, label, _F32(tex))


# ---------------------------------------------------------------------------------------
# objects
# ---------------------------------------------------------------------------------------


@dataclass
class _Object:
    kind: str
    q: float              # position along the road at t = 0 (near end for vehicles)
    u: float              # speed in units of the ego speed (0 = parked, <0 = oncoming)
    x: float              # lateral centre
    params: dict

    def depth(self, t: float) -> float:
        return self.q + (self.u - 1.0) * t


def _vehicle(rng, kind: str, q: float, u: float, x: float, facing: int) -> _Object:
    if kind == "car":
        length = rng.uniform(3.8, 4.9)
        prm = dict(width=rng.uniform(1.65, 1.9), length=length, body=rng.uniform(0.9, 1.1),
                   roof=rng.uniform(1.38, 1.6), colour=_jitter(rng, _CAR_COLOURS[rng.integers(0, len(_CAR_COLOURS))], 0.08),
                   trunk=rng.uniform(0.25, 0.9), hood=rng.uniform(0.9, 1.4))
    elif kind == "truck":
        length = rng.uniform(6.0, 10.0)
        prm = dict(width=rng.uniform(2.3, 2.55), length=length, box=rng.uniform(3.0, 3.9),
                   colour=_jitter(rng, [(230, 230, 228), (200, 200, 195), (60, 80, 140), (170, 40, 35), (40, 90, 60)][rng.integers(0, 5)], 0.08),
                   cab_colour=_jitter(rng, _CAR_COLOURS[rng.integers(0, len(_CAR_COLOURS))], 0.08))
    elif kind in ("bus", "tram"):
        length = rng.uniform(10.5, 13.0) if kind == "bus" else rng.uniform(22.0, 30.0)
        prm = dict(width=2.5 if kind == "bus" else 2.4, length=length,
                   top=rng.uniform(2.9, 3.25) if kind == "bus" else rng.uniform(3.3, 3.6),
                   colour=_jitter(rng, [(220, 220, 215), (200, 40, 40), (240, 200, 40), (40, 90, 170), (60, 140, 70)][rng.integers(0, 5)], 0.08),
                   stripe=_jitter(rng, [(30, 30, 30), (200, 200, 200), (20, 60, 140)][rng.integers(0, 3)], 0.1))
    else:   # two-wheelers with a rider
        length = 1.8 if kind == "bicycle" else 2.1
        prm = dict(width=0.7, length=length, person=_person_params(rng, riding=True),
                   colour=_jitter(rng, _CAR_COLOURS[rng.integers(0, len(_CAR_COLOURS))], 0.1),
                   yaw=rng.uniform(0.0, 0.35))
    prm["facing"] = facing
    return _Object(kind, q, u, x, prm)


def _person_params(rng, riding: bool = False) -> dict:
    child = (not riding) and rng.random() < 0.1
    return dict(height=rng.uniform(1.1, 1.4) if child else rng.uniform(1.55, 1.95),
                top=_jitter(rng, _CLOTHES[rng.integers(0, len(_CLOTHES))], 0.1),
                bottom=_jitter(rng, _CLOTHES[rng.integers(0, len(_CLOTHES))], 0.1),
                skin=_SKIN[rng.integers(0, len(_SKIN))].copy(),
                hair=_jitter(rng, [(30, 20, 15), (90, 60, 30), (200, 170, 110), (120, 120, 120)][rng.integers(0, 4)], 0.1),
                side=bool(rng.random() < 0.4) and not riding, phase=rng.uniform(-1, 1),
                bag=bool(rng.random() < 0.3), riding=riding)


@lru_cache(maxsize=4096)
def _lane_objects(seed: int, lane_i: int, k: int) -> list[_Object]:
    lay = _layout(seed)
    x, u, facing = lay.lanes[lane_i]
    rng = np.random.default_rng([lay.seed, 6, lane_i, k + _OFFSET])
    out = []
    q = k * SEGMENT + rng.exponential(lay.vehicle_gap)
    end = (k + 1) * SEGMENT
    while True:
        kinds = ["car", "truck", "bus", "motorcycle", "bicycle"]
        probs = [0.74, 0.09, 0.06 if lay.kind != "open" else 0.01, 0.05, 0.06]
        if lay.tram and facing > 0 and lane_i == len([1 for ln in lay.lanes if ln[2] > 0]) - 1:
            kinds.append("tram")
            probs.append(0.12)
        probs = np.array(probs) / sum(probs)
        kind = str(rng.choice(kinds, p=probs))
        ob = _vehicle(rng, kind, q, u, x + rng.uniform(-0.25, 0.25), facing)
        if kind in ("bicycle", "motorcycle"):
            ob.x = x + rng.uniform(0.6, 1.0) * (1 if facing > 0 else -1)
        if q + ob.params["length"] > end - 0.5:
            break
        if facing < 0:
            # oncoming: q is the near (front) end as seen from the camera
            pass
        out.append(ob)
        q += ob.params["length"] + 2.0 + rng.exponential(lay.vehicle_gap)
    return out


@lru_cache(maxsize=4096)
def _side_objects(seed: int, side: int, k: int) -> list[_Object]:
    lay = _layout(seed)
    rng = np.random.default_rng([lay.seed, 7, side, k + _OFFSET])
    sign = -1.0 if side == 0 else 1.0
    edge = _side_edge(lay, side)
    sw = lay.sidewalk[side]
    s_lo, s_hi = k * SEGMENT, (k + 1) * SEGMENT
    out = []
    # poles with street lights, traffic signs, traffic lights
    s = s_lo + rng.uniform(0, lay.pole_spacing)
    while s < s_hi:
        kind = str(rng.choice(["lamp", "sign", "light", "mast"], p=[0.35, 0.35, 0.15, 0.15]))
        facing = 1 if side == 1 or rng.random() < 0.4 else -1
        prm = dict(sign=sign, facing=facing, colour=_jitter(rng, [(120, 120, 120), (70, 75, 70), (160, 160, 155)][rng.integers(0, 3)], 0.1),
                   radius=rng.uniform(0.05, 0.09))
        if kind == "lamp":
            prm.update(height=rng.uniform(6, 9), arm=rng.uniform(1.0, 2.5))
        elif kind == "sign":
            shapes = ["circle", "triangle", "square", "rect", "octagon"]
            n_plates = 1 + int(rng.random() < 0.3)
            prm.update(height=rng.uniform(2.3, 3.2), plates=[
                (str(rng.choice(shapes, p=[0.35, 0.25, 0.15, 0.2, 0.05])), rng.uniform(0.55, 0.8), int(rng.integers(0, 4)))
                for _ in range(n_plates)])
        elif kind == "light":
            prm.update(height=rng.uniform(2.8, 3.6), state=int(rng.integers(0, 3)))
        else:
            prm.update(height=rng.uniform(5.5, 6.8), arm=rng.uniform(3.0, 6.0), state=int(rng.integers(0, 3)),
                       n_lights=int(rng.integers(1, 3)))
        out.append(_Object(kind, s, 0.0, sign * (edge + 0.45), prm))
        s += lay.pole_spacing * rng.uniform(0.8, 1.25)
    # trees in tree pits or on the verge
    spacing = lay.tree_spacing[side]
    if spacing > 0:
        s = s_lo + rng.uniform(0, spacing)
        on_verge = lay.verge[side] > 1.5
        while s < s_hi:
            off = edge + (sw + lay.verge[side] * rng.uniform(0.25, 0.75) if on_verge else rng.uniform(0.8, 1.2))
            crown = rng.uniform(1.5, 3.5)
            prm = dict(trunk=rng.uniform(1.8, 3.5), crown=crown, width=rng.uniform(0.2, 0.4),
                       colour=_jitter(rng, _GREENS[rng.integers(0, len(_GREENS))], 0.2),
                       blobs=[(rng.uniform(-0.5, 0.5) * crown, rng.uniform(-0.3, 0.4) * crown,
                               rng.uniform(0.55, 0.9) * crown, rng.uniform(0.5, 0.85) * crown) for _ in range(int(rng.integers(3, 6)))],
                       salt=int(rng.integers(0, 1 << 20)))
            out.append(_Object("tree", s, 0.0, sign * off, prm))
            s += spacing * rng.uniform(0.7, 1.3)
    # pedestrians, some in groups
    n = rng.poisson(lay.person_density * SEGMENT)
    for _ in range(n):
        s = rng.uniform(s_lo, s_hi)
        for g in range(1 if rng.random() < 0.7 else int(rng.integers(2, 4))):
            off = edge + rng.uniform(0.5, max(0.6, sw - 0.3))
            out.append(_Object("person", s + g * rng.uniform(0.3, 0.8), rng.uniform(-0.05, 0.05),
                               sign * off + g * rng.uniform(-0.5, 0.5), _person_params(rng)))
    # parked bicycles and motorcycles on the sidewalk
    if lay.kind != "open" and rng.random() < 0.3:
        s = rng.uniform(s_lo, s_hi - 5)
        for j in range(int(rng.integers(1, 5))):
            kind = "bicycle" if rng.random() < 0.75 else "motorcycle"
            ob = _vehicle(rng, kind, s + j * 0.7, 0.0, sign * (edge + sw - 0.6), 1)
            ob.params["person"] = None
            ob.params["yaw"] = rng.uniform(1.2, 1.57)
            out.append(ob)
    # parked cars on the parking strip
    if lay.parking[side] is not None:
        s = s_lo + rng.uniform(0, 6)
        while True:
            kind = "car" if rng.random() < 0.93 else "truck"
            ob = _vehicle(rng, kind, s, 0.0, lay.parking[side], 1 if rng.random() < 0.8 else -1)
            if s + ob.params["length"] > s_hi - 0.3:
                break
            if rng.random() < 0.85:
                out.append(ob)
            s += ob.params["length"] + rng.uniform(0.6, 3.0)
    return out


def _objects(lay: _Layout, t: float) -> list[tuple[float, _Object]]:
    out = []
    for side in (0, 1):
        for k in range(int(math.floor((t - 30) / SEGMENT)), int(math.floor((t + Z_OBJECTS) / SEGMENT)) + 1):
            out += _side_objects(lay.seed, side, k)
    for i, (_, u, _) in enumerate(lay.lanes):
        lo, hi = -30 - (u - 1) * t, Z_OBJECTS - (u - 1) * t
        for k in range(int(math.floor(lo / SEGMENT)), int(math.floor(hi / SEGMENT)) + 1):
            out += _lane_objects(lay.seed, i, k)
    drawn = [(ob.depth(t), ob) for ob in out]
    drawn = [(z, ob) for z, ob in drawn if -ob.params.get("length", 1.0) < z < Z_OBJECTS]
    drawn.sort(key=lambda zo: -zo[0])
    return drawn


# -- drawing primitives ------------------------------------------------------------------


def _ellipse(xs, ys, cx, cy, rx, ry):
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 < 1.0


def _segment_mask(xs, ys, p0, p1, half_width):
    """Pixels within ``half_width`` of the segment p0-p1 (metric coordinates)."""
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy + 1e-9
    tt = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0, 1)
    return (xs - x0 - tt * dx) ** 2 + (ys - y0 - tt * dy) ** 2 < half_width * half_width


def _haze(lay: _Layout, colour, z: float):
    a = 1 - math.exp(-max(z, 0.0) / lay.visibility)
    return colour + _F32(a) * (lay.haze - colour)


def _ground_shadow(cv: _Canvas, x0, x1, z0, z1, strength):
    cam = cv.cam
    if z1 <= Z_NEAR:
        return
    z0 = max(z0, Z_NEAR)
    v_far = cam.horizon + cam.focal * cam.mount / z1
    v_near = cam.horizon + cam.focal * cam.mount / z0
    u_lo = cam.cx + cam.focal * min(x0 / z0, x0 / z1)
    u_hi = cam.cx + cam.focal * max(x1 / z0, x1 / z1)
    box = cv.span(v_far, v_near + 1, u_lo, u_hi + 1)
    if box is None:
        return
    r0, r1, c0, c1 = box
    z = cam.focal * cam.mount / (cv.v[r0:r1] - cam.horizon)
    x = (cv.u[c0:c1][None, :] - cam.cx) * (z / cam.focal)[:, None]
    m = (x > x0) & (x < x1) & ((z > z0) & (z < z1))[:, None]
    ground = np.isin(cv.lab[r0:r1, c0:c1], (ROAD, SIDEWALK, TERRAIN))
    m &= ground
    sub = cv.img[r0:r1, c0:c1]
    np.multiply(sub, _F32(1 - strength), out=sub, where=m[..., None])


def _box_faces(cv: _Canvas, x0, x1, z0, z1, y0, y1):
    """Visible faces of an axis-aligned box, far to near.

    Returns ``(face, box, a, b, mask)`` tuples: ``face`` is "side" (a = depth into the box
    from ``z0``, ``[1, w]``; b = height ``[h, w]``), "top" (a = lateral x ``[h, w]``, b =
    depth into the box ``[h, 1]``; only when the camera looks down on it) or "near"
    (a = lateral x ``[1, w]``, b = height ``[h, 1]``).
    """
    cam = cv.cam
    if z0 < Z_NEAR:
        # clipped by the image plane: only the side is drawn
        z0n = Z_NEAR
    else:
        z0n = z0
    faces = []
    xs_side = x1 if x1 < 0 else (x0 if x0 > 0 else None)
    if xs_side is not None and z1 > Z_NEAR:
        ua = cam.cx + cam.focal * xs_side / z1
        ub = cam.cx + cam.focal * xs_side / z0n
        va = cam.horizon + cam.focal * (cam.mount - y1) / z0n
        vb = cam.horizon + cam.focal * (cam.mount - y0) / z0n
        va = min(va, cam.horizon + cam.focal * (cam.mount - y1) / z1)
        box = cv.span(va, vb + 1, min(ua, ub), max(ua, ub) + 1)
        if box is not None:
            r0, r1, c0, c1 = box
            with np.errstate(divide="ignore"):
                z = cam.focal * xs_side / (cv.u[c0:c1] - cam.cx)
            z = np.where(z > 0, z, np.inf).astype(_F32)
            y = cam.mount - (cv.v[r0:r1, None] - cam.horizon) * (z[None, :] / cam.focal)
            a = (z - z0)[None, :]
            m = (a >= 0) & (z[None, :] <= z1) & (y >= y0) & (y <= y1) & (z[None, :] >= Z_NEAR)
            if m.any():
                faces.append(("side", box, a, y, m))
    if y1 < cam.mount - 0.02 and z1 > Z_NEAR:
        # the top is visible from above: rows between its far and near edges
        zt0 = max(z0, Z_NEAR)
        k0, k1 = cam.focal / zt0, cam.focal / z1
        box = cv.span(cam.horizon + (cam.mount - y1) * k1, cam.horizon + (cam.mount - y1) * k0 + 1,
                      cam.cx + min(x0 * k0, x0 * k1), cam.cx + max(x1 * k0, x1 * k1) + 1)
        if box is not None:
            r0, r1, c0, c1 = box
            z = (cam.focal * (cam.mount - y1) / np.maximum(cv.v[r0:r1] - cam.horizon, 1e-3))[:, None]
            x = (cv.u[c0:c1][None, :] - cam.cx) * (z / cam.focal)
            m = (x >= x0) & (x <= x1) & (z >= zt0) & (z <= z1)
            if m.any():
                faces.append(("top", box, x, z - z0, m))
    if z0 >= Z_NEAR:
        bb = cv.billboard(z0, x0, x1, y0, y1)
        if bb is not None:
            box, xs, ys = bb
            m = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
            if m.any():
                faces.append(("near", box, xs, ys, m))
    return faces


def _side_lit(lay: _Layout, x_face_sign: float) -> float:
    """Brightness of a vertical face whose outward normal points to ``x_face_sign``."""
    if lay.sun_side == 0:
        return lay.shade
    return 1.0 if x_face_sign * lay.sun_side > 0 else lay.shade


def _draw_car(cv: _Canvas, lay: _Layout, ob: _Object, z0: float) -> None:
    p = ob.params
    w, length = p["width"], p["length"]
    x0, x1 = ob.x - w / 2, ob.x + w / 2
    z1 = z0 + length
    paint = _haze(lay, p["colour"], z0)
    glass = _haze(lay, _rgb(35, 42, 50) + lay.sky_horizon * _F32(0.15), z0)
    tyre = _haze(lay, _rgb(22, 22, 24), z0)
    _ground_shadow(cv, x0 - 0.1, x1 + 0.1, z0 - 0.2, z1 + 0.2, 0.55)
    front = p["facing"] < 0
    # cabin: glass house, set back from the near end by the trunk (or bonnet when oncoming)
    c_near = z0 + (p["hood"] if front else p["trunk"])
    c_far = z1 - (p["trunk"] if front else p["hood"])
    inset = 0.1
    for face, box, a, b, m in _box_faces(cv, x0 + inset, x1 - inset, c_near, c_far, p["body"] - 0.02, p["roof"]):
        if face == "top":
            cv.paint(box, m, paint * _F32(1.05), CAR, _F32(0.02))
            continue
        if face == "side":
            lit = _side_lit(lay, 1.0 if ob.x > 0 else -1.0)
            cab_len = c_far - c_near
            pillar = (np.abs(a - cab_len * 0.5) < 0.07) | (a < 0.12) | (a > cab_len - 0.12)
            win = (b > p["body"] + 0.06) & (b < p["roof"] - 0.07) & ~pillar
        else:
            lit = 1.0
            win = (b > p["body"] + 0.05) & (b < p["roof"] - 0.06) & (np.abs(a - ob.x) < w / 2 - inset - 0.1)
        col = np.where(win[..., None], glass, paint * _F32(lit * 0.95))
        cv.paint(box, m, col, CAR, _F32(0.02))
    # body with wheels
    for face, box, a, b, m in _box_faces(cv, x0, x1, z0, z1, 0.0, p["body"]):
        if face == "top":
            cv.paint(box, m, paint * _F32(1.1), CAR, _F32(0.02))
        elif face == "side":
            lit = _side_lit(lay, 1.0 if ob.x > 0 else -1.0)
            r = 0.32
            wheel = ((a - 0.8) ** 2 + (b - r) ** 2 < r * r) | ((a - (length - 0.8)) ** 2 + (b - r) ** 2 < r * r)
            hub = ((a - 0.8) ** 2 + (b - r) ** 2 < (0.5 * r) ** 2) | ((a - (length - 0.8)) ** 2 + (b - r) ** 2 < (0.5 * r) ** 2)
            body = b >= 0.22
            mm = m & (body | wheel)
            shade = np.where(b < 0.4, 0.7, 1.0) * lit
            col = paint * shade[..., None]
            door = np.abs(a - length * 0.52) < 0.02
            col = np.where(door[..., None], col * _F32(0.6), col)
            col = np.where((wheel & ~body)[..., None] | (wheel & (b < 0.3))[..., None], tyre, col)
            col = np.where(hub[..., None], _rgb(140, 140, 145), col)
            cv.paint(box, mm, col, CAR, _F32(0.02))
        else:
            xl_, xr_ = x0 + 0.28, x1 - 0.28
            body = b >= 0.22
            tyres = (b < 0.3) & ((np.abs(a - xl_) < 0.12) | (np.abs(a - xr_) < 0.12))
            mm = m & (body | tyres)
            col = np.broadcast_to(paint, mm.shape + (3,)).copy()
            bumper = (b > 0.22) & (b < 0.42)
            col[np.broadcast_to(bumper, mm.shape)] *= _F32(0.75)
            lamp_y = (b > p["body"] - 0.32) & (b < p["body"] - 0.12)
            lamp = lamp_y & ((a < x0 + 0.35) | (a > x1 - 0.35))
            lamp_col = _rgb(240, 235, 200) if front else _rgb(200, 20, 25)
            col[np.broadcast_to(lamp, mm.shape)] = lamp_col
            plate = (np.abs(a - ob.x) < 0.26) & (b > 0.3) & (b < 0.42)
            col[np.broadcast_to(plate, mm.shape)] = _rgb(225, 225, 215)
            if front:
                grille = (np.abs(a - ob.x) < 0.4) & (b > 0.45) & (b < p["body"] - 0.12)
                col[np.broadcast_to(grille, mm.shape)] = _rgb(30, 30, 32)
            col[np.broadcast_to(tyres & ~body, mm.shape)] = tyre
            cv.paint(box, mm, col, CAR, _F32(0.02))


def _draw_big(cv: _Canvas, lay: _Layout, ob: _Object, z0: float) -> None:
    """Trucks, buses and trams."""
    p = ob.params
    label = {"truck": TRUCK, "bus": BUS, "tram": TRAIN}[ob.kind]
    w, length = p["width"], p["length"]
    x0, x1 = ob.x - w / 2, ob.x + w / 2
    z1 = z0 + length
    front = p["facing"] < 0
    _ground_shadow(cv, x0 - 0.1, x1 + 0.1, z0 - 0.3, z1 + 0.3, 0.55)
    tyre = _haze(lay, _rgb(22, 22, 24), z0)
    glass = _haze(lay, _rgb(30, 38, 48) + lay.sky_horizon * _F32(0.15), z0)
    lit_side = _side_lit(lay, 1.0 if ob.x > 0 else -1.0)
    if ob.kind == "truck":
        cab_len = 2.2
        box_near, box_far = (z0 + cab_len + 0.3, z1) if front else (z0, z1 - cab_len - 0.3)
        cab_near, cab_far = (z0, z0 + cab_len) if front else (z1 - cab_len, z1)
        parts = [("box", box_near, box_far, 1.0, p["box"], p["colour"]),
                 ("cab", cab_near, cab_far, 0.55, 2.9, p["cab_colour"])]
        parts.sort(key=lambda q: -q[1])          # far part first
    else:
        parts = [("body", z0, z1, 0.3, p["top"], p["colour"])]
    for part, zn, zf, yb, yt, colour in parts:
        colour = _haze(lay, colour, zn)
        plen = zf - zn
        for face, box, a, b, m in _box_faces(cv, x0, x1, zn, zf, 0.0, yt):
            if face == "top":
                cv.paint(box, m, colour * _F32(1.05), label, _F32(0.03))
                continue
            col = np.broadcast_to(colour * _F32(lit_side if face == "side" else 1.0), m.shape + (3,)).copy()
            if face == "side":
                wheel_pos = [0.9, plen - 1.0] if part != "box" else [plen - 1.2, plen - 2.3] if not front else [1.2, 2.3]
                if part == "cab":
                    wheel_pos = [plen * 0.45]
                if ob.kind == "tram":
                    wheel_pos = [1.5, 3.0, plen - 3.0, plen - 1.5]
                r = 0.5
                wheel = np.zeros(m.shape, bool)
                for wp in wheel_pos:
                    wheel |= (a - wp) ** 2 + (b - r) ** 2 < r * r
                solid = b >= yb
                if part == "body":
                    band = (b > 1.2) & (b < yt - 0.45)
                    pillar = ((a / 1.45) % 1.0) < 0.09
                    win = band & ~pillar & (a > 0.4) & (a < plen - 0.3)
                    col[win] = glass
                    col[(b > 0.5) & (b < 0.9)] = _haze(lay, p["stripe"], zn)
                elif part == "cab":
                    win = (b > 1.7) & (b < 2.6) & (np.abs(a - plen * 0.55) < plen * 0.3)
                    col[win] = glass
                else:
                    rib = ((a / 0.9) % 1.0) < 0.04
                    col[rib & solid] *= _F32(0.85)
                    chassis = (b < yb) & (b > 0.45)
                    col[chassis] = _rgb(35, 35, 38)
                    solid = solid | chassis
                col[wheel & ~solid] = tyre
                cv.paint(box, m & (solid | wheel), col, label, _F32(0.03))
            else:
                near_front = front if part != "box" else False
                mb = np.broadcast_to
                solid = mb(b >= yb, m.shape)
                if part == "box":
                    split = mb(np.abs(a - ob.x) < 0.03, m.shape)
                    col[split] *= _F32(0.6)
                    bars = mb(((b / 0.8) % 1.0 < 0.05) & (b > yb), m.shape)
                    col[bars] *= _F32(0.8)
                    lamps = mb((b > yb - 0.05) & (b < yb + 0.12) & ((a < x0 + 0.3) | (a > x1 - 0.3)), m.shape)
                    col[lamps] = _rgb(200, 20, 25)
                    chassis = mb((b < yb) & (b > 0.45) & (np.abs(a - ob.x) < w / 2 - 0.2), m.shape)
                    col[chassis] = _rgb(35, 35, 38)
                    solid = solid | chassis
                else:
                    if near_front:
                        win = mb((b > yt * 0.45) & (b < yt - 0.25) & (np.abs(a - ob.x) < w / 2 - 0.12), m.shape)
                    else:
                        win = mb((b > yt * 0.6) & (b < yt - 0.35) & (np.abs(a - ob.x) < w / 2 - 0.2), m.shape)
                    col[win] = glass
                    lamp = mb((b > 0.55) & (b < 0.8) & ((a < x0 + 0.35) | (a > x1 - 0.35)), m.shape)
                    col[lamp] = _rgb(240, 235, 200) if near_front else _rgb(200, 20, 25)
                    if ob.kind in ("bus", "tram") and near_front:
                        sign_band = mb((b > yt - 0.25) & (b < yt - 0.05) & (np.abs(a - ob.x) < w / 2 - 0.3), m.shape)
                        col[sign_band] = _rgb(25, 25, 20)
                        col[sign_band & mb(((a * 7) % 1.0 < 0.5), m.shape)] = _rgb(240, 160, 30)
                tyres = mb((b < yb + 0.05) & ((np.abs(a - (x0 + 0.3)) < 0.16) | (np.abs(a - (x1 - 0.3)) < 0.16)), m.shape)
                col[tyres & ~solid] = tyre
                cv.paint(box, m & (solid | tyres), col, label, _F32(0.03))
    if ob.kind == "tram" and z0 > Z_NEAR:
        pz = z0 + length * 0.4
        bb = cv.billboard(pz, ob.x - 0.9, ob.x + 0.9, p["top"], p["top"] + 1.2)
        if bb is not None:
            box, xs, ys = bb
            top = p["top"]
            hw = max(0.03, 0.8 * pz / cv.cam.focal)
            m = (_segment_mask(xs, ys, (ob.x - 0.6, top), (ob.x, top + 0.9), hw)
                 | _segment_mask(xs, ys, (ob.x, top + 0.9), (ob.x + 0.4, top + 1.1), hw)
                 | _segment_mask(xs, ys, (ob.x - 0.8, top + 1.1), (ob.x + 0.8, top + 1.1), hw))
            cv.paint(box, m, _haze(lay, _rgb(50, 50, 50), pz), TRAIN, _F32(0.0))


def _draw_figure(cv: _Canvas, lay: _Layout, z: float, x: float, base: float, p: dict, label: int) -> None:
    """A person standing (or sitting on a two-wheeler when ``p['riding']``)."""
    h = p["height"]
    riding = p["riding"]
    leg = (0.47 * h) if not riding else 0.62
    torso = 0.32 * h
    head_r = 0.065 * h
    hip = base + (leg if not riding else 0.55)
    foot = base if not riding else base + 0.25
    top = hip + torso + 2.1 * head_r
    bb = cv.billboard(z, x - 0.45, x + 0.45, foot, top + 0.02)
    if bb is None:
        return
    box, xs, ys = bb
    xl = xs - x
    side = p["side"]
    shoulder = (0.2 if side else 0.21) * h
    spread = p["phase"] * (0.22 if side else 0.08)
    legs = np.zeros(np.broadcast_shapes(xl.shape, ys.shape), bool)
    frac = np.clip((hip - ys) / max(hip - foot, 1e-3), 0, 1)
    for sgn in (-1.0, 1.0):
        cxl = (0.0 if side else sgn * 0.085) + sgn * spread * frac
        legs |= (np.abs(xl - cxl) < 0.075) & (ys < hip + 0.02) & (ys >= foot)
    yt = np.clip((ys - hip) / torso, 0, 1)
    half = shoulder / 2 * (0.78 + 0.22 * yt)
    body = (ys >= hip - 0.06) & (ys < hip + torso) & (np.abs(xl) < half)
    arms = np.zeros_like(legs)
    if not side:
        arms = (np.abs(np.abs(xl) - shoulder / 2 - 0.045) < 0.045) & (ys > hip - 0.15) & (ys < hip + torso - 0.04)
    else:
        arms = _segment_mask(xl, ys, (0.0, hip + torso - 0.06), (spread * 0.8, hip - 0.1), 0.045)
    hy = hip + torso + head_r * 1.05
    head = _ellipse(xl, ys, 0.0, hy, head_r * 0.85, head_r)
    neck = (np.abs(xl) < 0.04) & (ys >= hip + torso - 0.01) & (ys < hy)
    bag = np.zeros_like(legs)
    if p["bag"] and not riding:
        bag = (np.abs(xl - 0.6 * shoulder) < 0.09) & (ys > hip - 0.05) & (ys < hip + 0.2)
    m = legs | body | arms | head | neck | bag
    shape = m.shape
    col = np.empty(shape + (3,), _F32)
    col[:] = _haze(lay, p["bottom"], z)
    col[np.broadcast_to(body | arms, shape)] = _haze(lay, p["top"], z)
    col[np.broadcast_to(head | neck, shape)] = _haze(lay, p["skin"], z)
    hair = head & ((ys > hy + 0.2 * head_r) | bool(p["phase"] > 0.3))
    col[np.broadcast_to(hair, shape)] = _haze(lay, p["hair"], z)
    if riding and label == RIDER and p.get("helmet") is not None:
        col[np.broadcast_to(head, shape)] = p["helmet"]
    shoes = legs & (ys < foot + 0.07)
    col[np.broadcast_to(shoes, shape)] = _rgb(25, 22, 20)
    col[np.broadcast_to(bag, shape)] = _rgb(60, 40, 30)
    cv.paint(box, m, col, label, _F32(0.05))


def _draw_twowheeler(cv: _Canvas, lay: _Layout, ob: _Object, z: float) -> None:
    p = ob.params
    label = BICYCLE if ob.kind == "bicycle" else MOTORCYCLE
    squash = max(abs(math.sin(p["yaw"])), 0.08)
    half_len = (0.55 if ob.kind == "bicycle" else 0.7)
    half_w = max(half_len * squash + 0.35, 0.4)
    if z < Z_NEAR:
        return
    if p["person"] is not None:
        # drawn behind the frame of the bike when seen from behind: rider first
        pass
    bb = cv.billboard(z, ob.x - half_w, ob.x + half_w, 0.0, 1.15)
    if bb is None:
        if p["person"] is not None:
            _draw_figure(cv, lay, z, ob.x, 0.0, p["person"], RIDER)
        return
    box, xs, ys = bb
    xl = (xs - ob.x) / squash
    r = 0.34 if ob.kind == "bicycle" else 0.31
    min_half = 0.7 * z / cv.cam.focal / squash    # keep thin parts at least about a pixel wide
    m = np.zeros(np.broadcast_shapes(xl.shape, ys.shape), bool)
    dark = np.zeros_like(m)
    for cxw in (-half_len, half_len):
        d2 = (xl - cxw) ** 2 + (ys - r) ** 2
        if ob.kind == "bicycle" and squash > 0.3:
            ring = (d2 < r * r) & (d2 > (r - max(0.045, 2 * min_half * squash)) ** 2)
        else:
            ring = (xl - cxw) ** 2 / max(1.0, (0.06 / squash) ** 2 / r ** 2) + (ys - r) ** 2 < r * r if squash <= 0.3 else d2 < r * r
        m |= ring
        dark |= ring
    hw = max(0.025, min_half * squash) / squash if ob.kind == "bicycle" else 0.06 / squash
    if ob.kind == "bicycle":
        pts = [(-half_len, r), (0.0, 0.3), (-0.15, 0.85), (0.42, 0.95), (half_len, r)]
        for a_, b_ in ((0, 1), (1, 2), (2, 0), (1, 3), (3, 4), (2, 3)):
            m |= _segment_mask(xl, ys, pts[a_], pts[b_], hw)
        bar = (np.abs(ys - 1.0) < 0.025) & (np.abs(xs - ob.x) < 0.3) if squash < 0.5 else np.zeros_like(m)
        m |= bar
    else:
        engine = _ellipse(xl, ys, 0.0, 0.55, 0.45, 0.22)
        seat = (np.abs(xl + 0.15) < 0.4) & (np.abs(ys - 0.82) < 0.06)
        fork = _segment_mask(xl, ys, (half_len, r), (0.5, 1.0), hw)
        m |= engine | seat | fork
        bar = (np.abs(ys - 1.0) < 0.03) & (np.abs(xs - ob.x) < 0.38)
        m |= bar
    colour = _haze(lay, p["colour"], z)
    col = np.empty(m.shape + (3,), _F32)
    col[:] = colour
    col[np.broadcast_to(dark, m.shape)] = _haze(lay, _rgb(25, 25, 25), z)
    lit = _rgb(220, 30, 30) if p["facing"] > 0 else _rgb(240, 240, 210)
    lamp = _ellipse(xl * squash, ys, 0.0, 0.75 if ob.kind == "motorcycle" else 0.7, 0.05, 0.04) & np.asarray(squash < 0.5)
    col[np.broadcast_to(lamp, m.shape)] = lit
    rider_first = p["person"] is not None and p["facing"] < 0
    if rider_first:
        _draw_figure(cv, lay, z, ob.x, 0.0, p["person"], RIDER)
    cv.paint(box, m, col, label, _F32(0.03))
    if p["person"] is not None and not rider_first:
        _draw_figure(cv, lay, z - 0.01, ob.x, 0.0, p["person"], RIDER)


def _draw_pole(cv: _Canvas, lay: _Layout, ob: _Object, z: float) -> None:
    p = ob.params
    rad = max(p["radius"], 0.6 * z / cv.cam.focal)     # at least about a pixel wide
    colour = _haze(lay, p["colour"] * _F32(_side_lit(lay, -p["sign"]) * 0.5 + 0.5), z)
    height = p["height"]
    bb = cv.billboard(z, ob.x - rad, ob.x + rad, 0.0, height)
    if bb is not None:
        box, xs, ys = bb
        cv.paint(box, np.ones((ys.shape[0], xs.shape[1]), bool), colour, POLE, _F32(0.02))
    toward_road = -p["sign"]
    if ob.kind in ("lamp", "mast"):
        arm = p["arm"]
        xa0, xa1 = sorted((ob.x, ob.x + toward_road * arm))
        bb = cv.billboard(z, xa0 - rad, xa1 + rad, height - 0.5, height + 0.05)
        if bb is not None:
            box, xs, ys = bb
            thick = max(0.05, 0.6 * z / cv.cam.focal)
            end = ob.x + toward_road * arm
            m = np.abs(ys - (height - 0.2)) < thick
            m = m & (xs >= xa0 - rad) & (xs <= xa1 + rad)
            if ob.kind == "lamp":
                head = (np.abs(xs - end) < 0.3) & (ys > height - 0.38) & (ys < height - 0.12)
                col = np.where(head[..., None], _haze(lay, _rgb(200, 200, 190), z), colour)
                m = m | head
            else:
                col = colour
            cv.paint(box, m, col, POLE, _F32(0.02))
        if ob.kind == "mast":
            for i in range(p["n_lights"]):
                lx = ob.x + toward_road * arm * (0.9 - 0.45 * i)
                _draw_light_box(cv, lay, z, lx, height - 0.35, p["state"], p["facing"], hanging=True)
    elif ob.kind == "light":
        _draw_light_box(cv, lay, z - 0.01, ob.x + toward_road * 0.1, height + 0.9, p["state"], p["facing"])
    elif ob.kind == "sign":
        y = height
        for shape, size, colour_i in p["plates"]:
            _draw_sign_plate(cv, lay, z - 0.01, ob.x, y - size / 2, size, shape, colour_i, p["facing"])
            y -= size + 0.05


def _draw_light_box(cv, lay, z, x, y_top, state, facing, hanging=False):
    w, h = 0.34, 0.95
    bb = cv.billboard(z, x - w / 2, x + w / 2, y_top - h, y_top)
    if bb is None:
        return
    box, xs, ys = bb
    m = np.ones((ys.shape[0], xs.shape[1]), bool)
    col = np.empty(m.shape + (3,), _F32)
    col[:] = _haze(lay, _rgb(30, 33, 30), z)
    if facing > 0:
        lamps = [(y_top - 0.17 - 0.3 * i) for i in range(3)]
        colours = [_rgb(255, 40, 30), _rgb(255, 180, 20), _rgb(40, 230, 120)]
        for i, ly in enumerate(lamps):
            disc = _ellipse(xs, ys, x, ly, 0.11, 0.11)
            c = colours[i] if i == state else colours[i] * _F32(0.18)
            col[np.broadcast_to(disc, m.shape)] = _haze(lay, c, z)
    cv.paint(box, m, col, TRAFFIC_LIGHT, _F32(0.02))


_SIGN_STYLES = [
    # (face colour, border colour, symbol colour)
    ((240, 240, 240), (200, 20, 25), (20, 20, 20)),
    ((30, 80, 170), (240, 240, 240), (240, 240, 240)),
    ((250, 210, 30), (20, 20, 20), (20, 20, 20)),
    ((30, 120, 60), (240, 240, 240), (240, 240, 240)),
]


def _draw_sign_plate(cv, lay, z, x, yc, size, shape, style, facing):
    half = size / 2 if shape != "rect" else size * 0.75
    bb = cv.billboard(z, x - half, x + half, yc - size / 2, yc + size / 2)
    if bb is None:
        return
    box, xs, ys = bb
    dx, dy = (xs - x) / (size / 2), (ys - yc) / (size / 2)
    if shape == "circle":
        m = dx * dx + dy * dy < 1
        inner = dx * dx + dy * dy < 0.62
    elif shape == "triangle":
        m = (dy > -0.85) & (dy < 0.85 - 1.7 * np.abs(dx) / 0.98 + 0.0)
        inner = (dy > -0.6) & (dy < 0.5 - 1.7 * np.abs(dx) / 0.98)
    elif shape == "octagon":
        m = (np.abs(dx) < 0.95) & (np.abs(dy) < 0.95) & (np.abs(dx) + np.abs(dy) < 1.35)
        inner = (np.abs(dx) < 0.8) & (np.abs(dy) < 0.8) & (np.abs(dx) + np.abs(dy) < 1.15)
        style = 0
    else:
        lim = 1.5 if shape == "rect" else 1.0
        m = (np.abs(dx) < lim) & (np.abs(dy) < 1.0)
        inner = (np.abs(dx) < lim - 0.12) & (np.abs(dy) < 0.88)
    m = np.broadcast_to(m, np.broadcast_shapes(dx.shape, dy.shape))
    inner = np.broadcast_to(inner, m.shape)
    col = np.empty(m.shape + (3,), _F32)
    if facing < 0:
        col[:] = _haze(lay, _rgb(150, 150, 150), z)
    else:
        face, border, symbol = (_rgb(*c) for c in _SIGN_STYLES[style])
        if shape == "octagon":
            face, border, symbol = _rgb(200, 20, 25), _rgb(240, 240, 240), _rgb(240, 240, 240)
        col[:] = _haze(lay, border, z)
        col[inner] = _haze(lay, face, z)
        glyph = inner & np.broadcast_to((np.abs(dx) < 0.35) & (np.abs(dy) < 0.35) & (((dx + dy) * 3) % 1.0 < 0.45), m.shape)
        col[glyph] = _haze(lay, symbol, z)
    cv.paint(box, m, col, TRAFFIC_SIGN, _F32(0.02))


def _draw_tree(cv: _Canvas, lay: _Layout, ob: _Object, z: float) -> None:
    p = ob.params
    crown = p["crown"]
    cy = p["trunk"] + crown
    hz = 1 - math.exp(-z / lay.visibility)
    # trunk first, the crown covers its top
    bb = cv.billboard(z, ob.x - p["width"] / 2, ob.x + p["width"] / 2, 0.0, cy)
    if bb is not None:
        box, xs, ys = bb
        trunk_col = _rgb(70, 55, 40) * _F32(1 - hz) + lay.haze * _F32(hz)
        cv.paint(box, np.ones((ys.shape[0], xs.shape[1]), bool), trunk_col, VEGETATION, _F32(0.15))
    bb = cv.billboard(z, ob.x - 1.6 * crown, ob.x + 1.6 * crown, cy - 1.3 * crown, cy + 1.4 * crown)
    if bb is None:
        return
    box, xs, ys = bb
    xl = xs - ob.x
    yl = ys - cy
    d = None
    for bx, by, rx, ry in p["blobs"]:
        e = ((xl - bx) * _F32(1 / rx)) ** 2 + ((yl - by) * _F32(1 / ry)) ** 2
        d = e if d is None else np.minimum(d, e, out=d)
    cell = max(0.08, 1.2 * z / cv.cam.focal)
    leaf = _tile(np.floor(xl / cell).astype(np.int64), np.floor(ys / cell).astype(np.int64), p["salt"])
    m = d < 0.8 + 0.45 * leaf                   # leafy, ragged outline
    shade = 0.55 + 0.6 * leaf
    shade *= 0.75 + 0.3 * np.clip(yl / crown, -1, 1)
    if lay.sun_side:
        shade *= 0.85 + 0.25 * np.clip(xl * (lay.sun_side / crown), -1, 1)
    col = shade[..., None] * (p["colour"] * _F32(1 - hz))
    col += lay.haze * _F32(hz)
    cv.paint(box, m, col, VEGETATION, _F32(0.25))


def _draw_object(cv: _Canvas, lay: _Layout, z: float, ob: _Object) -> None:
    if z < 3.0 and ob.kind not in ("car", "truck", "bus", "tram"):
        return          # people, bikes and poles this close have left the field of view
    if ob.kind == "car":
        _draw_car(cv, lay, ob, z)
    elif ob.kind in ("truck", "bus", "tram"):
        _draw_big(cv, lay, ob, z)
    elif ob.kind in ("bicycle", "motorcycle"):
        _draw_twowheeler(cv, lay, ob, z)
    elif ob.kind == "person":
        _draw_figure(cv, lay, z, ob.x, 0.0, ob.params, PERSON)
    elif ob.kind == "tree":
        _draw_tree(cv, lay, ob, z)
    else:
        _draw_pole(cv, lay, ob, z)


def _draw_hood(cv: _Canvas, lay: _Layout) -> None:
    cam = cv.cam
    if lay.hood <= 0:
        return
    xn = (cv.u - cam.width / 2) / (cam.width / 2)
    top = cam.height * (1 - lay.hood * (1 - 0.6 * xn * xn))
    r0 = int(np.searchsorted(cv.v, top.min()))
    if r0 >= cv.h:
        return
    m = cv.v[r0:, None] >= top[None, :]
    depth = (cv.v[r0:, None] - top[None, :]) / (lay.hood * cam.height)
    col = lay.hood_colour * (0.7 + 0.5 * np.clip(depth, 0, 1))[..., None] + lay.sky_horizon * _F32(0.12)
    cv.paint((r0, cv.h, 0, cv.w), m, col, IGNORE_ID, _F32(0.01))


# ---------------------------------------------------------------------------------------
# finishing: texture grain, lighting, vignetting, sensor noise
# ---------------------------------------------------------------------------------------


def _finish(cv: _Canvas, lay: _Layout, rng: np.random.Generator) -> np.ndarray:
    """Texture grain (multiplicative, per material), exposure, white balance, vignetting and
    sensor noise, all in place on the float canvas; returns the uint8 image."""
    img, h, w = cv.img, cv.h, cv.w
    # uniform noise has the look of Gaussian grain at a fraction of the cost
    grain = rng.random((h, w), dtype=_F32)
    grain -= _F32(0.5)
    coarse = rng.random(((h + 1) // 2, (w + 1) // 2), dtype=_F32)
    coarse -= _F32(0.5)
    grain += coarse.repeat(2, 0).repeat(2, 1)[:h, :w] * _F32(1.4)
    grain *= cv.tex
    grain *= _F32(1.6)
    grain += _F32(1.0)
    cam = cv.cam
    grain *= (1 - 0.18 * ((cv.v - cam.height / 2) / (cam.height / 2)) ** 2)[:, None]
    grain *= (1 - 0.22 * ((cv.u - cam.width / 2) / (cam.width / 2)) ** 2)[None, :]
    img *= grain[..., None]
    img *= (lay.white_balance * _F32(lay.gain))[None, None, :]
    noise = rng.random((h, w, 3), dtype=_F32)
    noise -= _F32(0.5)
    noise *= _F32(lay.noise_sigma * math.sqrt(12.0))
    img += noise
    img += _F32(0.5)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------


def _check_size(height, width) -> tuple[int, int]:
    for name, val in (("height", height), ("width", width)):
        if isinstance(val, bool) or int(val) != val or val < 8:
            raise ValueError(f"{name} must be an integer >= 8, got {val!r}")
    return int(height), int(width)


def render_scene(seed: int, height: int, width: int, t: float = 0.0,
                 window: Optional[tuple[int, int, int, int]] = None) -> Scene:
    """Render one street scene.

    Args:
        seed: non-negative integer; the whole scene follows from it.
        height, width: size of the (virtual) frame in pixels.
        t: metres the camera has driven forward (frames of a sequence differ only in t).
        window: optional ``(top, left, h, w)`` part of the frame to render; its labels are
            exactly that crop of the full frame's labels.

    Returns:
        :class:`Scene` with ``image`` ``[h, w, 3]`` uint8 RGB and ``label`` ``[h, w]`` uint8
        Cityscapes train ids (255 = ignore).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    height, width = _check_size(height, width)
    t = float(t)
    if not math.isfinite(t):
        raise ValueError(f"t must be finite, got {t}")
    if window is None:
        window = (0, 0, height, width)
    top, left, h, w = (int(v) for v in window)
    if h < 1 or w < 1 or top < 0 or left < 0 or top + h > height or left + w > width:
        raise ValueError(f"window {tuple(window)} must lie inside the {height}x{width} frame")
    lay = _layout(int(seed))
    cam = _camera(lay, height, width)
    cv = _Canvas(cam, top, left, h, w)
    _draw_sky(cv, lay)
    _draw_distant(cv, lay)
    back = [_lots(lay, side, True, t, t + Z_PLANES) for side in (0, 1)]
    _draw_ground(cv, lay, t, back)
    for side in (0, 1):
        lit = _side_lit(lay, 1.0 if side == 0 else -1.0)
        _draw_plane(cv, lay, back[side], _plane_x(lay, side, True), t, lit)
    for side in (0, 1):
        if lay.front_prob[side] > 0:
            lit = _side_lit(lay, 1.0 if side == 0 else -1.0)
            front = _lots(lay, side, False, t, t + Z_PLANES)
            _draw_plane(cv, lay, front, _plane_x(lay, side, False), t, lit)
    for z, ob in _objects(lay, t):
        _draw_object(cv, lay, z, ob)
    _draw_hood(cv, lay)
    tkey = int(round(t * 1000)) % (1 << 32)
    image = _finish(cv, lay, np.random.default_rng([int(seed), 9, tkey, top, left, h, w]))
    return Scene(image=image, label=cv.lab, seed=int(seed), t=t, camera=cam, window=(top, left, h, w))


def render_sequence(seed: int, num_frames: int, height: int, width: int, speed: float = 1.0,
                    t0: float = 0.0) -> Iterator[Scene]:
    """Frames of one scene with the camera driving forward.

    Args:
        seed: scene seed.
        num_frames: number of frames.
        height, width: frame size in pixels.
        speed: metres driven per frame (1.0 is 36 km/h at 10 Hz).
        t0: metres driven before the first frame.

    Yields:
        :class:`Scene` for ``t = t0 + i * speed``; other road users move at their own speeds.
    """
    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 0:
        raise ValueError(f"num_frames must be a non-negative integer, got {num_frames!r}")
    speed = float(speed)
    if not math.isfinite(speed) or speed < 0:
        raise ValueError(f"speed must be a finite number >= 0 (metres per frame), got {speed}")
    for i in range(int(num_frames)):
        yield render_scene(seed, height, width, t0 + i * speed)
