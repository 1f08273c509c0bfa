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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from training.usage_error import UsageError

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


# -- one face: what every part shares, fixed before drawing -------------------------------------------------
@dataclass(frozen=True)
class _Face:
    """A face to draw: its attributes, its random draws, and the colours and geometry that more than one part uses,
    in canonical 178x218 coordinates (the painter applies the pose)."""

    attrs: dict  # every attribute name -> bool
    u: dict  # PARAMS name -> uniform draw in [0, 1)
    strands: np.ndarray  # (16, 3) uniform draws: hair strands, wrinkle count, beard hairs
    # colours
    skin: tuple
    shadow: tuple  # skin in shade
    hair: tuple
    hair_dark: tuple
    hair_light: tuple
    brow: tuple
    beard: tuple  # beard, moustache and sideburns
    lips: tuple
    # geometry
    half_width: float  # of the face at the eye line
    top: float  # of the skull
    chin: float
    jaw: np.ndarray  # right half of the lower outline, eye line to chin
    outline: np.ndarray  # the whole face, closed
    shoulder_y: float
    neck_half_width: float
    hair_height: float  # how far the hair rises above the skull
    hair_bulk: float  # how far it stands out at the sides
    long_hair_bottom: float  # where women's hair ends
    wave_amplitude: float  # 0 unless Wavy_Hair
    wave_phase: float
    yaw: float  # features slide sideways a little: a hint of a turned head
    features_x: float  # the features' centre line
    nose_y: float
    nose_tip_y: float
    mouth_y: float  # the mouth's nominal line: wrinkles and beard are placed from it
    lips_y: float  # where the lips are drawn: the mouth line with a little jitter
    mouth_half_width: float
    smile_lift: float  # how far the corners of the mouth rise
    lip_thickness: float
    eye_spacing: float  # eye centre to the features' centre line

    def wobble(self, pts, amp, freq=0.22):
        """``pts`` waved sideways along their height (wavy hair); the same points when ``amp`` is 0."""
        if amp == 0:
            return pts
        pts = pts.copy()
        pts[:, 0] += amp * np.sin(pts[:, 1] * freq + self.wave_phase)
        return pts

    @property
    def mouth_corners(self):
        y = self.lips_y - self.smile_lift
        return (self.features_x - self.mouth_half_width, y), (self.features_x + self.mouth_half_width, y)


def _plan_face(attributes: dict, rng) -> _Face:
    """Take the face's random numbers (always the same amount of ``rng``) and fix its colours and geometry."""
    a = {name: bool(attributes.get(name, False)) for name in ATTRIBUTE_NAMES}
    u = dict(zip(PARAMS, rng.random(len(PARAMS))))
    strands = rng.random((16, 3))
    male, smiling = a["Male"], a["Smiling"]
    skin = _skin_colour(a, u)
    hair, brow = _hair_and_brow_colours(a, u)
    half_width, top, chin, jaw, outline = _head_shape(a, u)
    yaw = (u["yaw"] - 0.5) * 5.0
    nose_y, mouth_y = EYE_Y + 22.0, EYE_Y + 39.0
    if a["Wearing_Lipstick"]:
        lips = LIPSTICK[int(u["lip"] * len(LIPSTICK))]
    else:
        lips = _mix(_scale(skin, 0.8), (175, 105, 100), 0.3)
    return _Face(
        attrs=a, u=u, strands=strands,
        skin=skin, shadow=_scale(skin, 0.72), hair=hair, hair_dark=_scale(hair, 0.6),
        hair_light=_mix(hair, (255, 255, 255), 0.25), brow=brow, beard=brow if not a["Bald"] else (60, 50, 45),
        lips=lips,
        half_width=half_width, top=top, chin=chin, jaw=jaw, outline=outline,
        shoulder_y=chin + 16 + 4 * u["shoulder"],
        neck_half_width=half_width * (0.5 if not male else 0.58),
        hair_height=(7.0 + 6.0 * u["hair_top"]) if not male else (3.0 + 5.0 * u["hair_top"]),
        hair_bulk=(4.0 + 4.0 * u["hair_side"]) if not male else (1.0 + 2.5 * u["hair_side"]),
        long_hair_bottom=EYE_Y + 62 + 32 * u["hair_len"],
        wave_amplitude=2.6 if a["Wavy_Hair"] else 0.0,
        wave_phase=u["wave_phase"] * 2 * math.pi,
        yaw=yaw,
        features_x=CX + yaw,
        nose_y=nose_y,
        nose_tip_y=nose_y + 1.5 * a["Pointy_Nose"] + 1.0 * a["Big_Nose"],
        mouth_y=mouth_y,
        lips_y=mouth_y + (3.0 * (u["mouth"] - 0.5)),
        mouth_half_width=(13.5 if smiling else 8.5) + 1.5 * u["mouth"] + 1.0 * a["Big_Lips"],
        smile_lift=4.5 if smiling else 0.0,
        lip_thickness=1.0 + 0.7 * a["Big_Lips"],
        eye_spacing=17.0 + 1.5 * u["eyes_apart"],
    )


def _skin_colour(a, u):
    if a["Pale_Skin"]:
        return _mix(PALE_SKIN, SKIN_TONES[0], u["skin_mix"] * 0.4)
    pos = u["skin"] * (len(SKIN_TONES) - 1.001)
    i = int(pos)
    skin = _mix(SKIN_TONES[i], SKIN_TONES[i + 1], pos - i)
    return skin if a["Young"] else _mix(skin, (200, 170, 150), 0.15)


def _hair_and_brow_colours(a, u):
    """A shade of the named hair colour (auburn, red or copper when none is named) and the eyebrows' colour."""
    colour_name = next((n for n in ("Black_Hair", "Brown_Hair", "Blond_Hair", "Gray_Hair") if a[n]), None)
    choices = HAIR[colour_name]
    hair = choices[int(u["hair_shade"] * len(choices))]
    if colour_name is None and not a["Young"]:
        hair = _mix(hair, (150, 150, 150), 0.25)
    if a["Bald"]:
        brow = (70, 55, 45) if a["Young"] else (120, 115, 110)
    else:
        brow = _scale(hair, 0.55) if colour_name not in ("Blond_Hair", "Gray_Hair") else _scale(hair, 0.62)
    return hair, brow


def _head_shape(a, u):
    """(half width at the eye line, top of the skull, chin, right half of the lower outline, closed outline)."""
    male = a["Male"]
    half_width = 37.0 + 4.0 * male + 6.0 * a["Chubby"] - 2.5 * a["Oval_Face"] + (u["width"] - 0.5) * 3.0
    top = EYE_Y - 52.0
    chin = EYE_Y + 53.0 + 2.0 * male + 3.0 * a["Oval_Face"] + (u["face_len"] - 0.5) * 3.0
    # lower contour: square jaw for men (stays wide, turns late), tapering oval for women
    k, m = (3.2, 2.4) if male else (1.9, 1.7)
    if a["Chubby"]:
        k, m = k + 0.6, m + 0.3
    t = np.linspace(0.0, 1.0, 18)
    across = half_width * (1.0 - t ** k) ** (1.0 / m)
    across = np.maximum(across, (0.36 if male else 0.22) * half_width * (t > 0.97))  # a flat chin, not a point
    jaw = np.stack([CX + across, EYE_Y + t * (chin - EYE_Y)], axis=1)
    upper = _ellipse_points(CX, EYE_Y, half_width, EYE_Y - top, math.pi, 2 * math.pi, 20)  # left -> top -> right
    jaw_left = jaw[::-1].copy()
    jaw_left[:, 0] = 2 * CX - jaw_left[:, 0]
    outline = np.concatenate([upper, jaw, jaw_left[1:]])  # clockwise in image coordinates
    return half_width, top, chin, jaw, outline


# -- the parts of a face, back to front: each draws onto ``pen`` (a _Painter) and skips itself when absent ---
def _draw_clothes(pen, face):
    """Shoulders in a top, or in a dark suit under a necktie."""
    cloth = CLOTHES[int(face.u["cloth"] * len(CLOTHES))]
    sh_y = face.shoulder_y
    sw = 92.0 + 8 * face.attrs["Male"]
    shoulders = np.concatenate([
        [(CX - sw, HEIGHT + 4)],
        _curve((CX - sw, sh_y + 30), (CX - sw + 8, sh_y), (CX - 24, sh_y - 3), 10),
        _curve((CX + 24, sh_y - 3), (CX + sw - 8, sh_y), (CX + sw, sh_y + 30), 10),
        [(CX + sw, HEIGHT + 4)],
    ])
    if face.attrs["Wearing_Necktie"]:
        cloth = _scale(cloth, 0.55) if face.u["cloth"] > 0.3 else (35, 38, 48)
    pen.poly(shoulders, cloth)
    pen.shade(shoulders, _scale(cloth, 0.6), strength=0.8)


def _draw_back_hair(pen, face):
    """Hair behind the head: long, past the jaw, for women; a close cap for men."""
    a = face.attrs
    if a["Bald"]:
        return
    W, top, rise, side = face.half_width, face.top, face.hair_height, face.hair_bulk
    if a["Male"]:
        cap = _ellipse_points(CX, EYE_Y + 4, W + side, EYE_Y + 4 - top + rise, math.pi, 2 * math.pi, 24)
        pen.poly(cap, face.hair_dark)
        return
    length = face.long_hair_bottom
    outer = _ellipse_points(CX, EYE_Y + 2, W + side + 3, EYE_Y + 2 - top + rise, math.pi, 2 * math.pi, 24)
    right_side = _curve((CX + W + side + 3, EYE_Y + 2), (CX + W + side + 12, EYE_Y + 40), (CX + W + side + 10, length),
                        14)
    left_side = right_side[::-1].copy()
    left_side[:, 0] = 2 * CX - left_side[:, 0]
    notch = [(CX + W * 0.75, length - 4), (CX + W * 0.5, face.chin + 8), (CX - W * 0.5, face.chin + 8),
             (CX - W * 0.75, length - 4)]
    amp = face.wave_amplitude
    back = np.concatenate([outer, face.wobble(right_side, amp), notch, face.wobble(left_side, amp)])
    pen.poly(back, face.hair_dark if not a["Straight_Hair"] else _scale(face.hair, 0.8))
    pen.shade(back, _scale(face.hair, 0.45), strength=0.7)


def _draw_neck(pen, face):
    """The neck in an open neckline, or in a shirt collar with a tie; then the shadow under the chin."""
    nw, sh_y = face.neck_half_width, face.shoulder_y
    neck = np.array([(CX - nw, EYE_Y + 20), (CX + nw, EYE_Y + 20), (CX + nw, sh_y + 4), (CX - nw, sh_y + 4)])
    if face.attrs["Wearing_Necktie"]:
        _draw_shirt_and_tie(pen, face, neck)
    else:
        pen.poly(neck, face.skin)
        depth = 6 + 10 * face.u["neckline"]
        pen.poly(_ellipse_points(CX, sh_y - 2, nw + 4, depth, 0, math.pi, 14), face.skin)
    pen.ellipse(CX, face.chin + 2, nw + 2, 9, face.shadow + (150,))


def _draw_shirt_and_tie(pen, face, neck):
    """The shirt's V, the neck over it, the collar's points over the neck, and the tie."""
    nw, sh_y = face.neck_half_width, face.shoulder_y
    collar_v = sh_y + 26
    pen.poly([(CX - nw - 6, sh_y - 2), (CX + nw + 6, sh_y - 2), (CX, collar_v)], (240, 240, 238))
    pen.poly(neck, face.skin)
    pen.poly([(CX - nw - 1, sh_y - 1), (CX - 2, sh_y + 9), (CX - 9, sh_y + 14)], (250, 250, 250))
    pen.poly([(CX + nw + 1, sh_y - 1), (CX + 2, sh_y + 9), (CX + 9, sh_y + 14)], (250, 250, 250))
    tie = TIE_COLOURS[int(face.u["tie"] * len(TIE_COLOURS))]
    pen.poly([(CX - 5, sh_y + 1), (CX + 5, sh_y + 1), (CX + 3.5, sh_y + 9), (CX - 3.5, sh_y + 9)], tie)  # knot
    pen.poly([(CX - 3.5, sh_y + 9), (CX + 3.5, sh_y + 9), (CX + 7, HEIGHT + 2), (CX - 7, HEIGHT + 2)], tie)
    pen.line([(CX - 3, sh_y + 9), (CX + 3, sh_y + 9)], _scale(tie, 0.6) + (255,), 1.0)


def _draw_necklace(pen, face):
    """A chain round the neck with a pendant."""
    if not face.attrs["Wearing_Necklace"]:
        return
    nw, sh_y = face.neck_half_width, face.shoulder_y
    metal = METALS[int(face.u["metal"] * 2)]
    chain = _curve((CX - nw - 1, EYE_Y + 64), (CX, sh_y + 10), (CX + nw + 1, EYE_Y + 64), 12)
    pen.line(chain, metal + (255,), 1.6)
    pen.dot(CX, sh_y + 4.5, 2.6, metal + (255,))


def _draw_ears(pen, face):
    for s in (-1, 1):
        ex = CX + s * (face.half_width - 1.5)
        pen.ellipse(ex + s * 3.5, EYE_Y + 9, 6.0, 10.5, face.skin)
        pen.ellipse(ex + s * 4.2, EYE_Y + 9, 3.0, 6.5, face.shadow + (140,))


def _draw_head(pen, face):
    """The face's skin, shaded away from the light, with a soft highlight on the forehead."""
    W = face.half_width
    highlight = _mix(face.skin, (255, 255, 255), 0.3)
    pen.poly(face.outline, face.skin)
    pen.shade(face.outline, face.shadow, strength=0.9)
    pen.ellipse(CX - W * 0.28, EYE_Y - 22, W * 0.42, 16, highlight + (45,))
    pen.ellipse(CX - W * 0.22, EYE_Y - 24, W * 0.25, 9, highlight + (40,))


def _draw_wrinkles(pen, face):
    """On older faces: forehead lines, folds from nose to mouth, crow's feet."""
    if face.attrs["Young"]:
        return
    fx, nose_y, mouth_y = face.features_x, face.nose_y, face.mouth_y
    colour = _scale(face.skin, 0.55) + (170,)
    for i in range(2 + int(face.strands[0, 0] * 2)):
        y = EYE_Y - 24 - 5 * i
        pen.line(_curve((fx - 14, y + 1), (fx, y - 2), (fx + 14, y + 1), 8), colour, 1.1)
    for s in (-1, 1):
        pen.line(_curve((fx + s * 10, nose_y - 2), (fx + s * 17, mouth_y - 4), (fx + s * 15, mouth_y + 6), 8),
                 colour, 1.4)
        pen.line([(fx + s * 26, EYE_Y - 2), (fx + s * 30, EYE_Y - 4)], colour, 0.8)
        pen.line([(fx + s * 26, EYE_Y + 2), (fx + s * 30, EYE_Y + 4)], colour, 0.8)


def _draw_double_chin(pen, face):
    if face.attrs["Double_Chin"]:
        chin = face.chin
        pen.line(_curve((CX - 16, chin + 2), (CX, chin + 9), (CX + 16, chin + 2), 10),
                 _scale(face.skin, 0.65) + (200,), 1.4)


def _draw_rosy_cheeks(pen, face):
    if face.attrs["Rosy_Cheeks"]:
        for s in (-1, 1):
            pen.ellipse(face.features_x + s * 22, EYE_Y + 22, 8.5, 6.0, (235, 80, 90, 95))


def _draw_high_cheekbones(pen, face):
    """A highlight on each cheekbone with a shadow line below it."""
    if not face.attrs["High_Cheekbones"]:
        return
    fx = face.features_x
    for s in (-1, 1):
        pen.ellipse(fx + s * 22, EYE_Y + 13, 8.0, 4.0, _mix(face.skin, (255, 255, 255), 0.4) + (90,))
        pen.line(_curve((fx + s * 30, EYE_Y + 16), (fx + s * 26, EYE_Y + 27), (fx + s * 19, EYE_Y + 31), 8),
                 face.shadow + (80,), 2.0)


def _draw_stubble(pen, face):
    """5 o'clock shadow: a faint blue-grey over the jaw and round the mouth."""
    if not face.attrs["5_o_Clock_Shadow"]:
        return
    W, mouth_y = face.half_width, face.mouth_y
    jaw = _ellipse_points(CX, EYE_Y + 14, W - 1, face.chin - EYE_Y - 14, 0, math.pi, 20)
    area = np.concatenate([[(CX - W + 1, EYE_Y + 14)], jaw[::-1], [(CX + W - 1, EYE_Y + 14)],
                           [(CX + 10, mouth_y - 8), (CX - 10, mouth_y - 8)]])
    pen.poly(area, (70, 75, 90, 60))


def _draw_beard(pen, face):
    """A goatee, or a full beard along the jaw."""
    if face.attrs["No_Beard"]:
        return
    colour = _mix(face.beard, (0, 0, 0), 0.1 * face.u["beard_shade"])
    if face.attrs["Goatee"]:
        _draw_goatee(pen, face, colour)
    else:
        _draw_full_beard(pen, face, colour)


def _draw_goatee(pen, face, colour):
    fx, mouth_y, chin = face.features_x, face.mouth_y, face.chin
    goatee = np.concatenate([_curve((fx - 10, mouth_y + 3), (fx - 14, chin - 4), (CX - 9, chin + 1), 8),
                             _curve((CX + 9, chin + 1), (fx + 14, chin - 4), (fx + 10, mouth_y + 3), 8),
                             [(fx, mouth_y + 6)]])
    pen.poly(goatee, colour)


def _draw_full_beard(pen, face, colour):
    """The jaw below the cheeks, leaving the mouth free, with a few darker hairs."""
    W, fx, nose_y, mouth_y, chin = face.half_width, face.features_x, face.nose_y, face.mouth_y, face.chin
    right = face.jaw[face.jaw[:, 1] > EYE_Y + 12].copy()
    right[:, 0] += 1.5  # just past the skin's edge
    left = right[::-1].copy()
    left[:, 0] = 2 * CX - left[:, 0]
    inner = [(fx - W * 0.8, EYE_Y + 12), (fx - 15, nose_y + 8), (fx - 13, mouth_y + 6), (fx, mouth_y + 8),
             (fx + 13, mouth_y + 6), (fx + 15, nose_y + 8), (fx + W * 0.8, EYE_Y + 12)]
    pen.poly(np.concatenate([right, left[:-1], inner]), colour + (240,))
    strands = face.strands
    for j in range(8):
        x0 = CX + (strands[j, 0] - 0.5) * W * 1.4
        y0 = mouth_y + 4 + strands[j, 1] * (chin - mouth_y - 4)
        pen.line([(x0, y0), (x0 + strands[j, 2] * 2 - 1, y0 + 5)], _scale(colour, 0.55) + (160,), 1.0)


def _draw_sideburns(pen, face):
    if not face.attrs["Sideburns"]:
        return
    for s in (-1, 1):
        x = CX + s * (face.half_width - 2.5)
        pen.poly([(x - 2.8, EYE_Y - 16), (x + 2.8, EYE_Y - 16), (x + 2.2 - s * 1.5, EYE_Y + 17),
                  (x - 2.2 - s * 1.5, EYE_Y + 19)], face.beard)


def _draw_nose(pen, face):
    """A shaded side, a lit tip, nostrils and the line under them; Big_Nose wider, Pointy_Nose narrower and lower."""
    big, pointy = face.attrs["Big_Nose"], face.attrs["Pointy_Nose"]
    skin, tip = face.skin, face.nose_tip_y
    half_width = 4.2 + 2.6 * big - 1.0 * pointy + face.u["nose"]
    nx = face.features_x + face.yaw * 0.4  # the tip sticks out, so it moves most when the head turns
    pen.poly([(nx + 1.5, EYE_Y + 2), (nx + 3.5 + big, tip - 4), (nx + half_width + 1, tip + 1), (nx + 1, tip + 3)],
             face.shadow + (110,))
    if big:
        pen.ellipse(nx, tip - 1, 5.5, 4.5, _scale(skin, 0.85) + (120,))
    pen.ellipse(nx - 0.5, tip - 2.2, 2.4 + big, 1.6 + 0.5 * big, _mix(skin, (255, 255, 255), 0.35) + (150,))
    for s in (-1, 1):
        pen.ellipse(nx + s * (half_width * 0.55), tip + 1.4, 1.6 + 0.6 * big, 1.0 + 0.3 * big,
                    _scale(skin, 0.4) + (220,))
    pen.line(_curve((nx - half_width, tip), (nx, tip + 4), (nx + half_width, tip), 8), _scale(skin, 0.55) + (150,),
             0.9)


def _draw_smile_lines(pen, face):
    if not face.attrs["Smiling"]:
        return
    fx, my, mw, lift = face.features_x, face.lips_y, face.mouth_half_width, face.smile_lift
    for s in (-1, 1):
        pen.line(_curve((fx + s * (mw + 2), my - lift - 8), (fx + s * (mw + 5), my - 2), (fx + s * (mw + 1), my + 3),
                        6), _scale(face.skin, 0.62) + (150,), 1.0)


def _draw_mouth(pen, face):
    """Lips (red with lipstick, fuller with Big_Lips, wider and curved up when smiling), parted or closed."""
    if face.attrs["Mouth_Slightly_Open"]:
        _draw_open_mouth(pen, face)
    else:
        _draw_closed_mouth(pen, face)


def _draw_open_mouth(pen, face):
    """Lips round a dark opening; upper teeth when smiling."""
    smiling, lipstick = face.attrs["Smiling"], face.attrs["Wearing_Lipstick"]
    fx, my, mw, lift, thick, lip = (face.features_x, face.lips_y, face.mouth_half_width, face.smile_lift,
                                    face.lip_thickness, face.lips)
    L, R = face.mouth_corners
    gap = (7.0 if smiling else 3.2)
    upper_edge = _curve(L, (fx, my + 1.0), R, 12)
    lower_edge = _curve(R, (fx, my + gap * 2 + (2 if smiling else 0)), L, 12)
    hole = np.concatenate([upper_edge, lower_edge])
    upper_lip = np.concatenate([_curve(L, (fx - mw * 0.5, my - 3.4 * thick - lift * 0.5), (fx, my - 2.2 * thick), 6),
                                _curve((fx, my - 2.2 * thick), (fx + mw * 0.5, my - 3.4 * thick - lift * 0.5), R, 6),
                                upper_edge[::-1]])
    lower_lip = np.concatenate([lower_edge, _curve(L, (fx, my + gap * 2 + 4.0 * thick + 2 * smiling), R, 12)])
    pen.poly(lower_lip, lip)
    pen.poly(upper_lip, _scale(lip, 0.65) if not lipstick else lip)
    pen.poly(hole, (70, 18, 22))
    if smiling:
        _draw_upper_teeth(pen, face, gap)


def _draw_upper_teeth(pen, face, gap):
    fx, my = face.features_x, face.lips_y
    L, R = face.mouth_corners
    teeth = np.concatenate([_curve(L, (fx, my + 1.0), R, 12),
                            _curve((R[0] - 2, R[1] + 1.5), (fx, my + gap + 1.5), (L[0] + 2, L[1] + 1.5), 12)])
    pen.poly(teeth, (246, 244, 236))
    pen.line(_curve((L[0] + 2, L[1] + 1.5), (fx, my + gap + 1.5), (R[0] - 2, R[1] + 1.5), 10), (200, 195, 185, 180),
             0.6)


def _draw_closed_mouth(pen, face):
    smiling, lipstick = face.attrs["Smiling"], face.attrs["Wearing_Lipstick"]
    fx, my, mw, lift, thick, lip = (face.features_x, face.lips_y, face.mouth_half_width, face.smile_lift,
                                    face.lip_thickness, face.lips)
    L, R = face.mouth_corners
    centre = _curve(L, (fx, my + (5.0 if smiling else 0.8)), R, 14)
    upper_lip = np.concatenate([_curve(L, (fx - mw * 0.5, my - 3.2 * thick - lift * 0.3), (fx, my - 2.0 * thick), 6),
                                _curve((fx, my - 2.0 * thick), (fx + mw * 0.5, my - 3.2 * thick - lift * 0.3), R, 6),
                                centre[::-1]])
    lower_lip = np.concatenate([centre, _curve(R, (fx, my + 4.5 * thick + (4.0 if smiling else 0.8)), L, 12)])
    pen.poly(lower_lip, lip)
    pen.poly(upper_lip, _scale(lip, 0.65) if not lipstick else _scale(lip, 0.9))
    pen.line(centre, _scale(lip, 0.45) + (230,), 1.1)


def _draw_moustache(pen, face):
    """From under the nose to just past the corners of the mouth, over the upper lip."""
    if not face.attrs["Mustache"]:
        return
    fx, my, mw, lift = face.features_x, face.lips_y, face.mouth_half_width, face.smile_lift
    mtop = face.nose_tip_y + 4.0
    moustache = np.concatenate([
        _curve((fx - mw - 3, my - lift + 3), (fx - mw * 0.6, mtop - 1), (fx, mtop), 6),
        _curve((fx, mtop), (fx + mw * 0.6, mtop - 1), (fx + mw + 3, my - lift + 3), 6),
        _curve((fx + mw, my - lift - 0.5), (fx, my - 2.5 - lift * 0.3), (fx - mw, my - lift - 0.5), 8),
    ])
    pen.poly(moustache, face.beard)


def _draw_eyes(pen, face):
    """Each eye: make-up and bags when asked, a socket shadow, the white, iris, pupil, glint and upper lashes."""
    a = face.attrs
    makeup = a["Heavy_Makeup"]
    erx, ery = 6.8, (2.0 if a["Narrow_Eyes"] else 3.6) * (0.85 if a["Smiling"] else 1.0)
    iris = EYE_COLOURS[int(face.u["eye_colour"] * len(EYE_COLOURS))]
    lash = (20, 15, 15, 255) if makeup else (45, 35, 30, 230)
    look = face.yaw * 0.25  # the eyes turn a little with the head
    for s in (-1, 1):
        ex, ey = face.features_x + s * face.eye_spacing, EYE_Y
        if makeup:
            pen.ellipse(ex, ey - 2.5, erx + 2.5, ery + 3.5,
                        (120, 60, 110, 110) if face.u["lip"] < 0.5 else (90, 70, 50, 120))
        if a["Bags_Under_Eyes"]:
            pen.line(_curve((ex - erx + 1, ey + ery + 1.5), (ex, ey + ery + 5.5), (ex + erx - 1, ey + ery + 1.5), 8),
                     _scale(face.skin, 0.6) + (140,), 1.2)
        pen.ellipse(ex, ey, erx + 1.0, ery + 1.2, _scale(face.skin, 0.75) + (160,))  # socket shadow
        eye = np.concatenate([_curve((ex - erx, ey), (ex, ey - ery * 2), (ex + erx, ey), 10),
                              _curve((ex + erx, ey), (ex, ey + ery * 1.6), (ex - erx, ey), 10)])
        pen.poly(eye, (245, 245, 240))
        ir = min(3.2, ery + 0.6)
        pen.ellipse(ex + look, ey, ir, min(3.2, ery), iris)
        pen.ellipse(ex + look, ey, ir * 0.45, min(1.5, ery * 0.5), (15, 12, 12))
        pen.dot(ex + look - 1.0, ey - 1.0, 0.7, (255, 255, 255))
        pen.line(_curve((ex - erx - 0.5, ey + 0.3), (ex, ey - ery * 2), (ex + erx + 0.5, ey + 0.3), 10), lash,
                 1.6 if makeup else 1.0)


def _draw_eyebrows(pen, face):
    """From the inner end near the nose out towards the temple: arched, bushy (thicker, doubled) or plain."""
    a = face.attrs
    arched, bushy = a["Arched_Eyebrows"], a["Bushy_Eyebrows"]
    by = EYE_Y - 10.5 - 0.8 * (face.u["brow"] - 0.5)
    bw = 1.6 + 1.0 * a["Male"] + 2.2 * bushy
    arch = 4.5 if arched else 1.0
    for s in (-1, 1):
        ex = face.features_x + s * face.eye_spacing
        inner = (ex - s * 8.0, by + 1.0)
        peak = (ex + s * 2.5, by - arch * 1.5)
        outer = (ex + s * 9.0, by + (2.5 if arched else 0.8))
        brow = _curve(inner, peak, outer, 10)
        pen.line(brow, face.brow + (255,), bw)
        if bushy:
            pen.line(brow + (0, 0.9), face.brow + (200,), bw)


def _draw_eyeglasses(pen, face):
    """Round or rectangular rims, clear or dark (sunglasses) lenses, arms back to the ears and a bridge."""
    if not face.attrs["Eyeglasses"]:
        return
    u, fx, sep, W = face.u, face.features_x, face.eye_spacing, face.half_width
    frame = _scale(HAT_COLOURS[int(u["glasses_colour"] * 8)], 0.25) if u["glasses_colour"] < 0.5 else (15, 15, 18)
    sun = u["sunglasses"] < 0.2
    round_rims = u["glasses_style"] < 0.5
    gr_x, gr_y = 10.0, (7.5 if round_rims else 6.0)
    for s in (-1, 1):
        ex = fx + s * sep
        if round_rims:
            rim = _ellipse_points(ex, EYE_Y + 1.0, gr_x, gr_y, n=30)
        else:
            rim = np.array([(ex - gr_x, EYE_Y - gr_y), (ex + gr_x, EYE_Y - gr_y), (ex + gr_x - 1, EYE_Y + gr_y),
                            (ex - gr_x + 1, EYE_Y + gr_y), (ex - gr_x, EYE_Y - gr_y)])
        pen.poly(rim, (20, 20, 30, 235) if sun else (200, 220, 235, 55))
        pen.line(np.concatenate([rim, rim[:2]]), frame + (255,), 2.7)
        pen.line([(ex + s * gr_x, EYE_Y - 2), (CX + s * (W + 1), EYE_Y - 3)], frame + (255,), 2.0)
    pen.line(_curve((fx - sep + gr_x, EYE_Y - 1), (fx, EYE_Y - 4), (fx + sep - gr_x, EYE_Y - 1), 6), frame + (255,),
             2.0)


def _hairline(face, part):
    """(the hairline from right temple over the parting to left temple, y at the parting, y beside it): low and
    jagged with Bangs, high with Receding_Hairline."""
    W = face.half_width
    if face.attrs["Bangs"]:
        yc, ys, yt = EYE_Y - 17.0, EYE_Y - 16.0, EYE_Y - 12.0
    elif face.attrs["Receding_Hairline"]:
        yc, ys, yt = EYE_Y - 38.0, EYE_Y - 45.0, EYE_Y - 22.0
    else:
        yc, ys, yt = EYE_Y - 33.0, EYE_Y - 28.0, EYE_Y - 6.0
    hairline = np.concatenate([
        _curve((CX + W + 0.5, yt), (CX + W * 0.8, ys), (CX + W * 0.45, ys - 0.5), 6),
        _curve((CX + W * 0.45, ys - 0.5), (CX + part * 0.5, yc + 2), (CX - W * 0.45, ys - 0.5), 10),
        _curve((CX - W * 0.45, ys - 0.5), (CX - W * 0.8, ys), (CX - W - 0.5, yt), 6),
    ])
    if face.attrs["Bangs"]:  # jagged fringe
        hairline[6:16, 1] += np.array([0, 2, -1, 2.5, 0, 2, -0.5, 2.5, 0, 1.5])
    return hairline, yc, ys


def _draw_front_hair(pen, face):
    """Hair over the skull down to the hairline, with strands from the parting; for women, locks framing the face."""
    a = face.attrs
    if a["Bald"]:
        return
    W, top, rise = face.half_width, face.top, face.hair_height
    colour = face.hair if not (a["Straight_Hair"] and not a["Male"]) else _mix(face.hair, face.hair_light, 0.2)
    outer = _ellipse_points(CX, EYE_Y + 2, W + face.hair_bulk, EYE_Y + 2 - top + rise, math.pi * 1.06,
                            math.pi * 1.94, 24)
    part = (face.u["part"] - 0.5) * 20
    hairline, yc, ys = _hairline(face, part)
    front = np.concatenate([outer, hairline])
    if a["Wavy_Hair"]:
        ang = np.linspace(0, 1, len(outer))
        front[:len(outer), 1] += 1.8 * np.sin(ang * 40 + face.wave_phase)
    pen.poly(front, colour)
    pen.shade(front, face.hair_dark, strength=0.8)
    for j in range(7):
        x0 = CX + (face.strands[j, 0] - 0.5) * W * 1.4
        y_top = top - rise + 8
        pts = _curve((CX + part * 0.3, y_top), (x0, (y_top + yc) / 2 - 4), (x0 * 1.0 + (x0 - CX) * 0.3, yc - 2), 8)
        if a["Wavy_Hair"]:
            pts = face.wobble(pts, 1.5, 0.6)
        pen.line(pts, (face.hair_light if j % 2 else face.hair_dark) + (110,), 1.0)
    if not a["Male"]:
        _draw_side_locks(pen, face, colour, ys)


def _draw_side_locks(pen, face, colour, hairline_y):
    """Locks from the hairline over the temples and down past the jaw, with a few strands each."""
    W, side, amp, length = face.half_width, face.hair_bulk, face.wave_amplitude, face.long_hair_bottom
    for s in (-1, 1):
        lock = np.concatenate([
            _curve((CX + s * (W * 0.45), hairline_y - 0.5), (CX + s * (W + 1), EYE_Y - 22),
                   (CX + s * (W - 1.5), EYE_Y + 4), 8),
            _curve((CX + s * (W - 1.5), EYE_Y + 4), (CX + s * (W + 2), EYE_Y + 40), (CX + s * (W + 4), length), 10),
            _curve((CX + s * (W + side + 11), length), (CX + s * (W + side + 10), EYE_Y + 20),
                   (CX + s * (W + side + 2), EYE_Y - 10), 10),
        ])
        pen.poly(face.wobble(lock, amp), colour)
        for j in range(3):
            off = 2 + 3 * j + face.strands[8 + j, 0] * 2
            pts = _curve((CX + s * (W - 0.5 + off * 0.5), EYE_Y - 14), (CX + s * (W + off), EYE_Y + 30),
                         (CX + s * (W + 2 + off), length - 3), 10)
            pen.line(face.wobble(pts, amp * 0.8), (face.hair_light if j % 2 else face.hair_dark) + (120,), 1.0)


def _draw_scalp_shine(pen, face):
    if face.attrs["Bald"]:
        pen.ellipse(CX - 8, face.top + 10, 10, 6, (255, 255, 255, 70))


def _draw_earrings(pen, face):
    """Hoops or drops on the ear lobes, drawn after the hair so that long hair does not hide them."""
    if not face.attrs["Wearing_Earrings"]:
        return
    metal = METALS[int(face.u["metal"] * 2)]
    for s in (-1, 1):
        x, y = CX + s * (face.half_width + 2.5), EYE_Y + 19.5
        if face.u["earring_style"] < 0.5:
            pen.line(_ellipse_points(x, y + 3, 3.0, 3.6, n=16), metal + (255,), 1.4)
        else:
            pen.dot(x, y, 1.4, metal + (255,))
            pen.dot(x, y + 4.5, 2.6, metal + (255,))


def _draw_hat(pen, face):
    if not face.attrs["Wearing_Hat"]:
        return
    colour = HAT_COLOURS[int(face.u["hat_colour"] * len(HAT_COLOURS))]
    if face.u["hat_style"] < 0.5:
        _draw_beanie(pen, face, colour)
    else:
        _draw_brimmed_hat(pen, face, colour)


def _draw_beanie(pen, face, colour):
    """A dome over the hair with a turned-up band."""
    W, side = face.half_width, face.hair_bulk
    dome = np.concatenate([
        _ellipse_points(CX, EYE_Y - 24, W + side + 3, EYE_Y - 24 - face.top + face.hair_height + 8, math.pi,
                        2 * math.pi, 24),
        [(CX + W + side + 3, EYE_Y - 20), (CX - W - side - 3, EYE_Y - 20)],
    ])
    pen.poly(dome, colour)
    pen.shade(dome, _scale(colour, 0.6), strength=0.8)
    pen.poly([(CX - W - side - 4, EYE_Y - 31), (CX + W + side + 4, EYE_Y - 31), (CX + W + side + 4, EYE_Y - 20),
              (CX - W - side - 4, EYE_Y - 20)], _scale(colour, 0.85))


def _draw_brimmed_hat(pen, face, colour):
    """A crown, a wide brim and a dark band."""
    W = face.half_width
    crown = np.concatenate([
        _ellipse_points(CX, EYE_Y - 30, W + 2, EYE_Y - 30 - face.top + face.hair_height + 12, math.pi, 2 * math.pi,
                        24),
        [(CX + W + 2, EYE_Y - 28), (CX - W - 2, EYE_Y - 28)],
    ])
    pen.poly(crown, colour)
    pen.shade(crown, _scale(colour, 0.6), strength=0.8)
    pen.poly(_ellipse_points(CX, EYE_Y - 29, W + 22, 6.0, n=28), _scale(colour, 0.8))
    pen.poly([(CX - W - 2, EYE_Y - 38), (CX + W + 2, EYE_Y - 38), (CX + W + 2, EYE_Y - 32), (CX - W - 2, EYE_Y - 32)],
             _scale(colour, 0.45))


_PARTS_BACK_TO_FRONT = (  # each part covers those before it
    _draw_clothes, _draw_back_hair, _draw_neck, _draw_necklace, _draw_ears, _draw_head,
    _draw_wrinkles, _draw_double_chin, _draw_rosy_cheeks, _draw_high_cheekbones,
    _draw_stubble, _draw_beard, _draw_sideburns, _draw_nose,
    _draw_smile_lines, _draw_mouth, _draw_moustache,
    _draw_eyes, _draw_eyebrows, _draw_eyeglasses,
    _draw_front_hair, _draw_scalp_shine, _draw_earrings, _draw_hat,
)


def render_face(attributes: dict, rng) -> Image.Image:
    """One 178x218 RGB face showing ``attributes`` (name -> bool). Uses a fixed amount of ``rng`` whatever the
    attributes, so two calls with equally seeded generators differ only where the attributes differ."""
    face = _plan_face(attributes, rng)
    u = face.u
    image = _background(u)
    pen = _Painter(image, angle=(u["angle"] - 0.5) * math.radians(12), scale=1.0 + 0.1 * u["scale"],
                   dx=(u["dx"] - 0.5) * 8, dy=(u["dy"] - 0.5) * 6)
    for draw in _PARTS_BACK_TO_FRONT:
        draw(pen, face)
    out = image.reduce(SS)
    if face.attrs["Blurry"]:
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
