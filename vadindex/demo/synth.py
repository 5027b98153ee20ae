"""Procedural fixed-camera surveillance scenes with exact anomaly ground truth (numpy, OpenCV, PyAV)."""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

log = logging.getLogger("vadindex")

#: Class name of videos (and frames) with no anomaly.
NORMAL_CLASS = "Normal"
#: Anomalous event classes; the names appear in ``manifest.csv`` and ``annotations.txt``.
#: Fire = flames and/or smoke, Fighting = two or three people fighting, Falling = a person falling and
#: lying on the ground, CarCrash = two cars colliding (wreck and debris), Stampede = a crowd running off.
EVENT_CLASSES: tuple[str, ...] = ("Fire", "Fighting", "Falling", "CarCrash", "Stampede")
#: Fixed-camera scene layouts.
SCENE_KINDS: tuple[str, ...] = ("street", "carpark", "corridor")
DEFAULT_FPS = 10
DEFAULT_SIZE = (320, 240)  # width, height
DEFAULT_DURATION = (8.0, 14.0)  # seconds, for normal videos; anomalous ones are planned around events
MAX_DURATION = 15.0
#: Version of the rendering; bump it whenever a change alters the pixels or the ground truth of a seed.
GENERATOR_VERSION = 3
#: Seed of the held-out scene set used by ``vadindex demo`` and the model's evaluation; never trained on.
DEMO_SEED = 7
#: Training scene sets use seeds ``TRAIN_SEED_START, TRAIN_SEED_START + 1, ...``.
TRAIN_SEED_START = 1000

MANIFEST_NAME = "manifest.csv"
ANNOTATIONS_NAME = "annotations.txt"
SCENES_JSON_NAME = "scenes.json"
VIDEOS_DIRNAME = "videos"

# --------------------------------------------------------------------------------------------------
# Captions. The training script pairs frames with TRAIN_TEMPLATES x TRAIN_WORDINGS (optionally with a
# place phrase); the demo prompts below are deliberately phrased differently (open-set evaluation), and
# tests assert that none of them is a training caption or wording.
# --------------------------------------------------------------------------------------------------

TRAIN_TEMPLATES: tuple[str, ...] = (
    "{}",
    "a photo of {}",
    "a cctv frame of {}",
    "surveillance footage showing {}",
    "a security camera image of {}",
    "a still from a surveillance video of {}",
    "cctv footage of {}",
    "a fixed camera view of {}",
    "a video frame showing {}",
    "security footage of {}",
)

#: Place phrases appended to a wording (``"{wording} {place}"``) for some training captions.
TRAIN_PLACES: dict[str, tuple[str, ...]] = {
    "street": ("on a street", "on the road", "in the street"),
    "carpark": ("in a car park", "in a parking lot", "in a parking garage"),
    "corridor": ("in a corridor", "in a hallway", "indoors"),
}

TRAIN_WORDINGS: dict[str, tuple[str, ...]] = {
    NORMAL_CLASS: (
        "people walking",
        "a person walking",
        "pedestrians walking by",
        "cars driving",
        "a car driving past",
        "normal traffic",
        "an ordinary day",
        "a quiet scene",
        "nothing unusual",
        "normal activity",
        "people standing and talking",
        "a group of people standing",
        "an empty scene",
        "everyday activity",
    ),
    "Fire": (
        "fire",
        "a fire",
        "flames",
        "a fire burning",
        "burning flames",
        "thick smoke",
        "smoke and fire",
        "a blaze",
        "something on fire",
        "black smoke from a fire",
        "a burning car",
        "fire and smoke",
    ),
    "Fighting": (
        "a fight",
        "people fighting",
        "two people fighting",
        "a violent fight",
        "men punching each other",
        "a brawl",
        "an assault",
        "people hitting each other",
        "a fistfight",
        "a physical fight",
    ),
    "Falling": (
        "a person lying on the ground",
        "someone who fell down",
        "a person falling",
        "a man collapsed",
        "a fallen person",
        "a person on the floor",
        "somebody lying down motionless",
        "a person who has fallen over",
        "an injured person lying on the ground",
    ),
    "CarCrash": (
        "a car crash",
        "a car accident",
        "two cars colliding",
        "a traffic collision",
        "crashed cars",
        "a vehicle collision",
        "wrecked cars",
        "cars smashed together",
        "a road accident",
    ),
    "Stampede": (
        "a crowd running",
        "people running away",
        "a stampede",
        "a panicking crowd",
        "people fleeing",
        "a crowd running in panic",
        "many people running",
        "a crowd rushing away",
        "people running in fear",
    ),
}

#: Demo / evaluation prompts: anomaly descriptions, none of them a training caption.
DEMO_ANOMALY_PROMPTS: tuple[str, ...] = (
    "a building on fire with smoke rising",
    "flames and smoke seen on a security camera",
    "two men in a violent brawl",
    "a fistfight between two people",
    "a person collapsed on the ground",
    "somebody fell and is lying on the floor",
    "a serious collision between two cars",
    "a crowd of people running away in panic",
)
#: Demo / evaluation prompts describing normal activity, none of them a training caption.
DEMO_NORMAL_PROMPTS: tuple[str, ...] = (
    "people walking normally",
    "ordinary traffic and pedestrians",
    "a calm and quiet scene on a security camera",
    "people going about their day",
    "an ordinary street with nothing happening",
)
#: Demo text queries and the event class each should retrieve (open-set wordings).
DEMO_QUERIES: dict[str, str] = {
    "smoke and flames": "Fire",
    "two men fighting each other": "Fighting",
    "someone lying motionless on the floor": "Falling",
    "a crash between two vehicles": "CarCrash",
    "a crowd fleeing in panic": "Stampede",
}


def list_training_captions() -> list[str]:
    """List every caption the training script can produce (templates x wordings x optional places).

    Returns:
        Sorted, de-duplicated captions, lower case.
    """
    phrases: set[str] = set()
    for words in TRAIN_WORDINGS.values():
        for w in words:
            phrases.add(w)
            for places in TRAIN_PLACES.values():
                phrases.update(f"{w} {p}" for p in places)
    return sorted({t.format(p) for t in TRAIN_TEMPLATES for p in phrases})


def make_caption(cls: str, scene: str, rng: np.random.Generator, place_prob: float = 0.4) -> str:
    """Draw one training caption for a frame of class ``cls`` seen in scene ``scene``.

    Args:
        cls: ``NORMAL_CLASS`` or one of ``EVENT_CLASSES``.
        scene: One of ``SCENE_KINDS``.
        rng: Random generator.
        place_prob: Probability of appending a place phrase.

    Returns:
        The caption.
    """
    words = TRAIN_WORDINGS[cls]
    phrase = words[int(rng.integers(len(words)))]
    if rng.random() < place_prob:
        places = TRAIN_PLACES[scene]
        phrase = f"{phrase} {places[int(rng.integers(len(places)))]}"
    template = TRAIN_TEMPLATES[int(rng.integers(len(TRAIN_TEMPLATES)))]
    return template.format(phrase)


# --------------------------------------------------------------------------------------------------
# Public results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """One generated video and its ground truth.

    ``spans`` are anomalous frame spans ``(start, end)``, 0-based, end exclusive (Python slice
    semantics, the same numbers as in ``annotations.txt``).
    """

    name: str
    path: str  # relative to the scene set's root (the manifest's folder)
    label: str  # "normal" or "anomaly"
    cls: str  # NORMAL_CLASS or one of EVENT_CLASSES
    scene: str
    n_frames: int
    fps: int
    width: int
    height: int
    spans: tuple[tuple[int, int], ...]
    seed: int  # per-video seed sequence is (set seed, index)
    index: int

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.n_frames / self.fps


@dataclass(frozen=True)
class SceneSet:
    """A generated scene set on disk."""

    root: Path
    manifest_path: Path
    annotations_path: Path
    scenes_json_path: Path
    seed: int
    videos: tuple[VideoInfo, ...]


# --------------------------------------------------------------------------------------------------
# Scenes (static backgrounds and geometry)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    kind: str
    width: int
    height: int
    ground_top: float  # smallest feet y for people
    far_y: float
    near_y: float
    far_scale: float
    near_scale: float
    person_h0: float  # person height in px at scale 1
    lanes: tuple[tuple[float, int], ...]  # car lanes: (ground y, direction +1 right / -1 left)
    floor: tuple[float, float, float, float] | None  # corridor: (vx, back_half_width, back_floor_y, _)
    event_box: tuple[float, float, float, float]  # x0, x1, y0, y1 for event anchors (inside centre crop)

    def person_height(self, y: float) -> float:
        """Person height in px with feet at ``y``."""
        a = (y - self.far_y) / max(1.0, self.near_y - self.far_y)
        a = min(1.2, max(0.0, a))
        return self.person_h0 * (self.far_scale + (self.near_scale - self.far_scale) * a)

    def x_bounds(self, y: float) -> tuple[float, float]:
        """Walkable x range at feet row ``y``."""
        if self.floor is None:
            return (0.0, float(self.width))
        vx, bw, by, _ = self.floor
        a = (y - by) / max(1.0, self.height - by)
        a = min(1.0, max(0.0, a))
        left = (vx - bw) * (1 - a) + (-0.1 * self.width) * a
        right = (vx + bw) * (1 - a) + (1.1 * self.width) * a
        return (left + 4, right - 4)


def _rand_color(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    c = rng.integers(lo, hi, size=3)
    return (int(c[0]), int(c[1]), int(c[2]))


def _jitter(color: Sequence[int], rng: np.random.Generator, amount: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)  # type: ignore[return-value]


def _texture(img: np.ndarray, rng: np.random.Generator, strength: float) -> None:
    """Add low-frequency blotches so flat surfaces are not perfectly flat."""
    h, w = img.shape[:2]
    small = rng.normal(0, strength, size=(max(2, h // 16), max(2, w // 16), 1)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    fine = rng.normal(0, strength * 0.35, size=(h, w, 1)).astype(np.float32)
    img[:] = np.clip(img.astype(np.float32) + big + fine, 0, 255).astype(np.uint8)


def _draw_buildings(img: np.ndarray, rng: np.random.Generator, y1: int) -> None:
    w = img.shape[1]
    sky = _rand_color(rng, 120, 230)
    img[:y1] = sky
    x = -int(rng.integers(0, 30))
    while x < w:
        bw = int(rng.integers(40, 110))
        top = int(rng.integers(0, max(1, int(y1 * 0.5))))
        col = _rand_color(rng, 60, 200)
        cv2.rectangle(img, (x, top), (x + bw, y1), col, -1)
        win = _jitter((60, 70, 90), rng, 30) if rng.random() < 0.6 else _jitter((200, 200, 150), rng, 30)
        wx, wy = int(rng.integers(6, 12)), int(rng.integers(7, 13))
        for yy in range(top + 5, y1 - wy, wy + 6):
            for xx in range(x + 5, x + bw - wx, wx + 6):
                cv2.rectangle(img, (xx, yy), (xx + wx, yy + wy), win, -1)
        if rng.random() < 0.5:  # door / shop front
            dx = x + int(rng.integers(5, max(6, bw - 20)))
            cv2.rectangle(img, (dx, y1 - 16), (dx + 12, y1), _rand_color(rng, 20, 120), -1)
        x += bw + int(rng.integers(0, 8))


def _build_street(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, _Layout]:
    img = np.zeros((h, w, 3), np.uint8)
    hz = int(h * rng.uniform(0.22, 0.34))
    r0 = hz + int(h * rng.uniform(0.10, 0.14))
    r1 = r0 + int(h * rng.uniform(0.34, 0.40))
    _draw_buildings(img, rng, hz)
    walk = _jitter((165, 160, 150), rng, 30)
    img[hz:r0] = walk
    img[r1:] = walk
    road = _jitter((75, 75, 80), rng, 20)
    img[r0:r1] = road
    for yy in (r0, r1):
        cv2.line(img, (0, yy), (w, yy), _jitter((200, 200, 200), rng, 20), 2)
    if rng.random() < 0.7:  # paving joints
        step = int(rng.integers(14, 24))
        for xx in range(0, w, step):
            cv2.line(img, (xx, hz), (xx, r0), _jitter(walk, rng, 10), 1)
            cv2.line(img, (xx, r1), (xx - 8, h), _jitter(walk, rng, 10), 1)
    mid = (r0 + r1) // 2
    line_col = (230, 230, 230) if rng.random() < 0.6 else (220, 190, 60)
    dash = int(rng.integers(12, 26))
    for xx in range(int(rng.integers(0, dash)), w, dash * 2):
        cv2.line(img, (xx, mid), (xx + dash, mid), line_col, 2)
    if rng.random() < 0.5:  # zebra crossing
        cx = int(rng.integers(w // 5, 4 * w // 5))
        for yy in range(r0 + 4, r1 - 4, 8):
            cv2.rectangle(img, (cx - 18, yy), (cx + 18, yy + 4), (215, 215, 215), -1)
    _texture(img, rng, 5.0)
    lane_a = r0 + 0.30 * (r1 - r0) + 0.16 * (r1 - r0)
    lane_b = r0 + 0.78 * (r1 - r0) + 0.16 * (r1 - r0)
    # lane "ground y" is where wheels touch: lower half of each lane
    lanes = ((min(lane_a, mid - 2.0), -1), (min(lane_b, r1 - 2.0), +1))
    layout = _Layout(
        kind="street",
        width=w,
        height=h,
        ground_top=hz + 6.0,
        far_y=float(hz),
        near_y=float(h),
        far_scale=0.62,
        near_scale=1.12,
        person_h0=0.26 * h,
        lanes=lanes,
        floor=None,
        event_box=(0.32 * w, 0.68 * w, r0 + 0.55 * (r1 - r0), h - 0.03 * h),
    )
    return img, layout


def _draw_car(
    img: np.ndarray,
    cx: float,
    cy: float,
    length: float,
    facing: int,
    angle: float,
    colors: tuple[tuple[int, int, int], tuple[int, int, int]],
    crumple: float = 0.0,
) -> None:
    """Draw a car seen from the side (slightly from above), wheels on the ground at (cx, cy)."""
    body_col, win_col = colors
    ca, sa = math.cos(math.radians(angle)), math.sin(math.radians(angle))

    def tr(pts: list[tuple[float, float]]) -> np.ndarray:
        out = []
        for u, v in pts:
            lx, ly = facing * u * length, -v * length
            out.append((cx + ca * lx - sa * ly, cy + sa * lx + ca * ly))
        return np.round(np.array(out) * 4).astype(np.int32)  # 2 fractional bits for cv2 shift

    c = crumple
    front = [
        (0.5 - 0.13 * c, 0.07),
        (0.5 - 0.04 * c, 0.13),
        (0.5 - 0.16 * c, 0.18),
        (0.5 - 0.06 * c, 0.22),
        (0.42 - 0.08 * c, 0.27 - 0.03 * c),
    ]
    lower = [(-0.5, 0.07)] + front + [(-0.45, 0.27), (-0.5, 0.22)]
    shade = tuple(int(x * 0.6) for x in body_col)
    cv2.fillPoly(
        img,
        [tr([(-0.5, 0.05), (0.5 - 0.1 * c, 0.05), (0.5 - 0.1 * c, 0.12), (-0.5, 0.12)])],
        shade,
        cv2.LINE_AA,
        shift=2,
    )
    cv2.fillPoly(img, [tr(lower)], body_col, cv2.LINE_AA, shift=2)
    cabin = [(-0.32, 0.26), (0.22 - 0.06 * c, 0.26), (0.10 - 0.04 * c, 0.42 - 0.04 * c), (-0.25, 0.42)]
    cv2.fillPoly(img, [tr(cabin)], body_col, cv2.LINE_AA, shift=2)
    roof = [(-0.25, 0.42), (0.10 - 0.04 * c, 0.42 - 0.04 * c), (0.07, 0.455), (-0.23, 0.455)]
    light = tuple(min(255, int(x * 1.25 + 20)) for x in body_col)
    cv2.fillPoly(img, [tr(roof)], light, cv2.LINE_AA, shift=2)
    wins = [(-0.28, 0.285), (0.18 - 0.06 * c, 0.285), (0.08 - 0.04 * c, 0.39 - 0.03 * c), (-0.22, 0.39)]
    cv2.fillPoly(img, [tr(wins)], win_col, cv2.LINE_AA, shift=2)
    p = tr([(-0.04, 0.28), (-0.04, 0.40)])
    cv2.line(img, tuple(p[0]), tuple(p[1]), body_col, max(1, int(length * 0.03)), cv2.LINE_AA, shift=2)
    if c > 0:  # crumple creases and a cracked windscreen
        for a, b in (
            ((0.30, 0.12), (0.42, 0.20)),
            ((0.26, 0.22), (0.40, 0.10)),
            ((0.05, 0.30), (0.14, 0.37)),
        ):
            q = tr([a, b])
            cv2.line(img, tuple(q[0]), tuple(q[1]), (30, 30, 30), max(1, int(length * 0.02)), cv2.LINE_AA, 2)
        q = tr([(0.0, 0.30), (0.08, 0.38), (0.02, 0.36), (0.1, 0.3)])
        cv2.polylines(img, [q], False, (235, 235, 235), 1, cv2.LINE_AA, shift=2)
    else:
        q = tr([(0.47, 0.16), (0.5, 0.16), (0.5, 0.2), (0.47, 0.2)])
        cv2.fillPoly(img, [q], (245, 240, 200), cv2.LINE_AA, shift=2)
    q = tr([(-0.5, 0.16), (-0.47, 0.16), (-0.47, 0.2), (-0.5, 0.2)])
    cv2.fillPoly(img, [q], (200, 30, 30), cv2.LINE_AA, shift=2)
    r = max(2, int(round(0.075 * length)))
    for u in (-0.3, 0.3):
        q = tr([(u, 0.075)])[0]
        cv2.circle(img, (int(q[0]) >> 2, int(q[1]) >> 2), r, (25, 25, 25), -1, cv2.LINE_AA)
        cv2.circle(img, (int(q[0]) >> 2, int(q[1]) >> 2), max(1, r // 2), (140, 140, 140), -1, cv2.LINE_AA)


_CAR_COLORS = (
    (235, 235, 235),
    (190, 190, 195),
    (30, 30, 35),
    (170, 30, 30),
    (30, 60, 150),
    (40, 90, 60),
    (120, 120, 125),
    (90, 50, 30),
    (200, 200, 170),
    (60, 110, 170),
)


def _car_colors(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    body = _jitter(_CAR_COLORS[int(rng.integers(len(_CAR_COLORS)))], rng, 15)
    win = _jitter((50, 65, 85), rng, 15)
    return body, win


def _build_carpark(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, _Layout]:
    img = np.zeros((h, w, 3), np.uint8)
    hz = int(h * rng.uniform(0.14, 0.24))
    wall = _rand_color(rng, 70, 200)
    img[:hz] = wall
    for xx in range(int(rng.integers(0, 60)), w, int(rng.integers(50, 90))):  # pillars
        cv2.rectangle(img, (xx, 0), (xx + 10, hz), _jitter(wall, rng, 40), -1)
    ground = _jitter((110, 110, 112), rng, 30)
    img[hz:] = ground
    line_col = (225, 225, 225) if rng.random() < 0.6 else (225, 200, 70)
    bay_w = int(rng.integers(44, 60))
    top_row = (hz, hz + int(0.2 * h))
    bot_row = (h - int(0.17 * h), h)
    x_off = int(rng.integers(0, bay_w))
    layout_probe = _Layout(
        "carpark", w, h, hz + 4.0, float(hz), float(h), 0.66, 1.1, 0.26 * h, (), None, (0, 0, 0, 0)
    )
    for ya, yb in (top_row, bot_row):
        cv2.line(img, (0, ya if ya > hz else yb), (w, ya if ya > hz else yb), line_col, 1)
        for xx in range(x_off - bay_w, w + bay_w, bay_w):
            cv2.line(img, (xx, ya), (xx + 6, yb), line_col, 2)
    _texture(img, rng, 6.0)
    occupancy = rng.uniform(0.3, 0.85)
    for ya, yb in (top_row, bot_row):
        gy = yb - 3 if ya > hz else ya + int(0.17 * h)
        for xx in range(x_off - bay_w, w + bay_w, bay_w):
            if rng.random() < occupancy:
                length = 1.8 * layout_probe.person_height(gy) * rng.uniform(0.9, 1.1)
                length = min(length, bay_w * 1.7)
                _draw_car(
                    img, xx + bay_w / 2 + 3, gy, length, int(rng.choice([-1, 1])), 0.0, _car_colors(rng)
                )
    aisle0, aisle1 = top_row[1] + 0.04 * h, bot_row[0]
    lanes = ((aisle0 + 0.45 * (aisle1 - aisle0), -1), (aisle0 + 0.9 * (aisle1 - aisle0), +1))
    layout = _Layout(
        kind="carpark",
        width=w,
        height=h,
        ground_top=hz + 6.0,
        far_y=float(hz),
        near_y=float(h),
        far_scale=0.66,
        near_scale=1.1,
        person_h0=0.26 * h,
        lanes=lanes,
        floor=None,
        event_box=(0.32 * w, 0.68 * w, aisle0 + 0.5 * (aisle1 - aisle0), min(h - 4.0, aisle1 + 0.08 * h)),
    )
    return img, layout


def _build_corridor(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, _Layout]:
    img = np.zeros((h, w, 3), np.uint8)
    vx = w * rng.uniform(0.42, 0.58)
    vy = h * rng.uniform(0.30, 0.40)
    bw = w * rng.uniform(0.10, 0.16)
    bh_up, bh_dn = h * rng.uniform(0.10, 0.15), h * rng.uniform(0.08, 0.12)
    wall = _rand_color(rng, 120, 230)
    floor_c = _rand_color(rng, 60, 190)
    ceil_c = _jitter((215, 215, 210), rng, 25)
    bl, br, bt, bb = vx - bw, vx + bw, vy - bh_up, vy + bh_dn

    def poly(pts: list[tuple[float, float]]) -> np.ndarray:
        return np.round(np.array(pts)).astype(np.int32)

    cv2.fillPoly(img, [poly([(0, 0), (w, 0), (br, bt), (bl, bt)])], ceil_c)
    cv2.fillPoly(img, [poly([(0, 0), (bl, bt), (bl, bb), (0, h * 1.25)])], wall)
    cv2.fillPoly(img, [poly([(w, 0), (br, bt), (br, bb), (w, h * 1.25)])], _jitter(wall, rng, 20))
    cv2.fillPoly(img, [poly([(0, h * 1.25), (bl, bb), (br, bb), (w, h * 1.25)])], floor_c)
    cv2.rectangle(img, (int(bl), int(bt)), (int(br), int(bb)), _jitter(wall, rng, 35), -1)
    if rng.random() < 0.6:  # door at the end
        cv2.rectangle(
            img,
            (int(vx - bw * 0.3), int(bb - (bb - bt) * 0.75)),
            (int(vx + bw * 0.3), int(bb)),
            _rand_color(rng, 30, 150),
            -1,
        )
    for k in range(1, 9):  # floor tiles converging to the vanishing point
        a = k / 9
        cv2.line(
            img,
            (int(bl + a * (br - bl)), int(bb)),
            (int(-0.3 * w + a * 1.6 * w), int(h * 1.25)),
            _jitter(floor_c, rng, 25),
            1,
        )
    for d in (0.15, 0.35, 0.6, 0.85):  # cross lines and ceiling lights
        y = bb + (h - bb) * d * d * 1.3
        if y < h:
            cv2.line(img, (0, int(y)), (w, int(y)), _jitter(floor_c, rng, 25), 1)
        yc = bt * (1 - d)
        cw = bw * (1 + 3.5 * d) * 0.35
        cv2.rectangle(img, (int(vx - cw), int(yc - 2 - 4 * d)), (int(vx + cw), int(yc)), (250, 250, 235), -1)
    for side in (-1, 1):  # doors on the side walls
        for d in rng.uniform(0.2, 0.8, size=int(rng.integers(1, 3))):
            x_out = vx + side * (bw + (w / 2 + 30 - bw) * d)
            x_in = vx + side * (bw + (w / 2 + 30 - bw) * (d - 0.12))

            def y_at(x: float, top: bool) -> float:
                a = abs(x - vx) / (w / 2)
                return (
                    (bt - (bt - 0) * (a - bw / (w / 2)) / (1 - bw / (w / 2)) * 0.6)
                    if top
                    else (bb + (h * 1.25 - bb) * (a - bw / (w / 2)) / (1 - bw / (w / 2)))
                )

            col = _rand_color(rng, 40, 180)
            cv2.fillPoly(
                img,
                [
                    poly(
                        [
                            (x_in, y_at(x_in, True) + 10),
                            (x_out, y_at(x_out, True) + 10),
                            (x_out, y_at(x_out, False)),
                            (x_in, y_at(x_in, False)),
                        ]
                    )
                ],
                col,
            )
    _texture(img, rng, 4.0)
    layout = _Layout(
        kind="corridor",
        width=w,
        height=h,
        ground_top=bb + 6.0,
        far_y=float(bb),
        near_y=float(h),
        far_scale=0.45,
        near_scale=1.25,
        person_h0=0.26 * h,
        lanes=(),
        floor=(vx, bw, bb, 0.0),
        event_box=(0.36 * w, 0.64 * w, bb + 0.55 * (h - bb), h - 0.04 * h),
    )
    return img, layout


_BUILDERS = {"street": _build_street, "carpark": _build_carpark, "corridor": _build_corridor}

# --------------------------------------------------------------------------------------------------
# People
# --------------------------------------------------------------------------------------------------

ARM_SWING, ARM_RUN, ARM_FIGHT, ARM_TALK, ARM_LIE, ARM_IDLE = range(6)


class _Person:
    """A person with per-frame state arrays (feet position, height, pose)."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.x = np.zeros(n, np.float32)
        self.y = np.zeros(n, np.float32)
        self.h = np.zeros(n, np.float32)
        self.vis = np.zeros(n, bool)
        self.facing = np.ones(n, np.int8)
        self.phase = np.zeros(n, np.float32)
        self.stride = np.zeros(n, np.float32)
        self.arm = np.zeros(n, np.int8)
        self.angle = np.zeros(n, np.float32)  # degrees; + tips the head towards the facing direction
        self.punch = np.zeros(n, np.float32)  # fight: 0..1 extension of the punching arm
        self.punch_side = np.ones(n, np.int8)
        self.kick = np.zeros(n, np.float32)
        skin = ((235, 200, 170), (200, 150, 110), (150, 100, 70), (100, 65, 45), (225, 185, 150))
        self.skin = _jitter(skin[int(rng.integers(len(skin)))], rng, 10)
        self.shirt = _rand_color(rng, 20, 240)
        self.pants = _jitter(
            ((40, 40, 60), (30, 30, 30), (90, 80, 60), (60, 70, 110), (120, 120, 120))[int(rng.integers(5))],
            rng,
            15,
        )
        self.hair = _jitter(
            ((30, 20, 10), (80, 50, 20), (200, 170, 90), (20, 20, 20), (150, 150, 150))[int(rng.integers(5))],
            rng,
            10,
        )

    def depth(self, f: int) -> float:
        return float(self.y[f])

    def draw(self, img: np.ndarray, f: int) -> None:
        if not self.vis[f]:
            return
        _draw_person(
            img,
            float(self.x[f]),
            float(self.y[f]),
            float(self.h[f]),
            int(self.facing[f]),
            float(self.phase[f]),
            float(self.stride[f]),
            int(self.arm[f]),
            float(self.angle[f]),
            float(self.punch[f]),
            int(self.punch_side[f]),
            float(self.kick[f]),
            (self.skin, self.shirt, self.pants, self.hair),
        )


def _draw_person(
    img: np.ndarray,
    x: float,
    y: float,
    h: float,
    facing: int,
    phase: float,
    stride: float,
    arm: int,
    angle: float,
    punch: float,
    punch_side: int,
    kick: float,
    colors: tuple[tuple[int, int, int], ...],
) -> None:
    skin, shirt, pants, hair = colors
    th = math.radians(angle)
    ct, st = math.cos(th), math.sin(th)

    def P(u: float, v: float) -> tuple[int, int]:
        ur, vr = u * ct + v * st, -u * st + v * ct
        return (int(round((x + facing * ur * h) * 4)), int(round((y - vr * h) * 4)))

    def limb(a: tuple[float, float], b: tuple[float, float], col: tuple[int, int, int], t: int) -> None:
        cv2.line(img, P(*a), P(*b), col, t, cv2.LINE_AA, shift=2)

    def seg(o: tuple[float, float], ang: float, ln: float) -> tuple[float, float]:
        # angle measured from straight down, + towards facing
        return (o[0] + ln * math.sin(ang), o[1] - ln * math.cos(ang))

    limb_t = max(1, int(round(0.075 * h)))
    torso_t = max(2, int(round(0.17 * h)))
    hip, sh = (0.0, 0.49), (0.0, 0.77)  # in units of the person's height, feet at (0, 0)
    dark_p = tuple(int(c * 0.75) for c in pants)
    dark_s = tuple(int(c * 0.75) for c in shirt)
    # legs
    legs = []
    for side in (-1, 1):
        a = side * stride * math.sin(phase)
        if kick > 0 and side == 1:
            a = a * (1 - kick) + kick * 1.4
        knee = seg(hip, a + (0.15 if arm == ARM_RUN and side * math.sin(phase) < 0 else 0), 0.25)
        foot = seg(knee, a - (0.5 if arm == ARM_RUN and side * math.sin(phase) < 0 else 0.0), 0.25)
        legs.append((knee, foot))
    # arms: (elbow, hand) for back (side -1) and front (side +1)
    arms = []
    for side in (-1, 1):
        if arm == ARM_SWING:
            a = -side * 0.8 * stride * math.sin(phase)
            el = seg(sh, a, 0.17)
            hd = seg(el, a + 0.25, 0.16)
        elif arm == ARM_RUN:
            a = -side * 1.0 * math.sin(phase) + 0.3
            el = seg(sh, a, 0.16)
            hd = seg(el, a + 1.6, 0.14)
        elif arm == ARM_FIGHT:
            if side == punch_side:  # punching arm: from guard to fully extended at head height
                a = 1.0 + 0.75 * punch
                el = seg(sh, a, 0.18)
                hd = seg(el, a + 1.3 * (1 - punch), 0.18)
            else:  # guard: fist in front of the face
                a = 1.1
                el = seg(sh, a, 0.16)
                hd = seg(el, 2.9, 0.15)
        elif arm == ARM_TALK:
            a = (0.5 + 0.3 * math.sin(phase)) if side == 1 else 0.1
            el = seg(sh, a, 0.17)
            hd = seg(el, a + (1.2 if side == 1 else 0.2), 0.15)
        elif arm == ARM_LIE:  # arms flung out
            a = 1.2 + side * 0.9
            el = seg(sh, a, 0.17)
            hd = seg(el, a, 0.16)
        else:  # idle
            a = 0.08 * side + 0.05 * math.sin(phase)
            el = seg(sh, a, 0.17)
            hd = seg(el, a + 0.1, 0.16)
        arms.append((el, hd))
    # back limbs first (darker), torso, front limbs, head
    limb(hip, legs[0][0], dark_p, limb_t)
    limb(legs[0][0], legs[0][1], dark_p, limb_t)
    limb(sh, arms[0][0], dark_s, limb_t)
    limb(arms[0][0], arms[0][1], dark_s, limb_t)
    limb((0.0, 0.53), (0.0, 0.76), shirt, torso_t)
    limb(hip, legs[1][0], pants, limb_t)
    limb(legs[1][0], legs[1][1], pants, limb_t)
    limb(sh, arms[1][0], shirt, limb_t)
    limb(arms[1][0], arms[1][1], shirt, limb_t)
    for hd in (arms[0][1], arms[1][1]):
        cv2.circle(img, P(*hd), max(4, int(round(0.035 * h * 4))), skin, -1, cv2.LINE_AA, shift=2)
    hr = max(2.0, 0.075 * h)
    cv2.circle(img, P(0.0, 0.89), int(round(hr * 4)), skin, -1, cv2.LINE_AA, shift=2)
    cv2.circle(img, P(-0.015, 0.92), int(round(hr * 0.85 * 4)), hair, -1, cv2.LINE_AA, shift=2)
    cv2.circle(img, P(0.02, 0.885), int(round(hr * 0.8 * 4)), skin, -1, cv2.LINE_AA, shift=2)


def _shadow(img: np.ndarray, x: float, y: float, half_w: float) -> None:
    x0, x1 = int(max(0, x - half_w)), int(min(img.shape[1], x + half_w))
    y0, y1 = int(max(0, y - 1)), int(min(img.shape[0], y + 2))
    if x1 > x0 and y1 > y0:
        img[y0:y1, x0:x1] = (img[y0:y1, x0:x1] * 0.7).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Motion helpers
# --------------------------------------------------------------------------------------------------


def _walk(
    p: _Person,
    layout: _Layout,
    f0: int,
    f1: int,
    start: tuple[float, float],
    end: tuple[float, float],
    speed: float,
    fps: int,
    run: bool = False,
    phase0: float = 0.0,
) -> tuple[float, float]:
    """Move ``p`` from ``start`` towards ``end`` over frames [f0, f1) at ``speed`` (px/s at scale 1).

    Returns:
        Where the person is at frame ``f1`` (or at ``end``, if reached earlier; it stays there).
    """
    x, y = start
    ex, ey = end
    phase = phase0
    n = len(p.x)
    for f in range(max(0, f0), min(n, f1)):
        h = layout.person_height(y)
        p.x[f], p.y[f], p.h[f], p.vis[f] = x, y, h, True
        dx, dy = ex - x, ey - y
        dist = math.hypot(dx, dy)
        if abs(dx) > 1e-3:
            p.facing[f] = 1 if dx > 0 else -1
        elif f > 0:
            p.facing[f] = p.facing[f - 1]
        moving = dist > 0.5
        p.phase[f] = phase
        p.stride[f] = (0.75 if run else 0.38) if moving else 0.0
        p.arm[f] = (ARM_RUN if run else ARM_SWING) if moving else ARM_IDLE
        p.angle[f] = (14.0 if run else 2.0) if moving else 0.0
        step = speed * (h / layout.person_h0) / fps
        if moving:
            k = min(1.0, step / dist)
            x, y = x + dx * k, y + dy * k
            phase += step / (0.45 * h) * math.pi * (0.8 if run else 1.0)
    return x, y


def _offscreen_x(layout: _Layout, y: float, side: int, margin: float = 0.5) -> float:
    x0, x1 = layout.x_bounds(y)
    h = layout.person_height(y)
    return x0 - margin * h - 5 if side < 0 else x1 + margin * h + 5


def _random_floor_point(
    layout: _Layout, rng: np.random.Generator, y_range: tuple[float, float] | None = None
) -> tuple[float, float]:
    y0, y1 = y_range or (layout.ground_top, layout.height - 3.0)
    y = float(rng.uniform(y0, y1))
    x0, x1 = layout.x_bounds(y)
    return float(rng.uniform(x0, x1)), y


def _add_walker(people: list[_Person], layout: _Layout, rng: np.random.Generator, n: int, fps: int) -> None:
    """A pedestrian crossing the view (or pacing inside it) at some time during the video."""
    p = _Person(n, rng)
    f0 = int(rng.integers(-n // 2, n - fps))
    speed = float(rng.uniform(22, 40))
    if layout.kind == "corridor" and rng.random() < 0.6:  # walking along the corridor, towards/away
        near = (float(rng.uniform(0.3, 0.7) * layout.width), layout.height + 40.0)
        far = _random_floor_point(layout, rng, (layout.ground_top, layout.ground_top + 10))
        start, end = (near, far) if rng.random() < 0.5 else (far, near)
    else:
        y = float(rng.uniform(layout.ground_top, layout.height - 2.0))
        side = int(rng.choice([-1, 1]))
        y2 = float(np.clip(y + rng.normal(0, 12), layout.ground_top, layout.height - 2.0))
        start = (_offscreen_x(layout, y, side), y)
        end = (_offscreen_x(layout, y2, -side), y2)
    _walk(p, layout, f0, n, start, end, speed, fps, phase0=float(rng.uniform(0, 6.28)))
    people.append(p)


class _Car:
    """A car with per-frame state."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.x = np.zeros(n, np.float32)
        self.y = np.zeros(n, np.float32)
        self.length = np.zeros(n, np.float32)
        self.angle = np.zeros(n, np.float32)
        self.crumple = np.zeros(n, np.float32)
        self.facing = np.ones(n, np.int8)
        self.vis = np.zeros(n, bool)
        self.colors = _car_colors(rng)

    def depth(self, f: int) -> float:
        return float(self.y[f])

    def draw(self, img: np.ndarray, f: int) -> None:
        if self.vis[f]:
            _draw_car(
                img,
                float(self.x[f]),
                float(self.y[f]),
                float(self.length[f]),
                int(self.facing[f]),
                float(self.angle[f]),
                self.colors,
                float(self.crumple[f]),
            )


def _add_traffic_car(cars: list[_Car], layout: _Layout, rng: np.random.Generator, n: int, fps: int) -> None:
    if not layout.lanes:
        return
    lane_y, d = layout.lanes[int(rng.integers(len(layout.lanes)))]
    c = _Car(n, rng)
    length = 1.85 * layout.person_height(lane_y) * rng.uniform(0.9, 1.1)
    speed = float(rng.uniform(50, 120)) / fps
    f0 = int(rng.integers(-n // 3, n - 2))
    x = -length if d > 0 else layout.width + length
    for f in range(max(0, f0), n):
        if f >= f0:
            xx = x + d * speed * (f - f0)
            if xx < -length - 2 or xx > layout.width + length + 2:
                break
            c.x[f], c.y[f], c.length[f], c.facing[f], c.vis[f] = xx, lane_y, length, d, True
    cars.append(c)


# --------------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------------


class _Fire:
    """Flames (emissive, drawn after lighting) and a smoke plume (lit) during a frame span."""

    def __init__(
        self,
        rng: np.random.Generator,
        layout: _Layout,
        span: tuple[int, int],
        fps: int,
        anchor: tuple[float, float],
    ) -> None:
        self.span, self.fps = span, fps
        self.x, self.y = anchor
        ph = layout.person_height(self.y)
        self.smoky = rng.random() < 0.3
        self.flame_h = ph * rng.uniform(1.0, 1.8) * (0.5 if self.smoky else 1.0)
        self.base_w = ph * rng.uniform(0.7, 1.5)
        k = int(rng.integers(5, 10))
        self.tongue_x = rng.uniform(-0.5, 0.5, size=k)
        self.tongue_h = rng.uniform(0.45, 1.0, size=k)
        self.tongue_f = rng.uniform(4.0, 9.0, size=k)
        self.tongue_p = rng.uniform(0, 6.28, size=k)
        n_p = int(rng.integers(40, 90))
        dur = (span[1] - span[0]) / fps
        self.p_birth = np.sort(rng.uniform(-0.3, dur, size=n_p))
        self.p_life = rng.uniform(1.5, 3.5, size=n_p)
        self.p_dx = rng.normal(0, 0.25, size=n_p) * ph
        self.p_vy = rng.uniform(0.8, 1.6, size=n_p) * ph
        self.p_r0 = rng.uniform(0.10, 0.22, size=n_p) * ph
        self.wind = rng.normal(0, 0.4) * ph
        g = float(rng.uniform(40, 170)) if not self.smoky else float(rng.uniform(60, 200))
        self.smoke_col = np.array([g, g, g * rng.uniform(0.95, 1.05)], np.float32)
        self.smoke_a = float(rng.uniform(0.55, 0.85))
        self.base_kind = int(rng.integers(3)) if layout.kind != "corridor" else int(rng.integers(2))
        self.base_col = _jitter((45, 40, 38), rng, 15)
        self.ph = ph

    def _active(self, f: int) -> bool:
        return self.span[0] <= f < self.span[1]

    def _intensity(self, f: int) -> float:
        t = (f - self.span[0]) / self.fps
        left = (self.span[1] - f) / self.fps
        return min(1.0, 0.5 + 0.5 * t / 1.5) * (0.55 + 0.45 * min(1.0, left / 1.0))

    def depth(self, f: int) -> float:
        return self.y

    def draw(self, img: np.ndarray, f: int) -> None:
        """Lit part: the burning object and the smoke."""
        if not self._active(f):
            return
        ph = self.ph
        if self.base_kind == 1:  # bin / box
            cv2.rectangle(
                img,
                (int(self.x - 0.25 * ph), int(self.y - 0.45 * ph)),
                (int(self.x + 0.25 * ph), int(self.y)),
                self.base_col,
                -1,
            )
        elif self.base_kind == 2:  # burnt-out car
            _draw_car(img, self.x, self.y + 2, 2.3 * ph, 1, 0.0, (self.base_col, (20, 20, 20)))
        t = (f - self.span[0]) / self.fps
        age = t - self.p_birth
        live = (age >= 0) & (age < self.p_life)
        if not live.any():
            return
        h, w = img.shape[:2]
        a = age[live]
        px = self.x + self.p_dx[live] * (0.3 + a) + self.wind * a
        py = self.y - self.flame_h * 0.6 - self.p_vy[live] * a
        pr = self.p_r0[live] * (1 + 1.3 * a)
        alpha = self.smoke_a * (1 - a / self.p_life[live]) * (1.6 if self.smoky else 1.0)
        x0 = int(max(0, np.min(px - pr) - 4))
        x1 = int(min(w, np.max(px + pr) + 4))
        y0 = int(max(0, np.min(py - pr) - 4))
        y1 = int(min(h, np.max(py + pr) + 4))
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.float32)
        for cx, cy, r, al in zip(px, py, pr, alpha, strict=True):
            cv2.circle(mask, (int(cx - x0), int(cy - y0)), max(1, int(r)), float(min(1.0, al)), -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, ph * 0.08))[..., None]
        roi = img[y0:y1, x0:x1].astype(np.float32)
        img[y0:y1, x0:x1] = (roi * (1 - mask) + self.smoke_col * mask).astype(np.uint8)

    def draw_emissive(self, img: np.ndarray, f: int) -> None:
        """Emissive part: glow and flames (drawn after the lighting so they stay bright at night)."""
        if not self._active(f):
            return
        t = (f - self.span[0]) / self.fps
        inten = self._intensity(f)
        fh = self.flame_h * inten
        bw = self.base_w * (0.7 + 0.3 * inten)
        h, w = img.shape[:2]
        # glow
        sig = max(1.0, bw * 0.35)
        gx0, gx1 = int(max(0, self.x - 1.1 * bw - 3 * sig)), int(min(w, self.x + 1.1 * bw + 3 * sig))
        gy0, gy1 = int(max(0, self.y - 1.4 * fh - 2 - 3 * sig)), int(min(h, self.y + 0.5 * fh + 2 + 3 * sig))
        if gx1 > gx0 and gy1 > gy0:
            glow = np.zeros((gy1 - gy0, gx1 - gx0), np.float32)
            cv2.ellipse(
                glow,
                (int(self.x - gx0), int(self.y - 0.4 * fh - gy0)),
                (max(1, int(1.1 * bw)), max(1, int(0.9 * fh + 2))),
                0,
                0,
                360,
                1.0,
                -1,
            )
            glow = cv2.GaussianBlur(glow, (0, 0), sig)[..., None]
            roi = img[gy0:gy1, gx0:gx1].astype(np.float32)
            img[gy0:gy1, gx0:gx1] = np.clip(
                roi + glow * np.array([90, 45, 5], np.float32) * inten, 0, 255
            ).astype(np.uint8)
        for layer, (scale, col) in enumerate(
            ((1.0, (215, 50, 10)), (0.72, (250, 140, 20)), (0.42, (255, 235, 120)))
        ):
            for tx, th_, tf, tp in zip(
                self.tongue_x, self.tongue_h, self.tongue_f, self.tongue_p, strict=True
            ):
                flick = 0.75 + 0.25 * math.sin(tf * t + tp) + 0.1 * math.sin(2.3 * tf * t + 1.7 * tp)
                tip_h = fh * th_ * flick * scale
                cx = self.x + tx * bw * (1.0 - 0.3 * layer)
                half = bw * 0.22 * scale
                sway = 0.25 * tip_h * math.sin(0.7 * tf * t + tp)
                pts = np.array(
                    [
                        (cx - half, self.y),
                        (cx - half * 0.6, self.y - tip_h * 0.5),
                        (cx + sway, self.y - tip_h),
                        (cx + half * 0.6, self.y - tip_h * 0.45),
                        (cx + half, self.y),
                    ]
                )
                cv2.fillPoly(img, [np.round(pts * 4).astype(np.int32)], col, cv2.LINE_AA, shift=2)


class _Ground:
    """Flat things on the ground (debris, skid marks) during a frame span."""

    def __init__(self, span: tuple[int, int]) -> None:
        self.span = span
        self.items: list[tuple[np.ndarray, tuple[int, int, int], int]] = []  # polyline pts, color, thickness
        self.start_xy: list[np.ndarray] = []

    def depth(self, f: int) -> float:
        return -1.0  # under everything

    def draw(self, img: np.ndarray, f: int) -> None:
        if not (self.span[0] <= f < self.span[1]):
            return
        spread = min(1.0, (f - self.span[0] + 1) / 3)
        for (pts, col, t), s in zip(self.items, self.start_xy, strict=True):
            p = s + (pts - s) * spread
            if t < 0:
                cv2.fillPoly(img, [np.round(p * 4).astype(np.int32)], col, cv2.LINE_AA, shift=2)
            else:
                cv2.polylines(img, [np.round(p * 4).astype(np.int32)], False, col, t, cv2.LINE_AA, shift=2)


def _plan_fight(
    rng: np.random.Generator, layout: _Layout, span: tuple[int, int], n: int, fps: int, people: list[_Person]
) -> None:
    ax, ay = _random_floor_point(layout, rng, layout.event_box[2:])
    ax = float(rng.uniform(*layout.event_box[:2]))
    h = layout.person_height(ay)
    n_f = 3 if rng.random() < 0.2 else 2
    s0, s1 = span
    dist = h * rng.uniform(0.42, 0.6)
    for k in range(n_f):
        p = _Person(n, rng)
        side = -1 if k % 2 == 0 else 1
        gx = ax + side * dist / 2 + (0.0 if k < 2 else side * dist * 0.9)
        gy = ay + (0.0 if k < 2 else float(rng.uniform(-0.15, 0.15) * h))
        # approach (normal walking) during the lead-in
        t_in = float(rng.uniform(1.5, 4.0))
        start = (gx + side * 32 * t_in * (h / layout.person_h0), gy + float(rng.normal(0, 5)))
        _walk(p, layout, s0 - int(t_in * fps), s0, start, (gx, gy), 32.0 * 1.05, fps)
        f_punch, ph0 = float(rng.uniform(1.8, 3.2)), float(rng.uniform(0, 6.28))
        for f in range(s0, min(n, s1)):
            t = (f - s0) / fps
            wave = math.sin(2 * math.pi * f_punch * t + ph0)
            jit = 0.08 * h * math.sin(2 * math.pi * 0.9 * t + ph0 + k) + 0.04 * h * math.sin(7.1 * t + k)
            bounce = 0.05 * h * abs(math.sin(2 * math.pi * 1.7 * t + k))
            p.x[f], p.y[f], p.h[f], p.vis[f] = gx + jit, gy - bounce, layout.person_height(gy), True
            p.facing[f] = -side
            p.arm[f] = ARM_FIGHT
            p.punch[f] = max(0.0, wave)
            p.punch_side[f] = 1 if (int(2 * f_punch * t + ph0 / math.pi) % 2 == 0) else -1
            p.angle[f] = 20.0 * max(0.0, wave) - 12.0 * max(0.0, -wave) + float(rng.normal(0, 3))
            p.stride[f] = 0.32
            p.phase[f] = math.pi / 2 + 0.3 * math.sin(3 * t + k)
            p.kick[f] = max(0.0, math.sin(2 * math.pi * 0.7 * t + 2 * ph0) - 0.75) * 4 if k == 0 else 0.0
        # walk away after the fight
        end = (_offscreen_x(layout, gy, side), gy + float(rng.normal(0, 6)))
        _walk(p, layout, s1, n, (gx, gy), end, float(rng.uniform(30, 45)), fps)
        people.append(p)


def _plan_fall(
    rng: np.random.Generator, layout: _Layout, span: tuple[int, int], n: int, fps: int, people: list[_Person]
) -> None:
    ey0, ey1 = layout.event_box[2:]
    # Keep the fallen body clear of the bottom edge.
    gy = float(rng.uniform(ey0, min(ey1, 0.9 * layout.height)))
    gx = float(rng.uniform(*layout.event_box[:2]))
    h = layout.person_height(gy)
    p = _Person(n, rng)
    s0, s1 = span
    side = int(rng.choice([-1, 1]))
    t_in = float(rng.uniform(1.5, 4.0))
    start = (gx - side * 32 * t_in * (h / layout.person_h0), gy + float(rng.normal(0, 5)))
    _walk(p, layout, s0 - int(t_in * fps), s0, start, (gx, gy), 32.0 * 1.05, fps)
    direction = 1.0 if rng.random() < 0.6 else -1.0  # forwards or backwards
    t_fall = float(rng.uniform(0.3, 0.6))
    t_up = float(rng.uniform(0.5, 0.9))
    dur = (s1 - s0) / fps
    twitch = float(rng.uniform(0, 6.28))
    for f in range(s0, min(n, s1)):
        t = (f - s0) / fps
        if t < t_fall:
            a = (t / t_fall) ** 1.6
        elif t > dur - t_up:
            a = max(0.0, (dur - t) / t_up)
        else:
            a = 1.0
        p.x[f], p.y[f], p.h[f], p.vis[f] = gx, gy - a * 0.09 * h, h, True  # lying body rests on the floor
        p.facing[f] = side
        p.angle[f] = direction * (90.0 * a + (3.0 * math.sin(2.0 * t + twitch) if a == 1.0 else 0.0))
        p.arm[f] = ARM_LIE if a > 0.4 else ARM_IDLE
        p.stride[f] = 0.12 if a > 0.5 else 0.25
        p.phase[f] = 1.0
    end = (_offscreen_x(layout, gy, side), gy + float(rng.normal(0, 6)))
    _walk(p, layout, s1, n, (gx, gy), end, float(rng.uniform(25, 38)), fps)
    people.append(p)


def _plan_crash(
    rng: np.random.Generator,
    layout: _Layout,
    span: tuple[int, int],
    n: int,
    fps: int,
    cars: list[_Car],
    ground: list[_Ground],
) -> None:
    lane_y, d = layout.lanes[int(rng.integers(len(layout.lanes)))]
    px = float(rng.uniform(0.4, 0.6) * layout.width)
    length = 1.85 * layout.person_height(lane_y) * rng.uniform(0.9, 1.1)
    s0, s1 = span
    a, b = _Car(n, rng), _Car(n, rng)
    # car B comes in at an angle (swerving across or pulling out) and meets A front to front/side
    phi = float(rng.uniform(15, 35) if layout.kind == "street" else rng.uniform(30, 70))
    phi *= float(rng.choice([-1, 1]))
    v_a, v_b = float(rng.uniform(70, 120)) / fps, float(rng.uniform(60, 110)) / fps
    ca = (px - d * length / 2, lane_y)
    # B faces -d; its front touches A's front
    rad = math.radians(phi)
    dir_b = np.array([-d * math.cos(rad), -d * math.sin(rad)])
    cb = np.array([px, lane_y]) - dir_b * length / 2 + np.array([0.0, 0.0])
    spin_a, spin_b = float(rng.uniform(8, 30)) * float(rng.choice([-1, 1])), float(rng.uniform(10, 35))
    slide_a, slide_b = float(rng.uniform(4, 14)), float(rng.uniform(4, 14))
    for f in range(0, min(n, s1)):
        dt = f - s0
        if dt < 0:  # approach (normal driving)
            ax_, ay_ = ca[0] + d * v_a * dt, ca[1]
            bx_, by_ = cb + dir_b * v_b * dt
            for car, x_, y_, ang, fac in ((a, ax_, ay_, 0.0, d), (b, bx_, by_, phi, -d)):
                if -length * 1.2 < x_ < layout.width + length * 1.2 and y_ < layout.height + length * 0.5:
                    car.x[f], car.y[f], car.length[f], car.facing[f], car.vis[f] = x_, y_, length, fac, True
                    car.angle[f] = ang
        else:
            k = min(1.0, dt / max(1.0, 0.4 * fps))
            a.x[f], a.y[f] = ca[0] + d * slide_a * k, ca[1] + 0.3 * slide_a * k
            a.angle[f], a.facing[f] = spin_a * k, d
            bpos = cb + dir_b * slide_b * k * 0.5
            b.x[f], b.y[f] = bpos[0], bpos[1]
            b.angle[f], b.facing[f] = phi + spin_b * k * (1 if phi > 0 else -1), -d
            for car in (a, b):
                car.length[f], car.vis[f], car.crumple[f] = length, True, 1.0
    cars.extend([a, b])
    # debris and skid marks
    g = _Ground(span)
    center = np.array([px, lane_y - 0.12 * length])
    for _ in range(int(rng.integers(14, 30))):
        off = rng.normal(0, 0.35, size=2) * length * np.array([1.0, 0.5])
        tri = center + off + rng.normal(0, 0.035 * length, size=(3, 2))
        col = (a.colors[0], b.colors[0], (200, 230, 240), (40, 40, 40), (220, 220, 220))[int(rng.integers(5))]
        g.items.append((tri, col, -1))
        g.start_xy.append(center.copy())
    for car_c, dirn in ((np.array(ca), np.array([-d, 0.0])), (cb, -dir_b)):
        for off in (-0.12, 0.12):
            start = car_c + np.array([0.0, off * length * 0.5])
            pts = np.array([start, start + dirn * length * rng.uniform(0.6, 1.2)])
            g.items.append((pts, (25, 25, 25), max(1, int(length * 0.035))))
            g.start_xy.append(pts.copy())
    ground.append(g)


def _stampede_crowd(
    rng: np.random.Generator, layout: _Layout, n: int, fps: int, s0: int, people: list[_Person]
) -> tuple[int, int]:
    """Plan a crowd that starts running off at frame ``s0``.

    Returns:
        The anomalous span: first and last+1 frame with enough runners in view.
    """
    n_p = int(rng.integers(14, 30))
    run_dir = int(rng.choice([-1, 1]))
    corridor = layout.kind == "corridor"
    crossing = (not corridor) and rng.random() < 0.4
    psi = math.radians(float(rng.uniform(-25, 25)))
    ex0, ex1, ey0, ey1 = layout.event_box
    cx, cy = float(rng.uniform(ex0, ex1)), float(rng.uniform(ey0, ey1))
    if corridor:
        cy = float(rng.uniform(layout.ground_top + 0.2 * (layout.height - layout.ground_top), ey0))
    rx = layout.width * rng.uniform(0.15, 0.3) * (0.6 if corridor else 1.0)
    ry = (layout.height - layout.ground_top) * rng.uniform(0.2, 0.4)
    crowd = []
    for _ in range(n_p):
        p = _Person(n, rng)
        if crossing:
            y = float(rng.uniform(layout.ground_top + 4, layout.height - 2))
            x = _offscreen_x(layout, y, -run_dir) - run_dir * float(rng.uniform(0, 0.35 * layout.width))
        else:
            r, th = math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            y = float(np.clip(cy + r * ry * math.sin(th), layout.ground_top + 4, layout.height - 2))
            x0, x1 = layout.x_bounds(y)
            x = float(np.clip(cx + r * rx * math.cos(th), x0 + 5, x1 - 5))
            # before: a calm crowd standing or milling about
            fac = int(rng.choice([-1, 1]))
            ph0 = float(rng.uniform(0, 6.28))
            mill = rng.random() < 0.3
            for f in range(0, s0):
                t = f / fps
                p.x[f] = x + (4.0 * math.sin(0.5 * t + ph0) if mill else 0.0)
                p.y[f], p.h[f], p.vis[f], p.facing[f] = y, layout.person_height(y), True, fac
                p.arm[f] = ARM_TALK if (mill and ph0 > 3) else ARM_IDLE
                p.phase[f] = (t * 2.0 + ph0) if mill else ph0
                p.stride[f] = 0.15 if mill else 0.0
        delay = int(rng.uniform(0, 0.4) * fps)
        speed = float(rng.uniform(75, 125)) * (0.6 if corridor else 1.0)
        for f in range(s0, s0 + delay):
            if not crossing:
                p.x[f], p.y[f], p.h[f], p.vis[f] = x, y, layout.person_height(y), True
                p.facing[f], p.arm[f] = run_dir, ARM_IDLE
        far = 2.5 * layout.width
        if corridor:  # run towards the camera, out of the bottom of the view
            end = (x + float(rng.normal(0, 0.25)) * layout.width, layout.height + far)
        else:
            ang = psi + float(rng.normal(0, 0.3))
            end = (x + run_dir * far * math.cos(ang), y + far * math.sin(ang) * 0.4)
            end = (end[0], float(np.clip(end[1], layout.ground_top + 4, layout.height + 60)))
        _walk(p, layout, s0 + delay, n, (x, y), end, speed, fps, run=True, phase0=float(rng.uniform(0, 6.28)))
        crowd.append(p)
        people.append(p)
    need = max(3, int(math.ceil(0.2 * n_p)))
    start = None
    for f in range(s0, n):
        vis = 0
        for p in crowd:
            if p.vis[f] and -2 < p.x[f] < layout.width + 2 and p.y[f] - 0.8 * p.h[f] < layout.height:
                vis += 1
        if start is None:
            if vis >= need:
                start = f
        elif f > start + fps // 2 and vis < need:
            for p in crowd:  # the last stragglers vanish so the tail is clearly normal
                p.vis[f:] = False
            return start, f
    return (s0 if start is None else start), n


# --------------------------------------------------------------------------------------------------
# Video planning and rendering
# --------------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    info: VideoInfo
    background: np.ndarray
    layout: _Layout
    actors: list  # objects with depth(f) and draw(img, f)
    emissive: list  # objects with draw_emissive(img, f)
    gain: np.ndarray  # per-channel multiplier
    offset: float
    noise_pos: np.ndarray  # bank of camera-noise frames, split into positive and negative uint8 parts
    noise_neg: np.ndarray
    noise_idx: np.ndarray
    flicker: np.ndarray
    blur: bool
    timestamp: bool
    ts_color: tuple[int, int, int]


def _choose_scene(rng: np.random.Generator, cls: str) -> str:
    if cls == "CarCrash":
        return "street" if rng.random() < 0.6 else "carpark"
    return SCENE_KINDS[int(rng.choice(3, p=[0.4, 0.3, 0.3]))]


def _plan_video(
    seed: int, index: int, cls: str, name: str, fps: int, size: tuple[int, int], duration: tuple[float, float]
) -> _Plan:
    rng = np.random.default_rng([seed, index])
    w, h = size
    scene = _choose_scene(rng, cls)
    background, layout = _BUILDERS[scene](rng, w, h)
    people: list[_Person] = []
    cars: list[_Car] = []
    ground: list[_Ground] = []
    emissive: list = []
    others: list = []
    spans: list[tuple[int, int]] = []

    if cls == NORMAL_CLASS:
        n = int(round(rng.uniform(*duration) * fps))
    else:
        lead = rng.uniform(2.0, 4.0)
        tail = rng.uniform(2.0, 3.5)
        two = cls in ("Fire", "Fighting", "Falling") and rng.random() < 0.2
        if cls == "Stampede":
            # crowd simulated with a generous video length, then trimmed
            n = int(round(25 * fps))
            span = _stampede_crowd(rng, layout, n, fps, int(round(min(lead, 3.0) * fps)), people)
            spans.append(span)
            n = min(n, max(span[1] + int(round(tail * fps)), int(round(duration[0] * fps))))
            people = [_trim(p, n) for p in people]
        else:
            if two:
                ev = [rng.uniform(2.5, 3.5), rng.uniform(2.5, 3.5)]
                gap = rng.uniform(1.5, 2.5)
                lead, tail = min(lead, 2.5), min(tail, 2.5)
                starts = [lead, lead + ev[0] + gap]
            else:
                ev = [rng.uniform(3.5, 6.0)]
                starts = [lead]
            total = max(duration[0], starts[-1] + ev[-1] + tail)
            n = int(round(min(MAX_DURATION, total) * fps))
            for st, d in zip(starts, ev, strict=True):
                spans.append((int(round(st * fps)), int(round((st + d) * fps))))
        for span in spans if cls != "Stampede" else []:
            if cls == "Fire":
                anchor = (
                    float(rng.uniform(*layout.event_box[:2])),
                    float(rng.uniform(*layout.event_box[2:])),
                )
                fire = _Fire(rng, layout, span, fps, anchor)
                others.append(fire)
                emissive.append(fire)
            elif cls == "Fighting":
                _plan_fight(rng, layout, span, n, fps, people)
            elif cls == "Falling":
                _plan_fall(rng, layout, span, n, fps, people)
            elif cls == "CarCrash":
                _plan_crash(rng, layout, span, n, fps, cars, ground)
            else:
                raise ValueError(f"unknown event class {cls!r}")

    # background activity
    n_walk = int(rng.integers(1, 7)) if cls == NORMAL_CLASS else int(rng.integers(0, 5))
    for _ in range(n_walk):
        _add_walker(people, layout, rng, n, fps)
    if layout.lanes:
        for _ in range(int(rng.integers(0, 5))):
            _add_traffic_car(cars, layout, rng, n, fps)
    if cls == NORMAL_CLASS and rng.random() < 0.3:  # calm group standing around
        ex0, ex1, ey0, ey1 = layout.event_box
        gx, gy = float(rng.uniform(ex0, ex1)), float(rng.uniform(ey0, ey1))
        for _ in range(int(rng.integers(5, 16))):
            p = _Person(n, rng)
            y = float(np.clip(gy + rng.normal(0, 0.12 * h), layout.ground_top + 3, h - 2))
            x = float(gx + rng.normal(0, 0.12 * w))
            ph0, talk = float(rng.uniform(0, 6.28)), rng.random() < 0.3
            fac = int(rng.choice([-1, 1]))
            for f in range(n):
                p.x[f], p.y[f], p.h[f], p.vis[f], p.facing[f] = x, y, layout.person_height(y), True, fac
                p.arm[f] = ARM_TALK if talk else ARM_IDLE
                p.phase[f] = ph0 + 1.5 * f / fps
            people.append(p)
    if rng.random() < (0.3 if cls == NORMAL_CLASS else 0.1):  # two people chatting face to face
        gy = float(rng.uniform(*layout.event_box[2:]))
        gx = float(rng.uniform(*layout.event_box[:2]))
        hh = layout.person_height(gy)
        dist = hh * rng.uniform(0.6, 0.9)
        for side in (-1, 1):
            p = _Person(n, rng)
            ph0 = float(rng.uniform(0, 6.28))
            for f in range(n):
                p.x[f], p.y[f], p.h[f], p.vis[f], p.facing[f] = gx + side * dist / 2, gy, hh, True, -side
                p.arm[f] = ARM_TALK if side == 1 else ARM_IDLE
                p.phase[f] = ph0 + 2.0 * f / fps
            people.append(p)

    # camera: lighting, noise, blur, timestamp
    night = rng.random() < 0.2
    base = rng.uniform(0.45, 0.6) if night else rng.uniform(0.7, 1.15)
    tint = rng.uniform(0.88, 1.12, size=3)
    if night:
        tint = tint * np.array([0.85, 0.95, 1.15])
    gain = (base * tint).astype(np.float32)
    sigma = float(rng.uniform(1.5, 7.0))
    noise = np.round(rng.normal(0, sigma, size=(4, h, w, 3)))
    noise_idx = rng.integers(0, 4, size=n)
    flicker = (1.0 + rng.normal(0, 0.012, size=n)).astype(np.float32)
    info = VideoInfo(
        name=name,
        path=f"{VIDEOS_DIRNAME}/{name}",
        label="normal" if cls == NORMAL_CLASS else "anomaly",
        cls=cls,
        scene=scene,
        n_frames=n,
        fps=fps,
        width=w,
        height=h,
        spans=tuple(spans),
        seed=seed,
        index=index,
    )
    actors = [*ground, *people, *cars, *others]
    return _Plan(
        info=info,
        background=background,
        layout=layout,
        actors=actors,
        emissive=emissive,
        gain=gain,
        offset=float(rng.uniform(-8, 8)),
        noise_pos=np.clip(noise, 0, 255).astype(np.uint8),
        noise_neg=np.clip(-noise, 0, 255).astype(np.uint8),
        noise_idx=noise_idx,
        flicker=flicker,
        blur=bool(rng.random() < 0.5),
        timestamp=bool(rng.random() < 0.5),
        ts_color=(235, 235, 235) if rng.random() < 0.7 else (250, 250, 120),
    )


def _trim(p: _Person, n: int) -> _Person:
    for k in (
        "x",
        "y",
        "h",
        "vis",
        "facing",
        "phase",
        "stride",
        "arm",
        "angle",
        "punch",
        "punch_side",
        "kick",
    ):
        setattr(p, k, getattr(p, k)[:n])
    return p


def render_frames(plan: _Plan) -> Iterator[np.ndarray]:
    """Render a planned video frame by frame.

    Args:
        plan: A plan from ``_plan_video``.

    Returns:
        An iterator of RGB uint8 frames of shape (height, width, 3).
    """
    info = plan.info
    for f in range(info.n_frames):
        img = plan.background.copy()
        drawables = sorted(plan.actors, key=lambda a: a.depth(f))
        for a in drawables:
            if isinstance(a, _Person) and a.vis[f]:
                _shadow(img, float(a.x[f]), float(a.y[f]), 0.22 * float(a.h[f]))
            a.draw(img, f)
        g = plan.gain * plan.flicker[f]
        img = cv2.multiply(img, (float(g[0]), float(g[1]), float(g[2]), 0.0))
        img = cv2.add(img, (plan.offset, plan.offset, plan.offset, 0.0))
        for e in plan.emissive:
            e.draw_emissive(img, f)
        if plan.blur:
            img = cv2.GaussianBlur(img, (3, 3), 0.7)
        k = plan.noise_idx[f]
        img = cv2.subtract(cv2.add(img, plan.noise_pos[k]), plan.noise_neg[k])
        if plan.timestamp:
            sec = f // info.fps
            text = f"2024-03-{(info.index % 27) + 1:02d} 1{info.index % 10}:{(sec // 60) % 60:02d}:{sec % 60:02d}"
            cv2.putText(img, text, (4, 12), cv2.FONT_HERSHEY_PLAIN, 0.7, plan.ts_color, 1, cv2.LINE_AA)
        yield img


#: x264 instruction sets up to AVX2, which every CPU with AVX-512 also has.
_X264_AVX2 = "MMX2,SSE,SSE2,SSE3,SSSE3,SSE4.1,SSE4.2,AVX,FMA3,BMI1,BMI2,AVX2,LZCNT"


@functools.lru_cache(maxsize=1)
def _x264_determinism() -> dict[str, str]:
    """Extra x264 options that keep its output a function of its input on this CPU.

    x264's AVX-512 code gave different bytes for identical frames from run to run (seen on an AMD
    EPYC with AVX-512; up to AVX2 the output repeats exactly), so on CPUs that have AVX-512 it is
    capped at AVX2. x264 trusts the list it is given, so the cap is set only where AVX-512 is known
    to be present (which implies every set in the list).
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return {}
    return {"x264-params": f"asm={_X264_AVX2}"} if "avx512f" in flags else {}


def write_mp4(path: Path, frames: Iterator[np.ndarray], fps: int, crf: int = 23) -> int:
    """Encode RGB frames as H.264 (yuv420p) into an .mp4 file, single-threaded for determinism.

    Args:
        path: Output file.
        frames: RGB uint8 frames, all the same even width and height.
        fps: Frame rate.
        crf: x264 constant rate factor.

    Returns:
        The number of frames written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(path), mode="w") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height = frame.shape[1], frame.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.codec_context.time_base = Fraction(1, fps)
                stream.options = {
                    "crf": str(crf),
                    "preset": "veryfast",
                    "threads": "1",
                    **_x264_determinism(),
                }
                stream.thread_count = 1
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = count
            for packet in stream.encode(vf):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return count


# --------------------------------------------------------------------------------------------------
# Long feeds: a fixed camera that sees an empty scene most of the time (what cameras record at night)
# --------------------------------------------------------------------------------------------------

#: Event classes a long feed's one anomaly is drawn from (a stampede needs a crowd already there).
FEED_EVENTS: tuple[str, ...] = ("Fighting", "Falling", "Fire", "CarCrash")
FEED_SIZE = (640, 360)  # a camera's usual sub-stream
FEED_MINUTES = 30.0
#: Fraction of a feed's frames in which something is in view.
FEED_ACTIVITY = 0.05
#: Mixed into a feed's seed sequence so that feeds never share random streams with scene sets.
_FEED_STREAM = 0xFEED


def _on_screen(actor: _Person | _Car, layout: _Layout) -> None:
    """Hide an actor wherever it is entirely outside the picture (walks end parked off-screen)."""
    reach = actor.h * 0.5 if isinstance(actor, _Person) else actor.length * 0.6
    top = actor.h * 1.1 if isinstance(actor, _Person) else actor.length * 0.5
    inside = (actor.x + reach > 0) & (actor.x - reach < layout.width) & (actor.y - top < layout.height)
    actor.vis &= inside & (actor.y > 0)


def _feed_walkers(
    people: list[_Person], layout: _Layout, rng: np.random.Generator, n: int, fps: int, f0: int, count: int
) -> None:
    """``count`` people crossing the view together from frame ``f0`` (a corridor: along it)."""
    along = layout.kind == "corridor" and rng.random() < 0.6
    side = int(rng.choice([-1, 1]))
    y = float(rng.uniform(layout.ground_top, layout.height - 2.0))
    speed = float(rng.uniform(22, 40))
    towards = rng.random() < 0.5
    for k in range(count):
        p = _Person(n, rng)
        if along:
            near = (float(rng.uniform(0.3, 0.7) * layout.width), layout.height + 40.0)
            far = _random_floor_point(layout, rng, (layout.ground_top, layout.ground_top + 10))
            start, end = (far, near) if towards else (near, far)
        else:
            yk = float(np.clip(y + rng.normal(0, 6), layout.ground_top, layout.height - 2.0))
            start = (_offscreen_x(layout, yk, side) + side * 12 * k, yk)
            end = (
                _offscreen_x(layout, yk, -side),
                float(np.clip(yk + rng.normal(0, 12), layout.ground_top, layout.height - 2.0)),
            )
        _walk(
            p, layout, f0, min(n, f0 + 120 * fps), start, end, speed, fps, phase0=float(rng.uniform(0, 6.28))
        )
        _on_screen(p, layout)
        people.append(p)


def _feed_chat(
    people: list[_Person], layout: _Layout, rng: np.random.Generator, n: int, fps: int, f0: int
) -> None:
    """Two people walk in, stand talking for a while (small movements only), and walk off."""
    gy = float(rng.uniform(*layout.event_box[2:]))
    gx = float(rng.uniform(*layout.event_box[:2]))
    h = layout.person_height(gy)
    dist = h * rng.uniform(0.6, 0.9)
    t_in, stay = float(rng.uniform(2.0, 4.0)), int(rng.uniform(15, 45) * fps)
    for side in (-1, 1):
        p = _Person(n, rng)
        spot = (gx + side * dist / 2, gy)
        start = (spot[0] + side * 32 * t_in * (h / layout.person_h0), gy)
        f1 = f0 + int(t_in * fps)
        _walk(p, layout, f0, f1, start, spot, 32.0 * 1.05, fps)
        ph0 = float(rng.uniform(0, 6.28))
        for f in range(f1, min(n, f1 + stay)):
            p.x[f], p.y[f], p.h[f], p.vis[f], p.facing[f] = spot[0], gy, h, True, -side
            p.arm[f] = ARM_TALK if side == 1 else ARM_IDLE
            p.phase[f] = ph0 + 2.0 * (f - f1) / fps
        end = (_offscreen_x(layout, gy, side), gy)
        _walk(p, layout, f1 + stay, min(n, f1 + stay + 60 * fps), spot, end, float(rng.uniform(28, 40)), fps)
        _on_screen(p, layout)
        people.append(p)


def _feed_car(cars: list[_Car], layout: _Layout, rng: np.random.Generator, n: int, fps: int, f0: int) -> None:
    """A car driving through the view from frame ``f0``."""
    lane_y, d = layout.lanes[int(rng.integers(len(layout.lanes)))]
    c = _Car(n, rng)
    length = 1.85 * layout.person_height(lane_y) * rng.uniform(0.9, 1.1)
    speed = float(rng.uniform(50, 120)) / fps
    x = -length if d > 0 else layout.width + length
    for f in range(f0, n):
        xx = x + d * speed * (f - f0)
        if xx < -length - 2 or xx > layout.width + length + 2:
            break
        c.x[f], c.y[f], c.length[f], c.facing[f], c.vis[f] = xx, lane_y, length, d, True
    cars.append(c)


def _plan_feed(
    seed: int,
    index: int,
    cls: str,
    name: str,
    fps: int,
    size: tuple[int, int],
    seconds: float,
    activity: float,
) -> tuple[_Plan, float]:
    """A long fixed-camera feed: an empty scene with short episodes of activity (people crossing,
    a car, two people talking) covering about ``activity`` of its frames, one anomalous event of
    class ``cls`` (none for ``NORMAL_CLASS``), camera noise, and a slow lighting drift.

    Returns:
        The plan, and the fraction of frames in which something is in view.
    """
    rng = np.random.default_rng([seed, index, _FEED_STREAM])
    w, h = size
    scene = _choose_scene(rng, cls)
    background, layout = _BUILDERS[scene](rng, w, h)
    n = int(round(seconds * fps))
    people: list[_Person] = []
    cars: list[_Car] = []
    ground: list[_Ground] = []
    others: list = []
    spans: list[tuple[int, int]] = []
    busy = np.zeros(n, bool)

    def occupy(actors: list) -> int:
        """Mark the frames in which ``actors`` are visible; the last such frame + 1."""
        last = 0
        for a in actors:
            if a.vis.any():
                busy[a.vis] = True
                last = max(last, int(np.flatnonzero(a.vis)[-1]) + 1)
        return last

    if cls != NORMAL_CLASS:
        if cls not in FEED_EVENTS:
            raise ValueError(f"a feed's event is one of {FEED_EVENTS}, got {cls!r}")
        s0 = int(rng.uniform(0.3, 0.7) * n)
        span = (s0, min(n, s0 + int(round(rng.uniform(3.5, 6.0) * fps))))
        spans.append(span)
        before = len(people), len(cars)
        if cls == "Fire":
            anchor = (float(rng.uniform(*layout.event_box[:2])), float(rng.uniform(*layout.event_box[2:])))
            others.append(_Fire(rng, layout, span, fps, anchor))
            busy[span[0] : span[1]] = True
        elif cls == "Fighting":
            _plan_fight(rng, layout, span, n, fps, people)
        elif cls == "Falling":
            _plan_fall(rng, layout, span, n, fps, people)
        else:
            _plan_crash(rng, layout, span, n, fps, cars, ground)
            busy[span[0] : span[1]] = True
        for a in people[before[0] :] + cars[before[1] :]:
            _on_screen(a, layout)
        occupy(people[before[0] :] + cars[before[1] :])

    kinds = ["walker", "pair", "chat"] + (["car", "car"] if layout.lanes else [])
    target = activity * n
    mean_gap = 12.0 * fps * (1 - activity) / max(activity, 1e-3)  # episodes last ~12 s on average
    f = int(rng.uniform(0.1, 1.0) * mean_gap)
    while f < n and busy.sum() < target:
        kind = kinds[int(rng.integers(len(kinds)))]
        before = len(people), len(cars)
        if kind == "car":
            _feed_car(cars, layout, rng, n, fps, f)
        elif kind == "chat":
            _feed_chat(people, layout, rng, n, fps, f)
        else:
            _feed_walkers(people, layout, rng, n, fps, f, 1 if kind == "walker" else 2)
        end = occupy(people[before[0] :] + cars[before[1] :])
        f = max(f, end) + fps + int(rng.exponential(mean_gap))

    night = rng.random() < 0.5
    base = rng.uniform(0.45, 0.6) if night else rng.uniform(0.7, 1.1)
    tint = rng.uniform(0.9, 1.1, size=3) * (np.array([0.85, 0.95, 1.15]) if night else 1.0)
    sigma = float(rng.uniform(1.5, 7.0))
    noise = np.round(rng.normal(0, sigma, size=(4, h, w, 3)))
    # A slow drift (clouds, dusk, auto-exposure) and a little frame-to-frame flicker: 0.2 % of the
    # gain, ~0.25 grey levels, as measured between frames of the real static clips (0.04-0.3); the
    # scene sets' 1.2 % is an augmentation for training, not what a fixed camera does.
    drift = 1.0 + rng.uniform(0.04, 0.1) * np.sin(2 * np.pi * np.arange(n) / max(n, 1) * rng.uniform(0.5, 2.0)
                                                   + rng.uniform(0, 2 * np.pi))  # fmt: skip
    flicker = (drift * (1.0 + rng.normal(0, 0.002, size=n))).astype(np.float32)
    info = VideoInfo(
        name=name,
        path=f"{VIDEOS_DIRNAME}/{name}",
        label="normal" if cls == NORMAL_CLASS else "anomaly",
        cls=cls,
        scene=scene,
        n_frames=n,
        fps=fps,
        width=w,
        height=h,
        spans=tuple(spans),
        seed=seed,
        index=index,
    )
    plan = _Plan(
        info=info,
        background=background,
        layout=layout,
        actors=[a for a in [*ground, *people, *cars, *others] if not hasattr(a, "vis") or a.vis.any()],
        emissive=[o for o in others if isinstance(o, _Fire)],
        gain=(base * tint).astype(np.float32),
        offset=float(rng.uniform(-8, 8)),
        noise_pos=np.clip(noise, 0, 255).astype(np.uint8),
        noise_neg=np.clip(-noise, 0, 255).astype(np.uint8),
        noise_idx=rng.integers(0, 4, size=n),
        flicker=flicker,
        blur=bool(rng.random() < 0.5),
        timestamp=True,
        ts_color=(235, 235, 235),
    )
    return plan, float(busy.mean())


def _build_feed_job(args: tuple) -> tuple[VideoInfo, float]:
    root, seed, index, cls, name, fps, size, seconds, activity = args
    plan, active = _plan_feed(seed, index, cls, name, fps, size, seconds, activity)
    count = write_mp4(root / plan.info.path, render_frames(plan), fps)
    assert count == plan.info.n_frames
    return plan.info, active


def generate_feeds(
    out_dir: str | Path,
    seed: int = DEMO_SEED,
    n_feeds: int = 2,
    *,
    minutes: float = FEED_MINUTES,
    activity: float = FEED_ACTIVITY,
    anomalous: bool = True,
    fps: int = DEFAULT_FPS,
    size: tuple[int, int] = FEED_SIZE,
    workers: int = 1,
) -> SceneSet:
    """Generate long fixed-camera feeds that are mostly idle: ``manifest.csv``, ``annotations.txt``
    and ``scenes.json`` (which also gives each feed's measured ``activity``), like a scene set.

    Each feed shows one scene for ``minutes``; about ``activity`` of its frames have something in
    view (people crossing, a car, two people talking), the rest is the empty scene under camera
    noise, flicker and a slow lighting drift. With ``anomalous``, each feed also holds one short
    event of a class from :data:`FEED_EVENTS` (annotated); the output is a deterministic function of
    the arguments.

    Args:
        out_dir: Output folder.
        seed: Seed; feeds draw from random streams of their own, apart from scene sets of the same seed.
        n_feeds: Number of feeds.
        minutes: Length of each feed.
        activity: Fraction of each feed's frames with something in view (0..1).
        anomalous: Give each feed one anomalous event.
        fps: Frame rate.
        size: (width, height), both even.
        workers: Processes used to render feeds.

    Returns:
        The feeds as a scene set.
    """
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"width and height must be even for yuv420p, got {size}")
    if not 0 <= activity < 1 or not minutes > 0:
        raise ValueError(f"activity must be in [0, 1) and minutes positive, got {activity}, {minutes}")
    root = Path(out_dir)
    (root / VIDEOS_DIRNAME).mkdir(parents=True, exist_ok=True)
    off = int(np.random.default_rng([seed, _FEED_STREAM]).integers(len(FEED_EVENTS)))
    jobs = []
    for i in range(n_feeds):
        cls = FEED_EVENTS[(i + off) % len(FEED_EVENTS)] if anomalous else NORMAL_CLASS
        jobs.append((root, seed, i, cls, f"feed_{i:02d}_{cls}.mp4", fps, tuple(size), minutes * 60, activity))
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as ex:
            done = list(ex.map(_build_feed_job, jobs))
    else:
        done = [_build_feed_job(j) for j in jobs]
    scene_set = SceneSet(
        root=root,
        manifest_path=root / MANIFEST_NAME,
        annotations_path=root / ANNOTATIONS_NAME,
        scenes_json_path=root / SCENES_JSON_NAME,
        seed=seed,
        videos=tuple(info for info, _ in done),
    )
    _write_tables(scene_set, {info.name: {"activity": round(active, 4)} for info, active in done})
    log.info("generated %d feeds of %g min (seed %d) in %s", len(done), minutes, seed, root)
    return scene_set


# --------------------------------------------------------------------------------------------------
# Scene sets
# --------------------------------------------------------------------------------------------------


def plan_scene_set(
    seed: int, n_normal: int, n_anomaly: int, classes: Sequence[str] = EVENT_CLASSES
) -> list[tuple[int, str, str]]:
    """Decide the class and file name of every video of a scene set.

    Args:
        seed: Scene-set seed.
        n_normal: Number of normal videos.
        n_anomaly: Number of anomalous videos, spread evenly over ``classes``.
        classes: Event classes to use.

    Returns:
        ``(index, class, file name)`` per video, in generation order.
    """
    for c in classes:
        if c not in EVENT_CLASSES:
            raise ValueError(f"unknown event class {c!r}; choose from {EVENT_CLASSES}")
    rng = np.random.default_rng(seed)
    off = int(rng.integers(len(classes))) if classes else 0
    labels = [NORMAL_CLASS] * n_normal + [classes[(k + off) % len(classes)] for k in range(n_anomaly)]
    order = rng.permutation(len(labels))
    counts: dict[str, int] = {}
    out = []
    for i, j in enumerate(order):
        cls = labels[int(j)]
        counts[cls] = counts.get(cls, 0) + 1
        out.append((i, cls, f"{cls}_{counts[cls]:03d}.mp4"))
    return out


def build_video(
    root: Path,
    seed: int,
    index: int,
    cls: str,
    name: str,
    fps: int = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    duration: tuple[float, float] = DEFAULT_DURATION,
    write: bool = True,
) -> tuple[VideoInfo, list[np.ndarray] | None]:
    """Plan and render one video; write it under ``root`` or return its frames.

    Args:
        root: Scene-set folder (the video goes to ``root/videos/name``).
        seed: Scene-set seed.
        index: Video index within the set (its RNG is seeded with ``(seed, index)``).
        cls: ``NORMAL_CLASS`` or an event class.
        name: File name.
        fps: Frame rate.
        size: (width, height), both even.
        duration: (min, max) seconds for normal videos.
        write: Write the .mp4 (True) or return the frames in memory (False).

    Returns:
        The video's info and, when ``write`` is False, its frames.
    """
    plan = _plan_video(seed, index, cls, name, fps, size, duration)
    if write:
        count = write_mp4(root / plan.info.path, render_frames(plan), fps)
        assert count == plan.info.n_frames
        return plan.info, None
    return plan.info, list(render_frames(plan))


def _build_job(args: tuple) -> VideoInfo:
    return build_video(*args)[0]


def generate_scenes(
    out_dir: str | Path,
    seed: int = DEMO_SEED,
    n_normal: int = 10,
    n_anomaly: int = 10,
    *,
    classes: Sequence[str] = EVENT_CLASSES,
    fps: int = DEFAULT_FPS,
    size: tuple[int, int] = DEFAULT_SIZE,
    duration: tuple[float, float] = DEFAULT_DURATION,
    workers: int = 1,
) -> SceneSet:
    """Generate a scene set: videos, ``manifest.csv``, ``annotations.txt`` and ``scenes.json``.

    The output is a deterministic function of the arguments (``workers`` does not change it).

    Args:
        out_dir: Output folder (created; existing files with the same names are overwritten).
        seed: Scene-set seed.
        n_normal: Number of normal videos.
        n_anomaly: Number of anomalous videos, spread evenly over ``classes``.
        classes: Event classes to use.
        fps: Frame rate.
        size: (width, height) of the videos, both even.
        duration: (min, max) seconds of normal videos; anomalous videos are 8-15 s, planned around events.
        workers: Processes used to render videos.

    Returns:
        The scene set.
    """
    if size[0] % 2 or size[1] % 2:
        raise ValueError(f"width and height must be even for yuv420p, got {size}")
    root = Path(out_dir)
    (root / VIDEOS_DIRNAME).mkdir(parents=True, exist_ok=True)
    jobs = [
        (root, seed, i, cls, name, fps, tuple(size), tuple(duration))
        for i, cls, name in plan_scene_set(seed, n_normal, n_anomaly, classes)
    ]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as ex:
            infos = list(ex.map(_build_job, jobs))
    else:
        infos = [_build_job(j) for j in jobs]
    scene_set = SceneSet(
        root=root,
        manifest_path=root / MANIFEST_NAME,
        annotations_path=root / ANNOTATIONS_NAME,
        scenes_json_path=root / SCENES_JSON_NAME,
        seed=seed,
        videos=tuple(infos),
    )
    _write_tables(scene_set)
    log.info("generated %d videos (seed %d) in %s", len(infos), seed, root)
    return scene_set


def _write_tables(s: SceneSet, extra: dict[str, dict] | None = None) -> None:
    def atomic(path: Path, text: str) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)

    rows = ["path,label,class"] + [f"{v.path},{v.label},{v.cls}" for v in s.videos]
    atomic(s.manifest_path, "\n".join(rows) + "\n")
    atomic(s.annotations_path, "".join(format_annotation(v) + "\n" for v in s.videos))
    meta = {
        "format": "vadindex-synth/1",
        "generator_version": GENERATOR_VERSION,
        "seed": s.seed,
        "frame_spans": "0-based, start inclusive, end exclusive",
        "videos": [
            {
                **asdict(v),
                "spans": [list(x) for x in v.spans],
                "duration_s": v.duration_s,
                **(extra or {}).get(v.name, {}),
            }
            for v in s.videos
        ],
    }
    atomic(s.scenes_json_path, json.dumps(meta, indent=1) + "\n")


def format_annotation(v: VideoInfo) -> str:
    """Format one line of ``annotations.txt`` (UCF-Crime temporal annotation format).

    Args:
        v: The video.

    Returns:
        ``"name  Class  start1  end1  start2  end2"`` with -1 for missing spans.
    """
    nums: list[int] = []
    for s0, s1 in v.spans[:2]:
        nums += [s0, s1]
    nums += [-1] * (4 - len(nums))
    return "  ".join([v.name, v.cls, *map(str, nums)])


def read_annotations(path: str | Path) -> dict[str, tuple[str, tuple[tuple[int, int], ...]]]:
    """Read a UCF-Crime style temporal annotation file.

    Args:
        path: The ``annotations.txt`` file.

    Returns:
        ``{video name: (class, spans)}`` with spans as (start, end) frame pairs, -1 pairs dropped.
    """
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts:
            continue
        name, cls, *nums = parts
        vals = [int(x) for x in nums]
        spans = tuple((vals[i], vals[i + 1]) for i in range(0, len(vals) - 1, 2) if vals[i] >= 0)
        out[name] = (cls, spans)
    return out


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """Read ``manifest.csv`` rows as dicts (path, label, class)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def frame_classes(v: VideoInfo) -> np.ndarray:
    """Per-frame class names of a video (its class inside spans, ``NORMAL_CLASS`` elsewhere).

    Args:
        v: The video.

    Returns:
        Array of ``n_frames`` class names.
    """
    out = np.full(v.n_frames, NORMAL_CLASS, dtype=object)
    for s0, s1 in v.spans:
        out[s0:s1] = v.cls
    return out
