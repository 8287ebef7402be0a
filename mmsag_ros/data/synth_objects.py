"""MLKW's eight waste classes as synthetic objects drawn with OpenCV primitives.

Each class has its own shape, texture and size range (see :mod:`mmsag_ros.data.synth_paint` for
the drawing frame). Colours vary within each class and overlap between classes (green bottles
and green glass, white cartons and white Tetra Paks, grey bags and silver cans), so a model has
to learn shape and texture, not colour alone.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import cv2
import numpy as np

from mmsag_ros.data.synth_paint import (
    WHITE,
    ObjectPatch,
    Painter,
    Rgb,
    blob,
    box,
    ellipse,
    jitter,
    mix,
    pick,
    rect,
    scaled,
    segment,
    wiggle,
)

__all__ = ["SYNTH_CLASSES", "object_radius_range", "render_object"]

# Colour choices as (weight, RGB).
# fmt: off
_PALETTES: dict[str, list[tuple[float, Rgb]]] = {
    "bag": [(5, (26, 26, 29)), (2, (52, 54, 58)), (1.5, (30, 52, 36)), (1.5, (28, 36, 70)),
            (1, (185, 188, 182))],
    "metal": [(4, (196, 198, 204)), (1.5, (150, 152, 158)), (1.5, (205, 180, 115))],
    "can_ink": [(1, (200, 30, 35)), (1, (30, 70, 170)), (1, (30, 140, 60)), (1, (20, 20, 22)),
                (1, (230, 190, 30))],
    "upper": [(3, (34, 34, 38)), (2, (105, 66, 36)), (2, (226, 226, 220)), (1.5, (36, 46, 92)),
              (1, (170, 36, 36)), (1, (128, 128, 130)), (1, (186, 150, 102))],
    "sole": [(3, (46, 46, 48)), (2, (232, 230, 224)), (1, (176, 130, 76))],
    "plastic": [(2, (40, 110, 225)), (2, (225, 40, 45)), (1.5, (245, 215, 40)),
                (2, (232, 238, 242)), (1.5, (60, 190, 85)), (1, (235, 90, 170)),
                (1, (245, 135, 35))],
    "cap": [(2, (30, 90, 205)), (1.5, (232, 232, 232)), (1, (205, 40, 40)), (1, (40, 150, 60)),
            (1, (22, 22, 22)), (1, (242, 200, 40))],
    "sleeve": [(1, (220, 35, 40)), (1, (30, 60, 160)), (1, (240, 240, 235)), (1, (250, 200, 30))],
    "carton": [(6, (176, 130, 84)), (2, (202, 166, 116)), (1, (150, 145, 138)),
               (1, (214, 208, 198))],
    "tape": [(2, (206, 176, 122)), (1, (226, 222, 210))],
    "print": [(3, (40, 35, 30)), (1, (30, 60, 140)), (1, (160, 40, 35))],
    "lile": [(5, (240, 240, 234)), (2, (40, 90, 180)), (1, (120, 172, 222)), (1, (60, 150, 72)),
             (1, (190, 40, 42)), (1, (236, 200, 60)), (0.7, (150, 112, 72))],
    "stripe": [(1, (30, 70, 170)), (1, (220, 60, 40)), (1, (40, 150, 70)), (1, WHITE),
               (1, (250, 190, 30))],
    "fruit": [(1, (240, 140, 30)), (1, (200, 30, 40)), (1, (120, 190, 50))],
    "glass": [(3, (70, 150, 92)), (2, (196, 222, 222)), (1.5, (140, 86, 36)),
              (1, (96, 150, 205))],
}
# Bottle bodies: (weight, (RGB, opacity range)); clear PET is the most see-through.
_BOTTLES: list[tuple[float, tuple[Rgb, tuple[int, int]]]] = [
    (3, ((205, 222, 232), (115, 160))), (2, ((55, 145, 80), (170, 205))),
    (1.5, ((140, 188, 228), (135, 170))), (1, ((115, 64, 28), (200, 230))),
]
# fmt: on


def _colour(rng: np.random.Generator, key: str, amount: float = 12.0) -> Rgb:
    return jitter(pick(rng, _PALETTES[key]), rng, amount)


# ---------------------------------------------------------------------------- the classes
# Every drawer gets a painter and the object's generator and draws within the unit circle.


def _draw_waste_bag(p: Painter, rng: np.random.Generator) -> None:
    colour = _colour(rng, "bag", 8)
    ay = rng.uniform(0.62, 0.86)
    body = blob(rng, 36, 0.84, 0.84 * ay, rough=0.14)
    ears = np.array([[-0.74, -0.07], [-0.99, -0.2], [-0.92, 0.0]])
    p.base([body, ears, ears * [1, -0.95], ellipse(-0.8, 0.0, 0.07, 0.06, 12)], colour)
    u, v = p.local_grid()
    rr = (u / 0.84) ** 2 + (v / (0.84 * ay)) ** 2
    bumps = np.zeros_like(u)
    for _ in range(4):  # bulges and hollows of the stuffed bag
        cx, cy, s = rng.uniform(-0.5, 0.5), rng.uniform(-0.4, 0.4) * ay, rng.uniform(0.15, 0.35)
        bumps += rng.uniform(-0.25, 0.3) * np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (s * s))
    relief = 0.25 - 0.45 * rr + bumps
    p.shade(np.clip(1.0 + relief * (1.0 if sum(colour) < 400 else 0.4), 0.5, 1.6))  # no glare
    light = mix(colour, WHITE, 0.32 if sum(colour) < 400 else 0.2)
    dark = scaled(colour, 0.45)
    for _ in range(int(rng.integers(8, 15))):  # wrinkles: a lit ridge beside a dark crease
        start = rng.uniform(-0.55, 0.55, 2) * np.array([1.0, ay])
        heading = rng.uniform(0, 2 * math.pi)
        end = start + rng.uniform(0.15, 0.4) * np.array([math.cos(heading), math.sin(heading)])
        crease = wiggle(rng, start, end, 4, 0.03)
        p.line(crease + 0.015, dark, width=0.02)
        p.line(crease, light, width=rng.uniform(0.01, 0.022))
    for _ in range(int(rng.integers(1, 4))):  # glossy highlights
        c = rng.uniform(-0.4, 0.4, 2) * np.array([1.0, ay])
        p.fill(ellipse(c[0], c[1], rng.uniform(0.04, 0.1), 0.025, 10), mix(colour, WHITE, 0.5))
    p.line(np.array([[-0.88, -0.12], [-0.74, 0.0], [-0.88, 0.12]]), dark, width=0.02)


def _draw_can_side(p: Painter, rng: np.random.Generator, finish: Rgb) -> None:
    _, v = p.local_grid()
    w = rng.uniform(0.36, 0.5)
    half = math.sqrt(1 - w * w) * 0.96
    e = w * 0.3  # the ends are ellipses seen nearly edge-on
    t = np.linspace(-math.pi / 2, math.pi / 2, 12)
    right = np.stack([half - e + e * np.cos(t), w * np.sin(t)], axis=1)
    left = np.stack([-half + e - e * np.cos(t), -w * np.sin(t)], axis=1)
    p.base([np.concatenate([right, left])], finish)
    if rng.random() < 0.6:  # printed beverage can
        x0, x1 = -half + e + 0.12, half - e - rng.uniform(0.12, 0.3)
        p.fill(rect(x0, -w, x1, w), _colour(rng, "can_ink"))
        for _ in range(int(rng.integers(1, 4))):
            a = rng.uniform(x0, x1 - 0.2)
            p.fill(rect(a, rng.uniform(-w, 0), a + 0.2, rng.uniform(0, w)), WHITE)
    s = np.clip(v / w, -1.0, 1.0)
    spec_at = rng.uniform(-0.5, 0.4)  # specular stripe along the cylinder
    p.shade(0.45 + 0.6 * np.cos(s * math.pi / 2), 150 * np.exp(-(((s - spec_at) / 0.12) ** 2)))
    rim = np.stack([half - e + e * np.cos(2 * t), w * np.sin(2 * t)], axis=1)
    p.line(rim, scaled(finish, 1.2), width=0.05, closed=True)
    p.line(rim * [1.0, 0.82] + [0.02, 0], scaled(finish, 0.6), width=0.03, closed=True)
    p.line(segment(-half + e, -w, -half + e, w), scaled(finish, 0.55), width=0.04)
    for _ in range(int(rng.integers(0, 3))):  # dents
        a = rng.uniform(-half * 0.6, half * 0.6)
        p.line(segment(a, -w * 0.8, a + rng.uniform(-0.1, 0.1), w * 0.1), scaled(finish, 0.5))


def _draw_can_top(p: Painter, rng: np.random.Generator, finish: Rgb) -> None:
    u, v = p.local_grid()
    r = rng.uniform(0.62, 0.8)
    p.base([ellipse(0, 0, r, r, 32)], finish)
    rr = np.hypot(u, v) / r
    p.shade(np.where(rr > 0.84, 1.25, 0.85) - 0.15 * rr)
    p.line(ellipse(0, 0, r * 0.84, r * 0.84, 32), scaled(finish, 0.5), width=0.04, closed=True)
    p.fill(ellipse(r * 0.35, 0, r * 0.32, r * 0.18, 16), scaled(finish, 1.15))  # pull tab
    p.fill(ellipse(r * 0.42, 0, r * 0.1, r * 0.07, 10), scaled(finish, 0.4))
    p.fill(ellipse(-r * 0.35, 0, r * 0.22, r * 0.14, 14), scaled(finish, 0.55))  # opening
    p.line(ellipse(0, 0, r * 0.93, r * 0.93, 40)[24:34], WHITE, width=0.05)


def _draw_metal(p: Painter, rng: np.random.Generator) -> None:
    finish = _colour(rng, "metal", 10)
    (_draw_can_side if rng.random() < 0.8 else _draw_can_top)(p, rng, finish)


def _shoe_outline(scale: float) -> list[np.ndarray]:
    toe = ellipse(0.42, 0.02, 0.54 * scale, 0.36 * scale, 28)
    heel = ellipse(-0.55, 0.0, 0.41 * scale, 0.3 * scale, 24)
    waist = np.array([[-0.55, -0.3], [0.42, -0.4], [0.42, 0.32], [-0.55, 0.3]]) * [1, scale]
    return [toe, heel, waist]


def _draw_shoe(p: Painter, rng: np.random.Generator) -> None:
    upper = _colour(rng, "upper")
    p.base(_shoe_outline(1.0), _colour(rng, "sole"))
    for poly in _shoe_outline(0.88):  # the sole shows as a rim around the upper
        p.fill(poly, upper)
    _, v = p.local_grid()
    p.shade(np.clip(1.18 - 0.55 * (v / 0.36) ** 2, 0.6, 1.2))
    stitch = mix(upper, WHITE, 0.35) if sum(upper) < 450 else scaled(upper, 0.7)
    p.line(ellipse(0.42, 0.02, 0.43, 0.26, 28)[8:21], stitch, width=0.015)
    p.fill(ellipse(-0.46, 0.0, 0.27, 0.16, 20), mix(upper, (20, 20, 20), 0.5))  # collar
    p.fill(ellipse(-0.45, 0.0, 0.22, 0.11, 20), (22, 20, 20))
    tongue = np.array([[-0.22, -0.11], [0.3, -0.1], [0.36, 0.0], [0.3, 0.1], [-0.22, 0.11]])
    p.fill(tongue, scaled(upper, 1.12) if sum(upper) < 600 else scaled(upper, 0.9))
    lace = pick(rng, [(2, WHITE), (1, (25, 25, 25)), (1, mix(upper, WHITE, 0.5))])
    xs = np.linspace(-0.16, 0.3, int(rng.integers(4, 7)))
    for a, b in itertools.pairwise(xs):
        p.line(segment(a, -0.13, b, 0.13), lace, width=0.03)
        p.line(segment(a, 0.13, b, -0.13), lace, width=0.03)
    for x, y in itertools.product(xs, (-0.15, 0.15)):
        p.fill(ellipse(x, y, 0.022, 0.022, 8), (90, 90, 95))  # eyelets
    if rng.random() < 0.5:  # a side logo
        swoosh = np.array([[-0.3, 0.3], [0.0, 0.22], [0.3, 0.3], [0.0, 0.27]])
        p.fill(swoosh * [1, rng.choice([-1, 1])], pick(rng, [(1, WHITE), (1, (200, 40, 40))]))


def _draw_cup(p: Painter, rng: np.random.Generator, colour: Rgb, alpha: int) -> None:
    r = rng.uniform(0.6, 0.85)
    p.base([ellipse(0, 0, r, r * rng.uniform(0.9, 1.0), 36)], colour, alpha)
    rim = ellipse(0, 0, r * 0.93, r * 0.93, 36)
    p.line(rim, mix(colour, WHITE, 0.6), 235, width=0.06, closed=True)
    p.line(rim * 0.65, scaled(colour, 0.7), alpha + 25, width=0.04, closed=True)
    p.line(ellipse(0, 0, r * 0.8, r * 0.8, 40)[4:12], WHITE, 240, width=0.04)


def _draw_plastic(p: Painter, rng: np.random.Generator) -> None:
    colour = _colour(rng, "plastic", 15)
    alpha = int(rng.integers(150, 215))
    if rng.random() < 0.25:
        _draw_cup(p, rng, colour, alpha)
        return
    n = int(rng.integers(8, 14))
    t = np.sort(rng.uniform(0, 2 * math.pi, n))
    r = rng.uniform(0.45, 1.0, n)
    film = np.stack([r * np.cos(t), r * rng.uniform(0.6, 0.95) * np.sin(t)], axis=1) * 0.97
    p.base([film], colour, alpha)
    footprint = np.where(p.alpha > 0, 255, 0).astype(np.uint8)
    if rng.random() < 0.5:  # printed label
        cx, cy = rng.uniform(-0.2, 0.2, 2)
        ink = pick(rng, [(1, WHITE), (1, (20, 20, 30)), (1, scaled(colour, 0.45))])
        p.fill(rect(cx - 0.22, cy - 0.12, cx + 0.22, cy + 0.12), ink, min(255, alpha + 40))
        for k in range(3):
            y = cy - 0.06 + 0.06 * k
            p.line(segment(cx - 0.16, y, cx + rng.uniform(0, 0.16), y), scaled(colour, 0.5))
    for _ in range(int(rng.integers(8, 17))):  # crinkles: glints beside fold shadows
        a = rng.uniform(-0.6, 0.6, 2) * [1.0, 0.7]
        fold = np.array([a, a + rng.uniform(-0.3, 0.3, 2)])
        p.line(fold, WHITE, 240, width=rng.uniform(0.01, 0.025))
        p.line(fold + 0.025, scaled(colour, 0.6), min(255, alpha + 30), width=0.012)
    p.keep_within(footprint)


def _draw_bottle(p: Painter, rng: np.random.Generator) -> None:
    body_rgb, (lo, hi) = pick(rng, _BOTTLES)
    body_rgb = jitter(body_rgb, rng, 10)
    alpha = int(rng.integers(lo, hi))
    w, wn, neck_x = rng.uniform(0.22, 0.3), rng.uniform(0.085, 0.11), rng.uniform(0.58, 0.68)
    half = np.array(
        [(-0.98, w - 0.07), (-0.96, w - 0.02), (-0.92, w), (0.3, w), (0.38, w * 0.92),
         (0.48, (w + wn) / 2), (neck_x - 0.04, wn * 1.08), (neck_x, wn), (0.88, wn)]
    )  # fmt: skip
    bottle = np.concatenate([half * [1, -1], half[::-1]])
    p.base([bottle], body_rgb, alpha)
    _, v = p.local_grid()
    p.shade(np.clip(0.85 + 0.35 * np.cos(np.clip(v / w, -1, 1) * math.pi / 2), 0.5, 1.3))
    p.line(bottle, scaled(body_rgb, 0.55), min(255, alpha + 50), width=0.025, closed=True)
    cap = _colour(rng, "cap")
    p.fill(rect(0.86, -wn - 0.025, 0.99, wn + 0.025), cap, 255)
    p.line(segment(0.83, -wn - 0.01, 0.83, wn + 0.01), scaled(cap, 0.8), 255, width=0.03)
    if rng.random() < 0.55:  # label sleeve
        x0 = rng.uniform(-0.6, -0.35)
        p.fill(rect(x0, -w, x0 + rng.uniform(0.35, 0.55), w), _colour(rng, "sleeve"), 250)
        p.line(segment(x0 + 0.08, -w * 0.5, x0 + 0.08, w * 0.5), WHITE, 250, width=0.05)
    elif rng.random() < 0.7:  # PET ribs
        for x in np.linspace(-0.6, 0.2, int(rng.integers(3, 6))):
            p.line(segment(x, -w, x, w), scaled(body_rgb, 0.7), min(255, alpha + 40))
    glint = np.array([[-0.85, w * 0.55], [0.28, w * 0.55], [0.45, wn * 0.9]])
    p.line(glint, WHITE, 230, width=0.035)
    p.line(segment(neck_x, wn * 0.5, 0.84, wn * 0.5), WHITE, 220)


def _draw_carton(p: Painter, rng: np.random.Generator) -> None:
    colour = _colour(rng, "carton", 14)
    a, b, outline = box(rng, (0.55, 0.9), 0.04)
    p.base([outline], colour)
    mottled = cv2.resize(rng.normal(0, 0.04, (6, 6)).astype(np.float32), p.alpha.shape[::-1])
    p.shade(1.0 + mottled)
    edge = scaled(colour, 0.68)
    p.fill(rect(-a, b - 0.07, a, b), scaled(colour, 0.8))  # a side wall in view
    p.line(outline, edge, closed=True)
    if rng.random() < 0.65:  # closed box: two long flaps meet at a taped seam
        p.line(segment(-a, 0.0, a, 0.0), scaled(colour, 0.5))
        tape = _colour(rng, "tape", 8)
        tw = b * rng.uniform(0.12, 0.2)
        p.fill(rect(-a * 0.98, -tw, a * 0.98, tw), tape)
        p.line(segment(-a * 0.9, tw * 0.4, a * 0.9, tw * 0.4), mix(tape, WHITE, 0.5))
    else:  # flattened: fold lines across the panels, a glue flap
        for x in np.sort(rng.uniform(-a * 0.7, a * 0.7, int(rng.integers(1, 3)))):
            p.line(segment(x, -b, x, b), edge)
        flap = np.array([[-a, -b * 0.7], [-a * 0.85, -b * 0.55], [-a * 0.85, b * 0.55]])
        p.line(np.concatenate([flap, [[-a, b * 0.7]]]), edge)
    ink = pick(rng, _PALETTES["print"])
    if rng.random() < 0.6:  # a block of printed text
        x, y = rng.uniform(-a * 0.8, a * 0.2), rng.uniform(b * 0.3, b * 0.6) * rng.choice([-1, 1])
        for k in range(int(rng.integers(2, 5))):
            yk = y + 0.05 * k
            p.line(segment(x, yk, x + rng.uniform(0.1, 0.35), yk), ink, width=0.018)
    if rng.random() < 0.5:  # "this side up" arrows
        x, y = rng.uniform(-a * 0.6, a * 0.6), -b * 0.55
        for dx in (0.0, 0.14):
            head = np.array([[0.0, -0.14], [-0.06, -0.05], [0.06, -0.05]]) + np.array([x + dx, y])
            p.fill(head, ink)
            p.line(segment(x + dx, y - 0.06, x + dx, y + 0.08), ink, width=0.03)


def _draw_lile(p: Painter, rng: np.random.Generator) -> None:
    colour = _colour(rng, "lile", 8)
    a, b, outline = box(rng, (0.42, 0.6), 0.015)
    p.base([outline], colour)
    c, hw = rng.uniform(-0.35, 0.2), rng.uniform(0.12, 0.22)
    ys = np.linspace(-b, b, 12)
    wave = 0.05 * np.sin(ys * rng.uniform(4, 9) + rng.uniform(0, 6))
    left, right = np.stack([c - hw + wave, ys], 1), np.stack([c + hw + wave, ys], 1)
    p.fill(np.concatenate([left, right[::-1]]), _colour(rng, "stripe"))
    if rng.random() < 0.7:  # product picture
        fx, fy = c + rng.uniform(-0.05, 0.05), rng.uniform(-0.4, 0.4) * b
        p.fill(ellipse(fx, fy, 0.11, 0.11, 16), pick(rng, _PALETTES["fruit"]))
        p.fill(ellipse(fx - 0.03, fy - 0.03, 0.03, 0.03, 8), WHITE)
    text = scaled(colour, 0.4) if sum(colour) > 500 else WHITE
    for k in range(int(rng.integers(1, 4))):
        y = -b * 0.6 + k * 0.09
        p.line(segment(-a * 0.8, y, -a * 0.8 + rng.uniform(0.15, 0.4), y), text, width=0.025)
    u, v = p.local_grid()
    foil = 90 * np.exp(-(((u - a * rng.uniform(0.3, 0.8)) / 0.12) ** 2))  # foil-laminate sheen
    p.shade(np.ones_like(u), foil * (np.abs(v) < b))
    fin = a - 0.1  # the sealed top fin, serrated, with the aluminium layer showing
    p.fill(rect(fin, -b, a, b), (205, 208, 215))
    zig = np.stack([fin + 0.05 + 0.03 * (np.arange(13) % 2), np.linspace(-b, b, 13)], 1)
    p.line(zig, (140, 142, 150))
    crease = scaled(colour, 0.72)
    for s in (-1, 1):
        p.line(np.array([[fin, s * b], [fin - 0.16, s * b], [fin, s * (b - 0.1)]]), crease)
        p.line(segment(-a, s * b * 0.6, -a + 0.16, 0.0), crease)
        p.line(segment(-a + 0.05, s * (b - 0.05), fin - 0.02, s * (b - 0.05)), crease, width=0.015)
    if rng.random() < 0.6:  # screw cap or straw hole with foil
        cy = rng.uniform(-0.4, 0.4) * b
        if rng.random() < 0.6:
            capc = pick(rng, [(1, WHITE), (1, (40, 90, 190)), (1, (60, 160, 70))])
            p.fill(ellipse(fin - 0.2, cy, 0.12, 0.12, 18), capc)
            p.line(ellipse(fin - 0.2, cy, 0.09, 0.09, 18), scaled(capc, 0.75), closed=True)
        else:
            p.fill(rect(fin - 0.25, cy - 0.06, fin - 0.13, cy + 0.06), (225, 228, 235))
    p.line(outline, scaled(colour, 0.7), width=0.015, closed=True)


def _draw_galss(p: Painter, rng: np.random.Generator) -> None:
    colour = _colour(rng, "glass", 10)
    alpha = int(rng.integers(130, 180))
    shards = []
    for _ in range(int(rng.integers(2, 6))):  # thin sharp triangles and quads
        c = rng.uniform(-0.4, 0.4, 2)
        heading = rng.uniform(0, 2 * math.pi)
        d = np.array([math.cos(heading), math.sin(heading)])
        n = np.array([-d[1], d[0]])
        length, width = rng.uniform(0.3, 0.6), rng.uniform(0.1, 0.24)
        pts = [
            c + d * length,
            c - d * length * rng.uniform(0.2, 0.6) + n * width,
            c - d * length * rng.uniform(0.2, 0.6) - n * width * rng.uniform(0.2, 1.0),
        ]
        if rng.random() < 0.4:
            pts.insert(2, c - d * length + n * width * rng.uniform(-0.3, 0.3))
        poly = np.array(pts)
        shards.append(poly / max(1.0, np.hypot(poly[:, 0], poly[:, 1]).max() / 0.97))
    p.base(shards, colour, alpha)
    for poly in shards:  # dark refracting rims, one bright edge, an inner glint
        p.line(poly, scaled(colour, 0.45), min(255, alpha + 50), width=0.03, closed=True)
        k = int(rng.integers(len(poly)))
        p.line(np.array([poly[k], poly[(k + 1) % len(poly)]]), WHITE, 245, width=0.03)
        mid = poly.mean(axis=0)
        p.line(np.array([mid, (mid + poly[0]) / 2]), WHITE, 220)


_Drawer = Callable[[Painter, np.random.Generator], None]

# name -> (drawer, object radius as a fraction of the image's shorter side: low, high)
_STYLES: dict[str, tuple[_Drawer, tuple[float, float]]] = {
    "waste_bag": (_draw_waste_bag, (0.22, 0.34)),
    "metal": (_draw_metal, (0.075, 0.11)),
    "shoe": (_draw_shoe, (0.16, 0.23)),
    "plastic": (_draw_plastic, (0.13, 0.24)),
    "bottle": (_draw_bottle, (0.15, 0.22)),
    "carton": (_draw_carton, (0.17, 0.27)),
    "lile": (_draw_lile, (0.11, 0.15)),
    "galss": (_draw_galss, (0.09, 0.15)),
}

SYNTH_CLASSES: tuple[str, ...] = tuple(_STYLES)
"""Class names the generator can draw (MLKW's names and order)."""


def object_radius_range(name: str) -> tuple[float, float]:
    """Radius range of class ``name`` as a fraction of the image's shorter side."""
    return _STYLES[name][1]


def render_object(
    name: str,
    rng: np.random.Generator,
    *,
    center_xy: tuple[float, float],
    radius_px: float,
    angle_rad: float,
    mirror: bool = False,
) -> ObjectPatch:
    """Draw one object of class ``name`` (one of :data:`SYNTH_CLASSES`).

    Args:
        name: Class name.
        rng: Generator for the object's colour, shape and texture.
        center_xy: Object centre in image pixels (x, y); may lie near or past the border.
        radius_px: Radius of the circle enclosing the object, in pixels.
        angle_rad: Rotation of the object's long axis.
        mirror: Draw the mirror image (left and right shoes).

    Returns:
        The object's colour and opacity patch and its position in the image.
    """
    painter = Painter(center_xy, radius_px, angle_rad, mirror)
    _STYLES[name][0](painter, rng)
    return painter.patch()
