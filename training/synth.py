"""``synth``: render a procedural (cartoon) face data set in CelebA's official layout.

    python -m training synth --out DIR --count N [--seed S] [--workers W] [--no-progress]

writes
  DIR/img_align_celeba/000001.jpg ...   178x218 RGB JPEG, the face where CelebA's aligned faces are
  DIR/list_attr_celeba.txt              CelebA's attribute file (count, 40 names, rows of 1/-1)
  DIR/list_eval_partition.txt           0 train / 1 validation / 2 test, contiguous 80/10/10 like CelebA
  DIR/README.txt                        first line "facegen synth ..." marks the set as synthetic

Every drawable attribute is true to the picture and stays visible after the project's crop
(``training.data.CROP``) and a resize to 64x64. Image ``i`` depends only on ``(seed, i)``, so the output is the
same byte for byte whatever the number of workers. numpy + Pillow (+ tqdm for the bar) only.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from training.errors import UsageError

ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young",
)
SYNTH_MARK = "facegen synth"  # training.data looks for this at the start of README.txt
WIDTH, HEIGHT = 178, 218  # CelebA's aligned image size
JPEG_QUALITY = 90
SS = 2  # supersampling factor: drawn at 2x, reduced for anti-aliasing
PARTITION = (0.8, 0.1)  # train, validation fractions; the rest is test
CHUNK = 64  # images per worker task

# canonical face geometry on the 178x218 image (the crop box is (15, 40, 163, 188): eyes ~45% down it)
CX = 89.0
EYE_Y = 106.0


# -- attributes ----------------------------------------------------------------------------------------------
def sample_attributes(rng) -> dict:
    """A coherent attribute set (name -> bool) with CelebA-like marginals. Uses a fixed amount of ``rng``."""
    u = iter(rng.random(48))
    a = dict.fromkeys(ATTRIBUTE_NAMES, False)

    def p(probability):
        return bool(next(u) < probability)

    male = a["Male"] = p(0.42)
    young = a["Young"] = p(0.77)
    a["Bald"] = bald = p(0.05 if young else 0.2) and male
    # hair colour: at most one of the four, none when bald
    gray = p(0.02 if young else 0.35)
    pick = next(u)
    colour = None
    if not bald:
        if gray:
            colour = "Gray_Hair"
        else:
            blond = 0.26 if not male else 0.05
            if pick < 0.28:
                colour = "Black_Hair"
            elif pick < 0.28 + 0.24:
                colour = "Brown_Hair"
            elif pick < 0.28 + 0.24 + blond:
                colour = "Blond_Hair"
    if colour:
        a[colour] = True
    a["Bangs"] = p(0.2 if not male else 0.08) and not bald
    a["Receding_Hairline"] = p(0.08 if young else 0.25) and not bald and not a["Bangs"]
    texture = next(u)
    if not bald:
        a["Wavy_Hair"] = texture < (0.42 if not male else 0.2)
        a["Straight_Hair"] = (not a["Wavy_Hair"]) and texture > 0.68
    a["Wearing_Hat"] = p(0.06) and not bald
    a["Eyeglasses"] = p(0.09 if young else 0.22)
    smiling = a["Smiling"] = p(0.48)
    a["Mouth_Slightly_Open"] = p(0.72 if smiling else 0.25)
    a["High_Cheekbones"] = p(0.8 if smiling else 0.12)
    a["Narrow_Eyes"] = p(0.2 if smiling else 0.06)
    # facial hair: men only
    beard = p(0.4) and male
    a["No_Beard"] = not beard
    a["Goatee"] = beard and p(0.35)
    a["Mustache"] = male and p(0.3 if beard else 0.03)
    a["Sideburns"] = male and p(0.15)
    a["5_o_Clock_Shadow"] = male and not beard and p(0.3)
    # make-up and jewellery: mostly women
    a["Wearing_Lipstick"] = p(0.8 if not male else 0.01)
    a["Heavy_Makeup"] = p(0.62 if not male else 0.005) and a["Wearing_Lipstick"]
    a["Rosy_Cheeks"] = p(0.11 if not male else 0.02)
    a["Wearing_Earrings"] = p(0.32 if not male else 0.02)
    a["Wearing_Necklace"] = p(0.2 if not male else 0.01)
    a["Wearing_Necktie"] = p(0.16 if male else 0.0)
    a["Arched_Eyebrows"] = p(0.45 if not male else 0.04)
    a["Bushy_Eyebrows"] = p(0.25 if male else 0.06) and not a["Arched_Eyebrows"]
    a["Big_Nose"] = p(0.42 if male else 0.1)
    a["Pointy_Nose"] = p(0.14 if male else 0.4) and not a["Big_Nose"]
    a["Big_Lips"] = p(0.24)
    a["Chubby"] = p((0.1 if young else 0.2) if male else 0.02)
    a["Double_Chin"] = p(0.55 if a["Chubby"] else 0.02 if young else 0.08)
    a["Bags_Under_Eyes"] = p(0.15 if young else 0.4)
    a["Pale_Skin"] = p(0.045)
    a["Oval_Face"] = p(0.28) and not a["Chubby"]
    a["Blurry"] = p(0.05)
    a["Attractive"] = p((0.72 if not male else 0.42) if young else 0.12)
    return {name: bool(value) for name, value in a.items()}


# -- drawing helpers -----------------------------------------------------------------------------------------
def _gradient(size=48, light=(-0.35, -0.45), inner=0.55, outer=1.25, gamma=1.4) -> Image.Image:
    """L image: 0 near the light spot, rising to 255 towards the far edge (a soft shadow mask)."""
    v, u = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    d = np.hypot(u - light[0], v - light[1])
    t = np.clip((d - inner) / (outer - inner), 0.0, 1.0) ** gamma
    return Image.fromarray((t * 255).astype(np.uint8), "L")


_SHADOW = _gradient()
_STRETCHED = {}


_TRIG = {}
_BEZIER = {}


def _ellipse_points(cx, cy, rx, ry, a0=0.0, a1=2 * math.pi, n=32):
    key = (a0, a1, n)
    unit = _TRIG.get(key)
    if unit is None:
        t = np.linspace(a0, a1, n)
        unit = _TRIG[key] = np.stack([np.cos(t), np.sin(t)], axis=1)
    return unit * (rx, ry) + (cx, cy)


def _curve(p0, p1, p2, n=12):
    """Quadratic Bezier from p0 via control p1 to p2 (n points)."""
    basis = _BEZIER.get(n)
    if basis is None:
        t = np.linspace(0.0, 1.0, n)
        basis = _BEZIER[n] = np.stack([(1 - t) ** 2, 2 * (1 - t) * t, t ** 2], axis=1)
    return basis @ np.array((p0, p1, p2), dtype=float)


def _mix(c1, c2, t):
    return tuple(int(round(a + (b - a) * t)) for a, b in zip(c1, c2))


def _scale(c, f):
    return tuple(int(max(0, min(255, round(x * f)))) for x in c)


class _Painter:
    """Draws in canonical 178x218 coordinates onto a 2x canvas through a small pose transform (shift, tilt, scale)."""

    def __init__(self, image, angle, scale, dx, dy, centre=(CX, 112.0)):
        self.image = image
        self.draw = ImageDraw.Draw(image, "RGBA")
        c, s = math.cos(angle) * scale * SS, math.sin(angle) * scale * SS
        self.m = np.array([[c, -s], [s, c]])
        self.scale = scale
        self.offset = (np.array(centre) + (dx, dy)) * SS - self.m @ np.array(centre)

    def map(self, pts):
        pts = np.asarray(pts, dtype=float).reshape(-1, 2)
        return pts @ self.m.T + self.offset

    def _list(self, pts):
        return [tuple(p) for p in self.map(pts).tolist()]

    def poly(self, pts, fill):
        self.draw.polygon(self._list(pts), fill=fill)

    def line(self, pts, fill, width):
        w = max(1, int(round(width * self.scale * SS)))
        self.draw.line(self._list(pts), fill=fill, width=w, joint="curve" if len(pts) > 2 else None)

    def ellipse(self, cx, cy, rx, ry, fill, n=28):
        self.poly(_ellipse_points(cx, cy, rx, ry, n=n), fill)

    def dot(self, cx, cy, r, fill):
        (x, y), = self.map([(cx, cy)])
        r = r * self.scale * SS
        self.draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)

    def shade(self, pts, colour, mask_image=_SHADOW, strength=1.0):
        """Fill the polygon with ``colour`` through a soft gradient mask stretched over its bounding box."""
        q = self.map(pts)
        x0, y0 = (int(v) for v in np.floor(q.min(axis=0)))
        x1, y1 = (int(v) for v in np.ceil(q.max(axis=0)))
        w, h = -(-(x1 - x0 + 1) // 8) * 8, -(-(y1 - y0 + 1) // 8) * 8  # sizes in steps of 8: the stretched
        if w < 2 or h < 2:  # gradients are cached per process
            return
        key = (id(mask_image), w, h)
        gradient = _STRETCHED.get(key)
        if gradient is None:
            if len(_STRETCHED) > 4096:
                _STRETCHED.clear()
            gradient = _STRETCHED[key] = mask_image.resize((w, h), Image.BILINEAR)
        mask = Image.new("L", (w, h), 0)
        ImageDraw.Draw(mask).polygon([tuple(p) for p in (q - (x0, y0)).tolist()], fill=int(255 * strength))
        self.image.paste(colour, (x0, y0, x0 + w, y0 + h), ImageChops.multiply(mask, gradient))


# -- palettes ------------------------------------------------------------------------------------------------
SKIN_TONES = [(255, 224, 200), (241, 194, 160), (224, 172, 130), (198, 145, 105), (160, 110, 75), (115, 76, 52)]
PALE_SKIN = (255, 236, 222)
HAIR = {
    "Black_Hair": [(22, 20, 22), (34, 28, 26)],
    "Brown_Hair": [(96, 58, 32), (120, 76, 42)],
    "Blond_Hair": [(232, 200, 128), (218, 180, 105)],
    "Gray_Hair": [(178, 178, 182), (205, 203, 200)],
    None: [(150, 62, 30), (176, 92, 44), (122, 44, 26)],  # auburn / red / copper: none of the four names
}
EYE_COLOURS = [(70, 45, 25), (95, 65, 35), (60, 100, 140), (80, 110, 70), (40, 30, 25)]
LIPSTICK = [(200, 30, 45), (175, 20, 60), (215, 60, 90), (150, 25, 40)]
HAT_COLOURS = [(200, 40, 40), (40, 80, 190), (40, 140, 70), (230, 190, 40), (230, 120, 30), (120, 50, 160),
               (40, 170, 190), (235, 235, 235)]
CLOTHES = [(40, 60, 120), (150, 30, 40), (60, 60, 60), (230, 230, 225), (40, 110, 80), (200, 160, 110),
           (120, 90, 160), (30, 30, 35), (180, 80, 40), (100, 140, 190)]
TIE_COLOURS = [(170, 20, 30), (30, 50, 140), (20, 90, 60), (120, 30, 110), (200, 150, 30)]
METALS = [(235, 195, 70), (225, 225, 235)]

PARAMS = ("angle", "scale", "dx", "dy", "yaw", "skin", "skin_mix", "width", "hair_shade", "hair_top", "hair_side",
          "hair_len", "part", "eye_colour", "brow", "lip", "bg1", "bg2", "bg3", "bg4", "cloth", "hat_colour",
          "hat_style", "glasses_style", "glasses_colour", "tie", "metal", "earring_style", "wave_phase", "mouth",
          "nose", "face_len", "shoulder", "bg_dark", "sunglasses", "neckline", "beard_shade", "eyes_apart")


def _background(u):
    """2x2 random muted colours stretched into a smooth gradient."""
    cols = []
    dark = u["bg_dark"]
    for key in ("bg1", "bg2", "bg3", "bg4"):
        h = u[key]
        base = np.array([0.5 + 0.5 * math.cos(2 * math.pi * (h + k / 3)) for k in range(3)])
        light = 0.35 + 0.55 * dark
        rgb = (0.3 * base + 0.7 * light) * 255
        cols.append(tuple(int(c) for c in np.clip(rgb, 0, 255)))
    small = Image.new("RGB", (2, 2))
    small.putdata(cols)
    # a bilinear stretch to a quarter of the size, then blocks of 4x4: smooth enough and 10x cheaper
    return small.resize((WIDTH * SS // 4, HEIGHT * SS // 4), Image.BILINEAR).resize((WIDTH * SS, HEIGHT * SS),
                                                                                   Image.NEAREST)


def render_face(attributes: dict, rng) -> Image.Image:
    """One 178x218 RGB face showing ``attributes`` (name -> bool). Uses a fixed amount of ``rng`` whatever the
    attributes, so two calls with equally seeded generators differ only where the attributes differ."""
    a = {name: bool(attributes.get(name, False)) for name in ATTRIBUTE_NAMES}
    u = dict(zip(PARAMS, rng.random(len(PARAMS))))
    strands = rng.random((16, 3))
    male, young, bald = a["Male"], a["Young"], a["Bald"]

    image = _background(u)
    pose = _Painter(image, angle=(u["angle"] - 0.5) * math.radians(12), scale=1.0 + 0.1 * u["scale"],
                    dx=(u["dx"] - 0.5) * 8, dy=(u["dy"] - 0.5) * 6)
    P = pose
    E = EYE_Y
    yaw = (u["yaw"] - 0.5) * 5.0  # features slide sideways a little: a hint of a turned head

    # colours
    if a["Pale_Skin"]:
        skin = _mix(PALE_SKIN, SKIN_TONES[0], u["skin_mix"] * 0.4)
    else:
        pos = u["skin"] * (len(SKIN_TONES) - 1.001)
        i = int(pos)
        skin = _mix(SKIN_TONES[i], SKIN_TONES[i + 1], pos - i)
        if not young:
            skin = _mix(skin, (200, 170, 150), 0.15)
    shadow = _scale(skin, 0.72)
    colour_name = next((n for n in ("Black_Hair", "Brown_Hair", "Blond_Hair", "Gray_Hair") if a[n]), None)
    choices = HAIR[colour_name]
    hair = choices[int(u["hair_shade"] * len(choices))]
    if colour_name is None and not young:
        hair = _mix(hair, (150, 150, 150), 0.25)
    hair_dark = _scale(hair, 0.6)
    hair_light = _mix(hair, (255, 255, 255), 0.25)
    brow_colour = _scale(hair, 0.55) if colour_name not in ("Blond_Hair", "Gray_Hair") else _scale(hair, 0.62)
    if bald:
        brow_colour = (70, 55, 45) if young else (120, 115, 110)
    beard_colour = brow_colour if not bald else (60, 50, 45)

    # face geometry
    W = 37.0 + 4.0 * male + 6.0 * a["Chubby"] - 2.5 * a["Oval_Face"] + (u["width"] - 0.5) * 3.0
    top = E - 52.0
    chin = E + 53.0 + 2.0 * male + 3.0 * a["Oval_Face"] + (u["face_len"] - 0.5) * 3.0
    # lower contour: square jaw for men (stays wide, turns late), tapering oval for women
    k, m = (3.2, 2.4) if male else (1.9, 1.7)
    if a["Chubby"]:
        k, m = k + 0.6, m + 0.3
    t = np.linspace(0.0, 1.0, 18)
    half = W * (1.0 - t ** k) ** (1.0 / m)
    half = np.maximum(half, (0.36 if male else 0.22) * W * (t > 0.97))
    lower_r = np.stack([CX + half, E + t * (chin - E)], axis=1)
    upper = _ellipse_points(CX, E, W, E - top, math.pi, 2 * math.pi, 20)  # left -> top -> right
    lower_l = lower_r[::-1].copy()
    lower_l[:, 0] = 2 * CX - lower_l[:, 0]
    face = np.concatenate([upper, lower_r, lower_l[1:]])  # closed outline, clockwise in image coordinates

    # -- background layers: clothes and shoulders
    cloth = CLOTHES[int(u["cloth"] * len(CLOTHES))]
    sh_y = chin + 16 + 4 * u["shoulder"]
    sw = 92.0 + 8 * male
    shoulders = np.concatenate([
        [(CX - sw, HEIGHT + 4)],
        _curve((CX - sw, sh_y + 30), (CX - sw + 8, sh_y), (CX - 24, sh_y - 3), 10),
        _curve((CX + 24, sh_y - 3), (CX + sw - 8, sh_y), (CX + sw, sh_y + 30), 10),
        [(CX + sw, HEIGHT + 4)],
    ])
    if a["Wearing_Necktie"]:
        cloth = _scale(cloth, 0.55) if u["cloth"] > 0.3 else (35, 38, 48)  # a dark suit
    P.poly(shoulders, cloth)
    P.shade(shoulders, _scale(cloth, 0.6), strength=0.8)

    # -- hair behind the head (long hair for women)
    hair_top = (7.0 + 6.0 * u["hair_top"]) if not male else (3.0 + 5.0 * u["hair_top"])
    hair_side = (4.0 + 4.0 * u["hair_side"]) if not male else (1.0 + 2.5 * u["hair_side"])
    wavy, straight = a["Wavy_Hair"], a["Straight_Hair"]
    wave_amp = 2.6 if wavy else 0.0
    phase = u["wave_phase"] * 2 * math.pi

    def wobble(pts, amp, freq=0.22):
        if amp == 0:
            return pts
        pts = pts.copy()
        pts[:, 0] += amp * np.sin(pts[:, 1] * freq + phase)
        return pts

    if not bald and not male:
        length = E + 62 + 32 * u["hair_len"]  # bottom of the long hair
        outer = _ellipse_points(CX, E + 2, W + hair_side + 3, E + 2 - top + hair_top, math.pi, 2 * math.pi, 24)
        right_side = _curve((CX + W + hair_side + 3, E + 2), (CX + W + hair_side + 12, E + 40),
                            (CX + W + hair_side + 10, length), 14)
        left_side = right_side[::-1].copy()
        left_side[:, 0] = 2 * CX - left_side[:, 0]
        notch = [(CX + W * 0.75, length - 4), (CX + W * 0.5, chin + 8), (CX - W * 0.5, chin + 8),
                 (CX - W * 0.75, length - 4)]
        back = np.concatenate([outer, wobble(right_side, wave_amp), notch, wobble(left_side, wave_amp)])
        P.poly(back, hair_dark if not straight else _scale(hair, 0.8))
        P.shade(back, _scale(hair, 0.45), strength=0.7)
    elif not bald:
        cap = _ellipse_points(CX, E + 4, W + hair_side, E + 4 - top + hair_top, math.pi, 2 * math.pi, 24)
        P.poly(cap, hair_dark)

    # -- neck, neckline, jewellery
    nw = W * (0.5 if not male else 0.58)
    neck = np.array([(CX - nw, E + 20), (CX + nw, E + 20), (CX + nw, sh_y + 4), (CX - nw, sh_y + 4)])
    if a["Wearing_Necktie"]:
        collar_v = sh_y + 26
        P.poly([(CX - nw - 6, sh_y - 2), (CX + nw + 6, sh_y - 2), (CX, collar_v)], (240, 240, 238))
        P.poly(neck, skin)
        P.poly([(CX - nw - 1, sh_y - 1), (CX - 2, sh_y + 9), (CX - 9, sh_y + 14)], (250, 250, 250))
        P.poly([(CX + nw + 1, sh_y - 1), (CX + 2, sh_y + 9), (CX + 9, sh_y + 14)], (250, 250, 250))
        tie = TIE_COLOURS[int(u["tie"] * len(TIE_COLOURS))]
        P.poly([(CX - 5, sh_y + 1), (CX + 5, sh_y + 1), (CX + 3.5, sh_y + 9), (CX - 3.5, sh_y + 9)], tie)
        P.poly([(CX - 3.5, sh_y + 9), (CX + 3.5, sh_y + 9), (CX + 7, HEIGHT + 2), (CX - 7, HEIGHT + 2)], tie)
        P.line([(CX - 3, sh_y + 9), (CX + 3, sh_y + 9)], _scale(tie, 0.6) + (255,), 1.0)
    else:
        P.poly(neck, skin)
        depth = 6 + 10 * u["neckline"]
        P.poly(_ellipse_points(CX, sh_y - 2, nw + 4, depth, 0, math.pi, 14), skin)
    # shadow under the chin
    P.ellipse(CX, chin + 2, nw + 2, 9, shadow + (150,))
    if a["Wearing_Necklace"]:
        metal = METALS[int(u["metal"] * 2)]
        chain = _curve((CX - nw - 1, E + 64), (CX, sh_y + 10), (CX + nw + 1, E + 64), 12)
        P.line(chain, metal + (255,), 1.6)
        P.dot(CX, sh_y + 4.5, 2.6, metal + (255,))

    # -- ears
    for s in (-1, 1):
        ex = CX + s * (W - 1.5)
        P.ellipse(ex + s * 3.5, E + 9, 6.0, 10.5, skin)
        P.ellipse(ex + s * 4.2, E + 9, 3.0, 6.5, shadow + (140,))

    # -- the face, with soft shading
    P.poly(face, skin)
    P.shade(face, shadow, strength=0.9)
    P.ellipse(CX - W * 0.28, E - 22, W * 0.42, 16, _mix(skin, (255, 255, 255), 0.3) + (45,))
    P.ellipse(CX - W * 0.22, E - 24, W * 0.25, 9, _mix(skin, (255, 255, 255), 0.3) + (40,))

    fx = CX + yaw  # features' centre line
    mouth_y = E + 39.0
    nose_y = E + 22.0

    # -- ageing marks, cheeks
    line_c = _scale(skin, 0.55) + (170,)
    if not young:
        for i in range(2 + int(strands[0, 0] * 2)):
            y = E - 24 - 5 * i
            P.line(_curve((fx - 14, y + 1), (fx, y - 2), (fx + 14, y + 1), 8), line_c, 1.1)
        for s in (-1, 1):
            P.line(_curve((fx + s * 10, nose_y - 2), (fx + s * 17, mouth_y - 4), (fx + s * 15, mouth_y + 6), 8),
                   line_c, 1.4)
            P.line([(fx + s * 26, E - 2), (fx + s * 30, E - 4)], line_c, 0.8)
            P.line([(fx + s * 26, E + 2), (fx + s * 30, E + 4)], line_c, 0.8)
    if a["Double_Chin"]:
        P.line(_curve((CX - 16, chin + 2), (CX, chin + 9), (CX + 16, chin + 2), 10), _scale(skin, 0.65) + (200,), 1.4)
    if a["Rosy_Cheeks"]:
        for s in (-1, 1):
            P.ellipse(fx + s * 22, E + 22, 8.5, 6.0, (235, 80, 90, 95))
    if a["High_Cheekbones"]:
        for s in (-1, 1):
            P.ellipse(fx + s * 22, E + 13, 8.0, 4.0, _mix(skin, (255, 255, 255), 0.4) + (90,))
            P.line(_curve((fx + s * 30, E + 16), (fx + s * 26, E + 27), (fx + s * 19, E + 31), 8), shadow + (80,), 2.0)

    # -- facial hair
    if a["5_o_Clock_Shadow"]:
        stub = _ellipse_points(CX, E + 14, W - 1, chin - E - 14, 0, math.pi, 20)
        stubble = np.concatenate([[(CX - W + 1, E + 14)], stub[::-1], [(CX + W - 1, E + 14)]])
        P.poly(np.concatenate([stubble, [(CX + 10, mouth_y - 8), (CX - 10, mouth_y - 8)]]), (70, 75, 90, 60))
    if not a["No_Beard"]:
        bc = _mix(beard_colour, (0, 0, 0), 0.1 * u["beard_shade"])
        if a["Goatee"]:
            goatee = np.concatenate([_curve((fx - 10, mouth_y + 3), (fx - 14, chin - 4), (CX - 9, chin + 1), 8),
                                     _curve((CX + 9, chin + 1), (fx + 14, chin - 4), (fx + 10, mouth_y + 3), 8),
                                     [(fx, mouth_y + 6)]])
            P.poly(goatee, bc)
        else:
            sel = lower_r[lower_r[:, 1] > E + 12]
            right = sel.copy()
            right[:, 0] += 1.5
            left = right[::-1].copy()
            left[:, 0] = 2 * CX - left[:, 0]
            inner = [(fx - W * 0.8, E + 12), (fx - 15, nose_y + 8), (fx - 13, mouth_y + 6), (fx, mouth_y + 8),
                     (fx + 13, mouth_y + 6), (fx + 15, nose_y + 8), (fx + W * 0.8, E + 12)]
            beard = np.concatenate([right, left[:-1], inner])
            P.poly(beard, bc + (240,))
            for j in range(8):
                x0 = CX + (strands[j, 0] - 0.5) * W * 1.4
                y0 = mouth_y + 4 + strands[j, 1] * (chin - mouth_y - 4)
                P.line([(x0, y0), (x0 + strands[j, 2] * 2 - 1, y0 + 5)], _scale(bc, 0.55) + (160,), 1.0)
    if a["Sideburns"]:
        for s in (-1, 1):
            x = CX + s * (W - 2.5)
            P.poly([(x - 2.8, E - 16), (x + 2.8, E - 16), (x + 2.2 - s * 1.5, E + 17), (x - 2.2 - s * 1.5, E + 19)],
                   beard_colour)

    # -- nose
    big, pointy = a["Big_Nose"], a["Pointy_Nose"]
    nwid = 4.2 + 2.6 * big - 1.0 * pointy + u["nose"]
    tip = nose_y + 1.5 * pointy + 1.0 * big
    nx = fx + yaw * 0.4
    P.poly([(nx + 1.5, E + 2), (nx + 3.5 + big, tip - 4), (nx + nwid + 1, tip + 1), (nx + 1, tip + 3)],
           shadow + (110,))
    if big:
        P.ellipse(nx, tip - 1, 5.5, 4.5, _scale(skin, 0.85) + (120,))
    P.ellipse(nx - 0.5, tip - 2.2, 2.4 + big, 1.6 + 0.5 * big, _mix(skin, (255, 255, 255), 0.35) + (150,))
    for s in (-1, 1):
        P.ellipse(nx + s * (nwid * 0.55), tip + 1.4, 1.6 + 0.6 * big, 1.0 + 0.3 * big, _scale(skin, 0.4) + (220,))
    P.line(_curve((nx - nwid, tip), (nx, tip + 4), (nx + nwid, tip), 8), _scale(skin, 0.55) + (150,), 0.9)

    # -- mouth
    lipstick = a["Wearing_Lipstick"]
    lip = LIPSTICK[int(u["lip"] * len(LIPSTICK))] if lipstick else _mix(_scale(skin, 0.8), (175, 105, 100), 0.3)
    lip_dark = _scale(lip, 0.65)
    thick = 1.0 + 0.7 * a["Big_Lips"]
    smiling, open_ = a["Smiling"], a["Mouth_Slightly_Open"]
    mw = (13.5 if smiling else 8.5) + 1.5 * u["mouth"] + 1.0 * a["Big_Lips"]
    my = mouth_y + (3.0 * (u["mouth"] - 0.5))
    lift = 4.5 if smiling else 0.0  # corners up
    L, R = (fx - mw, my - lift), (fx + mw, my - lift)
    if smiling:
        for s in (-1, 1):  # smile lines
            P.line(_curve((fx + s * (mw + 2), my - lift - 8), (fx + s * (mw + 5), my - 2), (fx + s * (mw + 1), my + 3),
                          6), _scale(skin, 0.62) + (150,), 1.0)
    if open_:
        gap = (7.0 if smiling else 3.2)
        upper_edge = _curve(L, (fx, my + 1.0), R, 12)
        lower_edge = _curve(R, (fx, my + gap * 2 + (2 if smiling else 0)), L, 12)
        hole = np.concatenate([upper_edge, lower_edge])
        upper_lip = np.concatenate([_curve(L, (fx - mw * 0.5, my - 3.4 * thick - lift * 0.5), (fx, my - 2.2 * thick), 6),
                                    _curve((fx, my - 2.2 * thick), (fx + mw * 0.5, my - 3.4 * thick - lift * 0.5), R, 6),
                                    upper_edge[::-1]])
        lower_lip = np.concatenate([lower_edge, _curve(L, (fx, my + gap * 2 + 4.0 * thick + 2 * smiling), R, 12)])
        P.poly(lower_lip, lip)
        P.poly(upper_lip, lip_dark if not lipstick else lip)
        P.poly(hole, (70, 18, 22))
        if smiling:  # upper teeth
            teeth = np.concatenate([_curve(L, (fx, my + 1.0), R, 12),
                                    _curve((R[0] - 2, R[1] + 1.5), (fx, my + gap + 1.5), (L[0] + 2, L[1] + 1.5), 12)])
            P.poly(teeth, (246, 244, 236))
            P.line(_curve((L[0] + 2, L[1] + 1.5), (fx, my + gap + 1.5), (R[0] - 2, R[1] + 1.5), 10),
                   (200, 195, 185, 180), 0.6)
    else:
        centre = _curve(L, (fx, my + (5.0 if smiling else 0.8)), R, 14)
        upper_lip = np.concatenate([_curve(L, (fx - mw * 0.5, my - 3.2 * thick - lift * 0.3), (fx, my - 2.0 * thick), 6),
                                    _curve((fx, my - 2.0 * thick), (fx + mw * 0.5, my - 3.2 * thick - lift * 0.3), R, 6),
                                    centre[::-1]])
        lower_lip = np.concatenate([centre, _curve(R, (fx, my + 4.5 * thick + (4.0 if smiling else 0.8)), L, 12)])
        P.poly(lower_lip, lip)
        P.poly(upper_lip, lip_dark if not lipstick else _scale(lip, 0.9))
        P.line(centre, _scale(lip, 0.45) + (230,), 1.1)
    if a["Mustache"]:
        mtop = tip + 4.0
        must = np.concatenate([_curve((fx - mw - 3, my - lift + 3), (fx - mw * 0.6, mtop - 1), (fx, mtop), 6),
                               _curve((fx, mtop), (fx + mw * 0.6, mtop - 1), (fx + mw + 3, my - lift + 3), 6),
                               _curve((fx + mw, my - lift - 0.5), (fx, my - 2.5 - lift * 0.3), (fx - mw, my - lift - 0.5),
                                      8)])
        P.poly(must, beard_colour)

    # -- eyes, make-up, eyebrows
    narrow = a["Narrow_Eyes"]
    sep = 17.0 + 1.5 * u["eyes_apart"]
    erx, ery = 6.8, (2.0 if narrow else 3.6) * (0.85 if smiling else 1.0)
    iris = EYE_COLOURS[int(u["eye_colour"] * len(EYE_COLOURS))]
    for s in (-1, 1):
        ex, ey = fx + s * sep, E
        if a["Heavy_Makeup"]:
            P.ellipse(ex, ey - 2.5, erx + 2.5, ery + 3.5, (120, 60, 110, 110) if u["lip"] < 0.5 else (90, 70, 50, 120))
        if a["Bags_Under_Eyes"]:
            P.line(_curve((ex - erx + 1, ey + ery + 1.5), (ex, ey + ery + 5.5), (ex + erx - 1, ey + ery + 1.5), 8),
                   _scale(skin, 0.6) + (140,), 1.2)
        P.ellipse(ex, ey, erx + 1.0, ery + 1.2, _scale(skin, 0.75) + (160,))  # socket shadow
        eye = np.concatenate([_curve((ex - erx, ey), (ex, ey - ery * 2), (ex + erx, ey), 10),
                              _curve((ex + erx, ey), (ex, ey + ery * 1.6), (ex - erx, ey), 10)])
        P.poly(eye, (245, 245, 240))
        ir = min(3.2, ery + 0.6)
        P.ellipse(ex + yaw * 0.25, ey, ir, min(3.2, ery), iris)
        P.ellipse(ex + yaw * 0.25, ey, ir * 0.45, min(1.5, ery * 0.5), (15, 12, 12))
        P.dot(ex + yaw * 0.25 - 1.0, ey - 1.0, 0.7, (255, 255, 255))
        lash = (20, 15, 15, 255) if a["Heavy_Makeup"] else (45, 35, 30, 230)
        P.line(_curve((ex - erx - 0.5, ey + 0.3), (ex, ey - ery * 2), (ex + erx + 0.5, ey + 0.3), 10), lash,
               1.6 if a["Heavy_Makeup"] else 1.0)
        # eyebrow: inner end near the nose, outer end towards the temple
        by = ey - 10.5 - 0.8 * (u["brow"] - 0.5)
        bw = 1.6 + 1.0 * male + 2.2 * a["Bushy_Eyebrows"]
        arch = 4.5 if a["Arched_Eyebrows"] else 1.0
        inner = (ex - s * 8.0, by + 1.0)
        peak = (ex + s * 2.5, by - arch * 1.5)
        outer = (ex + s * 9.0, by + (2.5 if a["Arched_Eyebrows"] else 0.8))
        brow = _curve(inner, peak, outer, 10)
        P.line(brow, brow_colour + (255,), bw)
        if a["Bushy_Eyebrows"]:
            P.line(brow + (0, 0.9), brow_colour + (200,), bw)

    # -- glasses
    if a["Eyeglasses"]:
        frame = _scale(HAT_COLOURS[int(u["glasses_colour"] * 8)], 0.25) if u["glasses_colour"] < 0.5 else (15, 15, 18)
        sun = u["sunglasses"] < 0.2
        gr_x, gr_y = 10.0, (7.5 if u["glasses_style"] < 0.5 else 6.0)
        for s in (-1, 1):
            ex = fx + s * sep
            if u["glasses_style"] < 0.5:
                rim = _ellipse_points(ex, E + 1.0, gr_x, gr_y, n=30)
            else:
                rim = np.array([(ex - gr_x, E - gr_y), (ex + gr_x, E - gr_y), (ex + gr_x - 1, E + gr_y),
                                (ex - gr_x + 1, E + gr_y), (ex - gr_x, E - gr_y)])
            P.poly(rim, (20, 20, 30, 235) if sun else (200, 220, 235, 55))
            P.line(np.concatenate([rim, rim[:2]]), frame + (255,), 2.7)
            P.line([(ex + s * gr_x, E - 2), (CX + s * (W + 1), E - 3)], frame + (255,), 2.0)
        P.line(_curve((fx - sep + gr_x, E - 1), (fx, E - 4), (fx + sep - gr_x, E - 1), 6), frame + (255,), 2.0)

    # -- hair in front: fringe / hairline, locks framing the face
    if not bald:
        hc = hair if not (straight and not male) else _mix(hair, hair_light, 0.2)
        outer = _ellipse_points(CX, E + 2, W + hair_side, E + 2 - top + hair_top, math.pi * 1.06, math.pi * 1.94, 24)
        part = (u["part"] - 0.5) * 20
        if a["Bangs"]:
            yc, ys, yt = E - 17.0, E - 16.0, E - 12.0
        elif a["Receding_Hairline"]:
            yc, ys, yt = E - 38.0, E - 45.0, E - 22.0
        else:
            yc, ys, yt = E - 33.0, E - 28.0, E - 6.0
        hairline = np.concatenate([
            _curve((CX + W + 0.5, yt), (CX + W * 0.8, ys), (CX + W * 0.45, ys - 0.5), 6),
            _curve((CX + W * 0.45, ys - 0.5), (CX + part * 0.5, yc + 2), (CX - W * 0.45, ys - 0.5), 10),
            _curve((CX - W * 0.45, ys - 0.5), (CX - W * 0.8, ys), (CX - W - 0.5, yt), 6),
        ])
        if a["Bangs"]:  # jagged fringe
            hairline[6:16, 1] += np.array([0, 2, -1, 2.5, 0, 2, -0.5, 2.5, 0, 1.5])
        front = np.concatenate([outer, hairline])
        if wavy:
            front = front.copy()
            ang = np.linspace(0, 1, len(outer))
            front[:len(outer), 1] += 1.8 * np.sin(ang * 40 + phase)
        P.poly(front, hc)
        P.shade(front, hair_dark, strength=0.8)
        # strands
        for j in range(7):
            x0 = CX + (strands[j, 0] - 0.5) * W * 1.4
            y_top = top - hair_top + 8
            pts = _curve((CX + part * 0.3, y_top), (x0, (y_top + yc) / 2 - 4), (x0 * 1.0 + (x0 - CX) * 0.3, yc - 2), 8)
            if wavy:
                pts = wobble(pts, 1.5, 0.6)
            P.line(pts, (hair_light if j % 2 else hair_dark) + (110,), 1.0)
        if not male:  # locks over the temples and down past the jaw
            length = E + 62 + 32 * u["hair_len"]
            for s in (-1, 1):
                lock = np.concatenate([
                    _curve((CX + s * (W * 0.45), ys - 0.5), (CX + s * (W + 1), E - 22), (CX + s * (W - 1.5), E + 4), 8),
                    _curve((CX + s * (W - 1.5), E + 4), (CX + s * (W + 2), E + 40), (CX + s * (W + 4), length), 10),
                    _curve((CX + s * (W + hair_side + 11), length), (CX + s * (W + hair_side + 10), E + 20),
                           (CX + s * (W + hair_side + 2), E - 10), 10),
                ])
                P.poly(wobble(lock, wave_amp), hc)
                for j in range(3):
                    off = 2 + 3 * j + strands[8 + j, 0] * 2
                    pts = _curve((CX + s * (W - 0.5 + off * 0.5), E - 14), (CX + s * (W + off), E + 30),
                                 (CX + s * (W + 2 + off), length - 3), 10)
                    P.line(wobble(pts, wave_amp * 0.8), (hair_light if j % 2 else hair_dark) + (120,), 1.0)
    else:
        P.ellipse(CX - 8, top + 10, 10, 6, (255, 255, 255, 70))  # shine on the scalp

    # -- earrings (after hair so they show)
    if a["Wearing_Earrings"]:
        metal = METALS[int(u["metal"] * 2)]
        for s in (-1, 1):
            x, y = CX + s * (W + 2.5), E + 19.5
            if u["earring_style"] < 0.5:
                P.line(_ellipse_points(x, y + 3, 3.0, 3.6, n=16), metal + (255,), 1.4)
            else:
                P.dot(x, y, 1.4, metal + (255,))
                P.dot(x, y + 4.5, 2.6, metal + (255,))

    # -- hat
    if a["Wearing_Hat"]:
        hat = HAT_COLOURS[int(u["hat_colour"] * len(HAT_COLOURS))]
        if u["hat_style"] < 0.5:  # beanie
            dome = np.concatenate([_ellipse_points(CX, E - 24, W + hair_side + 3, E - 24 - top + hair_top + 8,
                                                   math.pi, 2 * math.pi, 24), [(CX + W + hair_side + 3, E - 20),
                                                                               (CX - W - hair_side - 3, E - 20)]])
            P.poly(dome, hat)
            P.shade(dome, _scale(hat, 0.6), strength=0.8)
            P.poly([(CX - W - hair_side - 4, E - 31), (CX + W + hair_side + 4, E - 31), (CX + W + hair_side + 4, E - 20),
                    (CX - W - hair_side - 4, E - 20)], _scale(hat, 0.85))
        else:  # brimmed hat
            crown = np.concatenate([_ellipse_points(CX, E - 30, W + 2, E - 30 - top + hair_top + 12, math.pi, 2 * math.pi,
                                                    24), [(CX + W + 2, E - 28), (CX - W - 2, E - 28)]])
            P.poly(crown, hat)
            P.shade(crown, _scale(hat, 0.6), strength=0.8)
            P.poly(_ellipse_points(CX, E - 29, W + 22, 6.0, n=28), _scale(hat, 0.8))
            P.poly([(CX - W - 2, E - 38), (CX + W + 2, E - 38), (CX + W + 2, E - 32), (CX - W - 2, E - 32)],
                   _scale(hat, 0.45))

    out = image.reduce(SS)
    if a["Blurry"]:
        out = out.filter(ImageFilter.GaussianBlur(1.1))
    return out


# -- the data set --------------------------------------------------------------------------------------------
def image_rng(seed: int, index: int):
    """The generator for image ``index`` (0-based) of a set rendered with ``seed``."""
    return np.random.default_rng([int(seed), int(index)])


def render_one(seed: int, index: int):
    """(attributes, image) of image ``index`` of the set rendered with ``seed``."""
    rng = image_rng(seed, index)
    attributes = sample_attributes(rng)
    return attributes, render_face(attributes, rng)


def image_name(index: int) -> str:
    return f"{index + 1:06d}.jpg"


def _render_chunk(job):
    """Worker: render and write images [start, stop); returns (start, rows of 0/1 per image)."""
    seed, start, stop, image_dir = job
    rows = []
    for index in range(start, stop):
        attributes, image = render_one(seed, index)
        image.save(os.path.join(image_dir, image_name(index)), "JPEG", quality=JPEG_QUALITY)
        rows.append([attributes[name] for name in ATTRIBUTE_NAMES])
    return start, rows


def partition_of(index: int, count: int) -> int:
    train = int(round(count * PARTITION[0]))
    val = int(round(count * (PARTITION[0] + PARTITION[1])))
    return 0 if index < train else 1 if index < val else 2


def _context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def write_dataset(out_dir, count: int, seed: int = 0, workers=None, progress: bool = True) -> dict:
    """Render ``count`` faces into ``out_dir`` in CelebA's official layout; returns a summary dict."""
    out = Path(out_dir)
    count = int(count)
    if count < 1:
        raise UsageError(f"--count must be at least 1 (got {count})")
    attr_file = out / "list_attr_celeba.txt"
    if attr_file.exists():
        raise UsageError(f"{attr_file} already exists: choose an empty --out folder (or delete that one)")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    workers = int(workers or os.cpu_count() or 1)
    if workers < 1:
        raise UsageError(f"--workers must be at least 1 (got {workers})")
    image_dir = out / "img_align_celeba"
    image_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    jobs = [(int(seed), s, min(s + CHUNK, count), str(image_dir)) for s in range(0, count, CHUNK)]
    rows = [None] * count
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, unit="img", desc="rendering", dynamic_ncols=True, smoothing=0.1)
    workers = min(workers, len(jobs))
    pool = None
    try:
        if workers == 1:
            results = map(_render_chunk, jobs)
        else:
            pool = _context().Pool(workers)
            results = pool.imap_unordered(_render_chunk, jobs)
        for start, chunk_rows in results:
            rows[start:start + len(chunk_rows)] = chunk_rows
            if bar is not None:
                bar.update(len(chunk_rows))
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.terminate()

    with open(attr_file.with_suffix(".tmp"), "w", encoding="ascii", newline="\n") as handle:
        handle.write(f"{count}\n")
        handle.write(" ".join(ATTRIBUTE_NAMES) + "\n")
        for index, row in enumerate(rows):
            handle.write(image_name(index) + " " + " ".join(" 1" if v else "-1" for v in row) + "\n")
    with open(out / "list_eval_partition.txt", "w", encoding="ascii", newline="\n") as handle:
        for index in range(count):
            handle.write(f"{image_name(index)} {partition_of(index, count)}\n")
    matrix = np.array(rows, dtype=bool)
    frequencies = {name: round(float(f), 4) for name, f in zip(ATTRIBUTE_NAMES, matrix.mean(axis=0))}
    (out / "README.txt").write_text(
        f"{SYNTH_MARK}: a synthetic, procedural face data set (cartoon faces drawn by `python -m training synth`, "
        f"not photographs); seed {int(seed)}, count {count}.\n"
        "Layout: CelebA's official one (img_align_celeba/*.jpg 178x218, list_attr_celeba.txt, "
        "list_eval_partition.txt).\n"
        "Every drawn attribute is true to the picture; Attractive, Oval_Face and a few others are labels only.\n"
        "Image i depends only on (seed, i): the same seed gives the same files whatever the number of workers.\n",
        encoding="utf-8")
    os.replace(attr_file.with_suffix(".tmp"), attr_file)  # last: its presence marks a finished set
    seconds = time.perf_counter() - started
    return {"path": str(out), "count": count, "seed": int(seed), "workers": workers, "seconds": round(seconds, 3),
            "images_per_second": round(count / max(seconds, 1e-9), 1), "attribute_frequencies": frequencies}


# -- command -------------------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder (CelebA's official layout is written there)")
    parser.add_argument("--count", type=int, required=True, help="number of faces to render (>= 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all CPU cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    summary = write_dataset(args.out, args.count, seed=args.seed, workers=args.workers,
                            progress=not args.no_progress)
    print(f"synth: {summary['count']} faces in {summary['seconds']:.1f} s "
          f"({summary['images_per_second']:.0f} images/s, {summary['workers']} workers, seed {summary['seed']}) "
          f"-> {summary['path']}")
    return 0
