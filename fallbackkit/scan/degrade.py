"""Scanner, photocopier and phone-camera damage for synthetic pages (numpy + OpenCV, seeded).

Each function takes a clean grey page image and returns the damaged image. The geometric part
(rotation, print scale, skew, perspective) is what the engine must undo; the photometric part
(noise, blur, contrast loss, speckle, streaks, uneven light, JPEG) is what it must see through.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

TIERS = ("clean", "office", "hard", "phone")


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def _affine(img: np.ndarray, angle_deg: float, scale: float, pad_frac: float = 0.0,
            fill: int = 255) -> np.ndarray:
    """Rotate and scale about the centre; pad_frac adds room so that rotated corners stay in."""
    h, w = img.shape
    pad_x, pad_y = int(w * pad_frac), int(h * pad_frac)
    out_w, out_h = w + 2 * pad_x, h + 2 * pad_y
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, scale)
    m[0, 2] += pad_x
    m[1, 2] += pad_y
    return cv2.warpAffine(img, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=fill)


def _noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    n = rng.normal(0, sigma, img.shape).astype(np.float32)
    return np.clip(img.astype(np.float32) + n, 0, 255).astype(np.uint8)


def office(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sheet-fed office scanner: small rotation, 'fit to page' print scale, noise, slight blur, JPEG."""
    out = _affine(img, float(rng.uniform(-2, 2)), float(rng.uniform(0.93, 1.0)))
    out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.4, 0.8)))
    out = _noise(out, rng, float(rng.uniform(2, 5)))
    return _jpeg(out, int(rng.integers(70, 92)))


def hard(img: np.ndarray, rng: np.random.Generator, src_dpi: float = 200) -> np.ndarray:
    """A photocopy scanned at 150 dpi: contrast loss, speckle, toner streaks, any quarter turn, skew."""
    out = img
    if src_dpi > 150:
        f = 150 / src_dpi
        out = cv2.resize(out, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    out = _affine(out, float(rng.uniform(-10, 10)), float(rng.uniform(0.93, 1.0)), pad_frac=0.08)
    # contrast loss: black becomes dark grey, paper becomes light grey
    lo, hi = float(rng.uniform(25, 60)), float(rng.uniform(200, 235))
    out = (lo + out.astype(np.float32) * (hi - lo) / 255.0)
    h, w = out.shape
    # toner streaks along the paper path
    for _ in range(int(rng.integers(1, 4))):
        x = int(rng.integers(0, w))
        width = int(rng.integers(1, 4))
        out[:, x:x + width] -= float(rng.uniform(20, 60))
    out = np.clip(out, 0, 255).astype(np.uint8)
    # speckle: toner dust and paper specks
    amount = float(rng.uniform(0.002, 0.008))
    mask = rng.random(out.shape)
    out[mask < amount / 2] = int(lo)
    out[mask > 1 - amount / 2] = int(hi)
    out = cv2.GaussianBlur(out, (0, 0), 0.5)
    out = _noise(out, rng, 3)
    out = np.rot90(out, int(rng.integers(0, 4))).copy()
    return _jpeg(out, int(rng.integers(75, 92)))


def phone(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phone photo of the sheet on a desk: perspective, background around the sheet, uneven
    light, sensor noise, JPEG; 2000-3000 px on the long side."""
    h, w = img.shape
    long_side = int(rng.integers(2000, 3001))
    out_h = long_side
    out_w = int(long_side * 0.75)
    # the sheet covers 70-88 % of the frame height, placed with some freedom, corners jittered
    cover = float(rng.uniform(0.70, 0.88))
    sh = out_h * cover
    sw = sh * w / h
    cx = out_w / 2 + float(rng.uniform(-0.05, 0.05)) * out_w
    cy = out_h / 2 + float(rng.uniform(-0.04, 0.04)) * out_h
    j = 0.045 * sh
    dst = np.array([[cx - sw / 2, cy - sh / 2], [cx + sw / 2, cy - sh / 2],
                    [cx + sw / 2, cy + sh / 2], [cx - sw / 2, cy + sh / 2]], np.float32)
    dst += rng.uniform(-j, j, dst.shape).astype(np.float32)
    angle = math.radians(float(rng.uniform(-6, 6)))
    c, s = math.cos(angle), math.sin(angle)
    centre = dst.mean(axis=0)
    dst = ((dst - centre) @ np.array([[c, s], [-s, c]], np.float32)) + centre
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    # desk background: a dark, textured surface
    base = float(rng.uniform(40, 120))
    bg = rng.normal(base, 12, (out_h // 8 + 1, out_w // 8 + 1)).astype(np.float32)
    bg = cv2.resize(bg, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    sheet = cv2.warpPerspective(img, m, (out_w, out_h), flags=cv2.INTER_AREA, borderValue=0)
    cover_mask = cv2.warpPerspective(np.full(img.shape, 255, np.uint8), m, (out_w, out_h), borderValue=0)
    out = np.where(cover_mask > 127, sheet.astype(np.float32), bg)
    # uneven light: a gradient in a random direction, plus a soft vignette
    yy, xx = np.mgrid[0:out_h, 0:out_w].astype(np.float32)
    theta = float(rng.uniform(0, 2 * math.pi))
    g = (xx * math.cos(theta) + yy * math.sin(theta))
    g = (g - g.min()) / max(1e-6, float(g.max() - g.min()))
    light = 1.0 - float(rng.uniform(0.15, 0.4)) * g
    r2 = ((xx - out_w / 2) / out_w) ** 2 + ((yy - out_h / 2) / out_h) ** 2
    light *= 1.0 - 0.35 * r2
    out = out * light * float(rng.uniform(0.85, 1.0))
    out = cv2.GaussianBlur(np.clip(out, 0, 255).astype(np.uint8), (0, 0), float(rng.uniform(0.5, 1.0)))
    out = _noise(out, rng, float(rng.uniform(2, 5)))
    return _jpeg(out, int(rng.integers(70, 90)))


OCCLUDERS = ("paper", "ruled", "label")


def occlude(img: np.ndarray, rect_mm, dpi: float, rng: np.random.Generator, kind: str = "paper",
            angle_deg: float = 0.0) -> np.ndarray:
    """Something lying on the sheet when it is scanned or photographed, drawn on the clean page
    image (page mm at dpi): a plain sheet or sticky note ("paper": white, a little brighter or
    duller than the form, a soft shadow along two edges), a sheet of ruled paper ("ruled": grey
    lines every 8 mm and a margin line) or a glossy white label ("label"). rect_mm: x, y, w, h of
    the occluder before it is turned by angle_deg about its centre."""
    if kind not in OCCLUDERS:
        raise ValueError(f"unknown occluder {kind!r}; use one of {', '.join(OCCLUDERS)}")
    s = dpi / 25.4
    x, y, w, h = rect_mm
    cx, cy = (x + w / 2) * s, (y + h / 2) * s
    m = cv2.getRotationMatrix2D((w * s / 2, h * s / 2), angle_deg, 1.0)
    m[:, 2] += (cx - w * s / 2, cy - h * s / 2)
    pw, ph = max(1, int(round(w * s))), max(1, int(round(h * s)))
    level = {"paper": float(rng.uniform(236, 255)), "ruled": float(rng.uniform(232, 250)), "label": 252.0}[kind]
    sheet = np.full((ph, pw), level, np.float32)
    if kind == "ruled":
        grey = float(rng.uniform(150, 200))
        pitch = 8.0 * s
        for k in range(1, int(ph / pitch) + 1):
            r = int(k * pitch + rng.uniform(-0.3, 0.3) * s)
            sheet[max(0, r - 1):r + 1, :] = grey
        margin = int(25 * s)
        if margin < pw:
            sheet[:, margin:margin + 2] = grey - 20
    out = img.astype(np.float32)
    # soft shadow: the sheet stands a little off the page along two of its edges
    shadow = np.zeros(img.shape, np.float32)
    mask = cv2.warpAffine(np.ones((ph, pw), np.float32), m, img.shape[::-1], flags=cv2.INTER_LINEAR)
    if kind != "label":
        off = np.float32([[1, 0, 0.6 * s], [0, 1, 0.6 * s]])
        shadow = cv2.GaussianBlur(cv2.warpAffine(mask, off, img.shape[::-1]), (0, 0), 0.8 * s)
        out = out * (1 - 0.12 * shadow)
    warped = cv2.warpAffine(sheet, m, img.shape[::-1], flags=cv2.INTER_LINEAR)
    out = out * (1 - mask) + warped * mask
    return np.clip(out, 0, 255).astype(np.uint8)


def fold_corner(img: np.ndarray, corner: str, size_mm: float, dpi: float) -> np.ndarray:
    """A corner of the sheet folded over before scanning: the triangle cut off by the fold line
    shows the blank back of the paper (the folded flap lies over the page inside the fold, the
    corner itself is the scanner lid: white). corner: tl, tr, bl or br."""
    s = dpi / 25.4
    h, w = img.shape
    d = size_mm * s
    cx, cy = {"tl": (0, 0), "tr": (w, 0), "bl": (0, h), "br": (w, h)}[corner]
    sx, sy = (1 if cx == 0 else -1), (1 if cy == 0 else -1)
    out = img.copy()
    # the cut-off corner and its mirror image inside the fold line: both blank paper
    flap = np.array([[cx, cy], [cx + sx * 2 * d, cy], [cx, cy + sy * 2 * d]], np.int32)
    cv2.fillPoly(out, [flap], 248)
    cv2.line(out, (int(cx + sx * 2 * d), int(cy)), (int(cx), int(cy + sy * 2 * d)), 200, max(1, int(0.3 * s)))
    return out


def degrade(img: np.ndarray, tier: str, rng: np.random.Generator, src_dpi: float = 200) -> np.ndarray:
    if tier == "clean":
        return img
    if tier == "office":
        return office(img, rng)
    if tier == "hard":
        return hard(img, rng, src_dpi)
    if tier == "phone":
        return phone(img, rng)
    raise ValueError(f"unknown tier {tier!r}; use one of {', '.join(TIERS)}")


__all__ = ["TIERS", "OCCLUDERS", "degrade", "office", "hard", "phone", "occlude", "fold_corner"]
