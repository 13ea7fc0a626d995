"""Alert snapshots: the masked frame with the alert's box and zone drawn, encoded as JPEG."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from runner.core.geometry import Point, to_pixels

ALERT_COLOUR = (0, 0, 255)
ZONE_COLOUR = (0, 215, 255)


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
        cv2.putText(
            canvas,
            label,
            (x1, max(12, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness + 0.1,
            ALERT_COLOUR,
            thickness,
            cv2.LINE_AA,
        )
    if width > max_width_px:
        scale = max_width_px / width
        canvas = cv2.resize(canvas, (max_width_px, int(height * scale)), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return encoded.tobytes()
