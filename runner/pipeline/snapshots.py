"""Alert snapshots: the masked frame with the alert's box and zone drawn, encoded as JPEG."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from runner.core.alerts import interface_language, kind_name
from runner.core.geometry import Point, to_pixels

ALERT_COLOUR = (0, 0, 255)
ZONE_COLOUR = (0, 215, 255)


def snapshot_label(kind: str, score: float) -> str:
    """The text drawn above an alert's box, in the operators' language ($VIGIE_LANG).

    Args:
        kind: the rule kind.
        score: the alert's score.

    Returns:
        E.g. "Départ de feu 0,87" (French decimal comma), or "Fire start 0.87" in English.
    """
    language = interface_language()
    score_text = f"{score:.2f}"
    return f"{kind_name(kind, language)} {score_text.replace('.', ',') if language == 'fr' else score_text}"


def render_snapshot(
    image: np.ndarray,
    bbox: tuple[float, float, float, float] | None,
    label: str,
    polygons: Sequence[Sequence[Point]] = (),
    lines: Sequence[tuple[Point, Point]] = (),
    arrows: Sequence[tuple[Point, Point]] = (),
    jpeg_quality: int = 85,
    max_width_px: int = 1280,
) -> bytes:
    """Draws an alert on a copy of its frame and encodes it.

    Args:
        image: the BGR frame, privacy masks already applied (not modified).
        bbox: the alert's box, normalised xyxy; None draws no box (nor the label).
        label: the text above the box (kind and score).
        polygons: the zones the rule watches, normalised vertices.
        lines: the rule's tripwires, normalised (start, end).
        arrows: (origin, direction) of each zone's allowed direction, normalised; drawn from the origin.
        jpeg_quality: 0-100.
        max_width_px: wider frames are downscaled to this width (aspect kept).

    Returns:
        The JPEG bytes.

    Raises:
        ValueError: OpenCV could not encode the image.
    """
    canvas = image.copy()
    height, width = canvas.shape[:2]
    thickness = max(1, round(width / 400))
    for polygon in polygons:
        pts = np.round(to_pixels(polygon, width, height)).astype(np.int32)
        cv2.polylines(canvas, [pts], True, ZONE_COLOUR, thickness)
    for start, end in lines:
        (x1, y1), (x2, y2) = to_pixels([start, end], width, height).astype(int)
        cv2.line(canvas, (int(x1), int(y1)), (int(x2), int(y2)), ZONE_COLOUR, thickness)
    for origin, direction in arrows:  # a zone's allowed direction, drawn from its centre
        ((ox, oy),) = to_pixels([origin], width, height)
        length = 0.08 * (width**2 + height**2) ** 0.5
        dx, dy = direction[0] * width, direction[1] * height
        norm = max(1e-9, (dx**2 + dy**2) ** 0.5)
        tip = (int(ox + dx / norm * length), int(oy + dy / norm * length))
        cv2.arrowedLine(canvas, (int(ox), int(oy)), tip, ZONE_COLOUR, thickness + 1, tipLength=0.3)
    if bbox is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in (bbox[0] * width, bbox[1] * height, bbox[2] * width, bbox[3] * height))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), ALERT_COLOUR, thickness + 1)
        draw_label(canvas, label, (x1, y1), text_height_px=max(11, 7 * thickness + 5))
    if width > max_width_px:
        scale = max_width_px / width
        canvas = cv2.resize(canvas, (max_width_px, int(height * scale)), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return encoded.tobytes()


@lru_cache(maxsize=8)
def _font(size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans, as matplotlib (pinned, an Ultralytics dependency) ships it: it draws French accents, which
    OpenCV's Hershey fonts and Pillow's bundled font cannot, with no system font to install."""
    spec = importlib.util.find_spec("matplotlib")
    folders = (spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size_px)
    return ImageFont.load_default(size=size_px)  # no accents, but a label all the same


def draw_label(canvas: np.ndarray, text: str, corner_px: tuple[int, int], text_height_px: int) -> None:
    """Write `text` above the point `corner_px` (the top-left corner of a box), on a dark band, in place.

    Args:
        canvas: the BGR image, modified in place.
        text: the label, any Unicode (e.g. "Départ de feu 0,87").
        corner_px: (x, y) of the box's top-left corner; the band sits above it, or inside at the top edge.
        text_height_px: the font size in pixels.
    """
    height, width = canvas.shape[:2]
    font = _font(text_height_px)
    left, top, right, bottom = font.getbbox(text)
    band_w, band_h = min(width, right - left + 6), min(height, bottom - top + 6)
    x = max(0, min(corner_px[0], width - band_w))
    above = corner_px[1] - band_h
    y = max(0, min(above if above >= 0 else corner_px[1], height - band_h))  # inside the box when no room above
    band = np.zeros((band_h, band_w, 3), np.uint8)
    patch = Image.fromarray(band)
    ImageDraw.Draw(patch).text((3 - left, 3 - top), text, font=font, fill=ALERT_COLOUR[::-1])  # PIL draws RGB
    canvas[y : y + band_h, x : x + band_w] = np.asarray(patch)[:, :, ::-1]
