"""Drawing on a camera snapshot: the editing model (pure Python) and its anywidget view.

`CanvasModel` holds the shapes of one camera in normalised image coordinates (0..1, origin
top-left, as in the site config) and implements every edit: add, insert, drag and delete
vertices, snapping (to existing vertices, then to the image border), direction arrows, undo.
The browser side (`CanvasWidget`) only draws the scene and sends the mouse's intents back
("click at x, y", "vertex 2 of zone lawn dropped at x, y"); Python applies them, so that what the
tests exercise is exactly what the mouse does.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anywidget
import numpy as np
import traitlets

from runner.core.geometry import points_in_polygon, polygon_area
from workbench.i18n import t

Point = tuple[float, float]

KINDS = ("zone", "line", "mask", "calibration")
TOOLS = ("edit", "zone", "line", "direction", "mask", "calibration")
POLYGON_KINDS = ("zone", "mask")
MAX_POINTS = {"zone": 256, "mask": 256, "line": 2, "calibration": 4}
CALIBRATION_KEY = "calibration"
COORD_DECIMALS = 4  # 1e-4 of a 4K image is under half a pixel; keeps the YAML readable
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class EditError(ValueError):
    """An edit that cannot be applied; the message is one line for the agent."""


@dataclass
class Shape:
    kind: str  # zone | line | mask | calibration
    key: str  # the zone / line id; "mask-2" for masks (unnamed in the config); "calibration"
    points: list[Point] = field(default_factory=list)
    direction: Point | None = None  # zones only: allowed direction of movement (dx, dy)

    def as_json(self) -> dict[str, Any]:
        """The shape as the browser view reads it.

        Returns:
            kind, key, points as [x, y] lists and direction as [dx, dy] (None when not set).
        """
        return {
            "kind": self.kind,
            "key": self.key,
            "points": [list(p) for p in self.points],
            "direction": list(self.direction) if self.direction else None,
        }


def _round(value: float) -> float:
    return round(min(1.0, max(0.0, float(value))), COORD_DECIMALS)


class CanvasModel:
    """The shapes drawn on one camera's snapshot, with undo. Coordinates are normalised (0..1)."""

    def __init__(self, width: int = 1280, height: int = 720, snap_px: float = 10.0, undo_limit: int = 200):
        self.width, self.height = width, height
        self.snap_px = snap_px  # in image pixels: snapping must feel the same along x and y
        self.undo_limit = undo_limit
        self.shapes: list[Shape] = []
        self.tool = "edit"
        self.active: str | None = None  # the shape receiving new vertices
        self.selected: str | None = None
        self.direction_start: Point | None = None  # first click of the direction tool
        self._undo: list[tuple] = []
        self._listeners: list[Callable[[], None]] = []

    # -- observers -----------------------------------------------------------------------------
    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` after every change of the shapes, the tool or the selection.

        Args:
            callback: called with no argument, in the order the callbacks were added.
        """
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in list(self._listeners):
            callback()

    # -- queries -------------------------------------------------------------------------------
    def shape(self, key: str) -> Shape:
        """The shape named `key`.

        Args:
            key: a zone or line id, "mask-N" or "calibration".

        Returns:
            The shape itself (not a copy).

        Raises:
            EditError: no shape has that key.
        """
        for shape in self.shapes:
            if shape.key == key:
                return shape
        raise EditError(t("canvas.no_such_shape", key=key))

    def find(self, key: str | None) -> Shape | None:
        """The shape named `key`, if any.

        Args:
            key: the shape's key; None finds nothing.

        Returns:
            The shape, or None when there is none of that key.
        """
        return next((s for s in self.shapes if s.key == key), None)

    def of_kind(self, kind: str) -> list[Shape]:
        """The shapes of one kind, in drawing order.

        Args:
            kind: zone, line, mask or calibration.

        Returns:
            The shapes themselves (not copies).
        """
        return [s for s in self.shapes if s.kind == kind]

    def set_image_size(self, width: int, height: int) -> None:
        """The snapshot's size, which turns the snap radius (pixels) into normalised distances.

        Args:
            width: image width, pixels (at least 1 is kept).
            height: image height, pixels (at least 1 is kept).
        """
        self.width, self.height = max(1, int(width)), max(1, int(height))

    def _pixel_distance(self, a: Point, b: Point) -> float:
        return math.hypot((a[0] - b[0]) * self.width, (a[1] - b[1]) * self.height)

    def vertex_at(self, x: float, y: float, radius_px: float | None = None) -> tuple[str, int] | None:
        """The vertex nearest to (x, y) within the radius (image pixels), selected shape first.

        Args:
            x: normalised abscissa (0..1).
            y: normalised ordinate (0..1).
            radius_px: search radius, image pixels; None uses `snap_px`.

        Returns:
            (shape key, vertex index), or None when no vertex lies within the radius.
        """
        radius = self.snap_px if radius_px is None else radius_px
        best: tuple[float, str, int] | None = None
        for shape in sorted(self.shapes, key=lambda s: s.key != self.selected):
            for index, point in enumerate(shape.points):
                distance = self._pixel_distance((x, y), point)
                if distance <= radius and (best is None or distance < best[0] - 1e-9):
                    best = (distance, shape.key, index)
        return (best[1], best[2]) if best else None

    def edge_at(self, x: float, y: float, key: str) -> int | None:
        """Index of the vertex after which (x, y) lies on an edge of shape `key` (within the snap radius).

        Args:
            x: normalised abscissa (0..1).
            y: normalised ordinate (0..1).
            key: the shape whose edges are tried.

        Returns:
            The index of the edge's first vertex (the last edge closes the polygon), or None when the
            point is on no edge or `key` is not a zone or mask of at least 3 vertices.
        """
        shape = self.find(key)
        if shape is None or shape.kind not in POLYGON_KINDS or len(shape.points) < 3:
            return None
        best: tuple[float, int] | None = None
        for index, start in enumerate(shape.points):
            end = shape.points[(index + 1) % len(shape.points)]
            distance = self._segment_distance((x, y), start, end)
            if distance <= self.snap_px and (best is None or distance < best[0]):
                best = (distance, index)
        return best[1] if best else None

    def _segment_distance(self, p: Point, a: Point, b: Point) -> float:
        ax, ay, bx, by = a[0] * self.width, a[1] * self.height, b[0] * self.width, b[1] * self.height
        px, py = p[0] * self.width, p[1] * self.height
        length2 = (bx - ax) ** 2 + (by - ay) ** 2
        u = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / length2))
        return math.hypot(px - (ax + u * (bx - ax)), py - (ay + u * (by - ay)))

    def shape_at(self, x: float, y: float) -> str | None:
        """The topmost zone or mask containing (x, y), or a line passing near it.

        Args:
            x: normalised abscissa (0..1).
            y: normalised ordinate (0..1).

        Returns:
            The key of the shape drawn last among those hit, or None.
        """
        for shape in reversed(self.shapes):
            if shape.kind in POLYGON_KINDS and len(shape.points) >= 3 and _inside((x, y), shape.points):
                return shape.key
            if (
                shape.kind == "line"
                and len(shape.points) == 2
                and self._segment_distance((x, y), shape.points[0], shape.points[1]) <= self.snap_px
            ):
                return shape.key
        return None

    # -- snapping ------------------------------------------------------------------------------
    def snap(self, x: float, y: float, exclude: tuple[str, int] | None = None) -> Point:
        """To the nearest existing vertex within `snap_px`, else each coordinate to a near border.

        Args:
            x: normalised abscissa (0..1).
            y: normalised ordinate (0..1).
            exclude: (shape key, vertex index) of a vertex not to snap to (the one being dragged).

        Returns:
            The snapped point, or (x, y) clamped to 0..1 and rounded to `COORD_DECIMALS`.
        """
        best: tuple[float, Point] | None = None
        for shape in self.shapes:
            for index, point in enumerate(shape.points):
                if exclude == (shape.key, index):
                    continue
                distance = self._pixel_distance((x, y), point)
                if distance <= self.snap_px and (best is None or distance < best[0]):
                    best = (distance, point)
        if best:
            return best[1]
        x = 0.0 if x * self.width <= self.snap_px else 1.0 if (1 - x) * self.width <= self.snap_px else x
        y = 0.0 if y * self.height <= self.snap_px else 1.0 if (1 - y) * self.height <= self.snap_px else y
        return (_round(x), _round(y))

    # -- undo ----------------------------------------------------------------------------------
    def _state(self) -> tuple:
        return (copy.deepcopy(self.shapes), self.active, self.selected)

    def _checkpoint(self) -> None:
        self._undo.append(self._state())
        del self._undo[: -self.undo_limit]

    def can_undo(self) -> bool:
        """Whether an edit can be undone.

        Returns:
            True when the undo history holds at least one state.
        """
        return bool(self._undo)

    def undo(self) -> None:
        if not self._undo:
            raise EditError(t("canvas.nothing_to_undo"))
        self.shapes, self.active, self.selected = self._undo.pop()
        self.direction_start = None
        self._changed()

    # -- tools and clicks ----------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        """Pick the tool the next clicks use; the next vertex starts a new shape.

        Args:
            tool: one of `TOOLS`.

        Raises:
            EditError: an unknown tool.
        """
        if tool not in TOOLS:
            raise EditError(t("canvas.unknown_tool", tool=tool, tools=", ".join(TOOLS)))
        self.tool = tool
        self.active = None  # a new drawing tool starts a new shape
        self.direction_start = None
        self._changed()

    def click(self, x: float, y: float) -> None:
        """What a click at (x, y) means depends on the tool.

        Edit selects (or inserts a vertex on an edge of the selected polygon), direction takes the
        arrow's start then its end, any other tool adds a vertex.

        Args:
            x: normalised abscissa (clamped to 0..1).
            y: normalised ordinate (clamped to 0..1).

        Raises:
            EditError: the click cannot be applied (the message says why).
        """
        x, y = _round(x), _round(y)
        if self.tool == "edit":
            self._edit_click(x, y)
        elif self.tool == "direction":
            self._direction_click(x, y)
        else:
            self.add_vertex(x, y)

    def _edit_click(self, x: float, y: float) -> None:
        if self.selected:
            edge = self.edge_at(x, y, self.selected)
            if edge is not None and self.vertex_at(x, y) is None:
                self.insert_vertex(self.selected, edge + 1, x, y)
                return
        hit = self.vertex_at(x, y)
        self.select(hit[0] if hit else self.shape_at(x, y))

    def _direction_click(self, x: float, y: float) -> None:
        if self.direction_start is None:
            zone_key = self._zone_at(x, y) or (self.selected if self._is_zone(self.selected) else None)
            if zone_key is None:
                raise EditError(t("canvas.direction_needs_zone"))
            self.selected = zone_key
            self.direction_start = (x, y)
            self._changed()
            return
        start, self.direction_start = self.direction_start, None
        self.set_direction(self.selected, x - start[0], y - start[1])

    def _zone_at(self, x: float, y: float) -> str | None:
        for shape in reversed(self.of_kind("zone")):
            if len(shape.points) >= 3 and _inside((x, y), shape.points):
                return shape.key
        return None

    def _is_zone(self, key: str | None) -> bool:
        shape = self.find(key)
        return shape is not None and shape.kind == "zone"

    def select(self, key: str | None) -> None:
        """Select a shape, or nothing.

        Args:
            key: the shape's key; None clears the selection.

        Raises:
            EditError: no shape has that key.
        """
        if key is not None:
            self.shape(key)
        self.selected = key
        self._changed()

    def finish(self) -> None:
        """Stop adding vertices to the active shape (a polygon is closed implicitly)."""
        self.active = None
        self._changed()

    # -- edits ---------------------------------------------------------------------------------
    def new_shape(self, kind: str, key: str | None = None) -> Shape:
        """Start an empty shape, active (receiving the next vertices) and selected.

        Args:
            kind: one of `KINDS`.
            key: its id; None takes the first free "<kind>-N". The calibration is always "calibration".

        Returns:
            The new shape.

        Raises:
            EditError: an unknown kind, a second calibration, a key that is not a slug or is taken.
        """
        if kind not in KINDS:
            raise EditError(t("canvas.unknown_kind", kind=kind))
        if kind == "calibration":
            if self.find(CALIBRATION_KEY):
                raise EditError(t("canvas.calibration_exists"))
            key = CALIBRATION_KEY
        key = key or self._free_key(kind)
        self._check_key(key)
        self._checkpoint()
        shape = Shape(kind, key)
        self.shapes.append(shape)
        self.active = self.selected = key
        self._changed()
        return shape

    def _free_key(self, kind: str) -> str:
        number = 1
        while self.find(f"{kind}-{number}"):
            number += 1
        return f"{kind}-{number}"

    def _check_key(self, key: str) -> None:
        if not _SLUG.match(key):
            raise EditError(t("canvas.bad_key", key=key))
        if self.find(key):
            raise EditError(t("canvas.duplicate_key", key=key))

    def add_vertex(self, x: float, y: float) -> None:
        """Add a vertex with the current drawing tool, starting a new shape when none is active.

        Clicking the first vertex of a polygon again closes it instead.

        Args:
            x: normalised abscissa (0..1), snapped first.
            y: normalised ordinate (0..1), snapped first.

        Raises:
            EditError: no drawing tool, the shape is full, or the point is already one of its vertices.
        """
        kind = self.tool if self.tool in KINDS else None
        if kind is None:
            raise EditError(t("canvas.pick_drawing_tool"))
        shape = self.find(self.active)
        if shape is None or shape.kind != kind:
            shape = self.find(CALIBRATION_KEY) if kind == "calibration" else None
            if shape is None:
                shape = self.new_shape(kind)
            self.active = self.selected = shape.key
        if len(shape.points) >= MAX_POINTS[shape.kind]:
            raise EditError(
                t(f"canvas.full_{shape.kind}")
                if shape.kind in ("line", "calibration")
                else t("canvas.too_many_points", limit=MAX_POINTS[shape.kind])
            )
        point = self.snap(x, y)
        if point in shape.points:
            if shape.kind in POLYGON_KINDS and point == shape.points[0] and len(shape.points) >= 3:
                self.finish()  # clicking the first vertex again closes the polygon
                return
            raise EditError(t("canvas.duplicate_vertex"))
        self._checkpoint()
        shape.points.append(point)
        if len(shape.points) >= MAX_POINTS[shape.kind]:
            self.active = None  # a line is done at 2 points, the calibration at 4
        self._changed()

    def insert_vertex(self, key: str, index: int, x: float, y: float) -> None:
        """Insert a vertex into a shape and select it.

        Args:
            key: the shape's key.
            index: position of the new vertex (clamped to the shape's vertices).
            x: normalised abscissa (0..1), snapped first.
            y: normalised ordinate (0..1), snapped first.

        Raises:
            EditError: no such shape, the shape is full, or the point is already one of its vertices.
        """
        shape = self.shape(key)
        if len(shape.points) >= MAX_POINTS[shape.kind]:
            raise EditError(t("canvas.too_many_points", limit=MAX_POINTS[shape.kind]))
        point = self.snap(x, y)
        if point in shape.points:
            raise EditError(t("canvas.duplicate_vertex"))
        self._checkpoint()
        shape.points.insert(max(0, min(index, len(shape.points))), point)
        self.selected = key
        self._changed()

    def move_vertex(self, key: str, index: int, x: float, y: float) -> None:
        """Move a vertex (a drag ending) and select its shape.

        Args:
            key: the shape's key.
            index: the vertex's index.
            x: normalised abscissa (0..1), snapped to another vertex or a border first.
            y: normalised ordinate (0..1), snapped to another vertex or a border first.

        Raises:
            EditError: no such shape or vertex, or the point is another vertex of the same shape.
        """
        shape = self.shape(key)
        self._check_index(shape, index)
        point = self.snap(x, y, exclude=(key, index))
        if point in shape.points[:index] + shape.points[index + 1 :]:
            raise EditError(t("canvas.duplicate_vertex"))
        self._checkpoint()
        shape.points[index] = point
        self.selected = key
        self._changed()

    def delete_vertex(self, key: str, index: int) -> None:
        """Delete a vertex; a shape left without any is deleted too.

        Args:
            key: the shape's key.
            index: the vertex's index.

        Raises:
            EditError: no such shape or vertex.
        """
        shape = self.shape(key)
        self._check_index(shape, index)
        self._checkpoint()
        del shape.points[index]
        if not shape.points:
            self._remove(key)
        self._changed()

    def delete_shape(self, key: str) -> None:
        """Delete a shape.

        Args:
            key: the shape's key.

        Raises:
            EditError: no such shape.
        """
        self.shape(key)
        self._checkpoint()
        self._remove(key)
        self._changed()

    def _remove(self, key: str) -> None:
        self.shapes = [s for s in self.shapes if s.key != key]
        if self.active == key:
            self.active = None
        if self.selected == key:
            self.selected = None

    def rename(self, key: str, new_key: str) -> None:
        """Give a zone, line or mask another key (the rules that name it are the caller's business).

        Args:
            key: the shape's key.
            new_key: a free slug (lower case letters, digits, '_' and '-'); the same key does nothing.

        Raises:
            EditError: no such shape, the calibration, or a new key that is not a slug or is taken.
        """
        shape = self.shape(key)
        if new_key == key:
            return
        if shape.kind == "calibration":
            raise EditError(t("canvas.calibration_name"))
        self._check_key(new_key)
        self._checkpoint()
        shape.key = new_key
        self.active = new_key if self.active == key else self.active
        self.selected = new_key if self.selected == key else self.selected
        self._changed()

    def set_direction(self, key: str | None, dx: float, dy: float) -> None:
        """Set a zone's allowed direction of movement, stored as a unit vector rounded to 3 decimals.

        Args:
            key: the zone's key.
            dx: the arrow's normalised horizontal extent.
            dy: the arrow's normalised vertical extent.

        Raises:
            EditError: `key` is not a zone, or the arrow is shorter than `snap_px` pixels.
        """
        shape = self.find(key)
        if shape is None or shape.kind != "zone":
            raise EditError(t("canvas.direction_needs_zone"))
        length = math.hypot(dx * self.width, dy * self.height)
        if length < self.snap_px:
            raise EditError(t("canvas.direction_too_short"))
        # Stored as a unit vector in image-normalised units, so the YAML reads (1, 0), (0.7, -0.7)...
        norm = math.hypot(dx, dy)
        self._checkpoint()
        shape.direction = (round(dx / norm, 3), round(dy / norm, 3))
        self._changed()

    def clear_direction(self, key: str) -> None:
        """Remove a shape's direction.

        Args:
            key: the shape's key.

        Raises:
            EditError: no such shape.
        """
        shape = self.shape(key)
        self._checkpoint()
        shape.direction = None
        self._changed()

    @staticmethod
    def _check_index(shape: Shape, index: int) -> None:
        if not 0 <= index < len(shape.points):
            raise EditError(t("canvas.no_such_vertex", index=index, key=shape.key))

    # -- config <-> shapes ---------------------------------------------------------------------
    def load_camera(self, camera: Mapping[str, Any]) -> None:
        """Shapes from a camera of the config (plain data); clears the undo history.

        Args:
            camera: one camera of the site config as plain data: zones, lines, privacy_masks, calibration.
        """
        shapes = [
            Shape(
                "zone", z["id"], [tuple(p) for p in z["polygon"]], tuple(z["direction"]) if z.get("direction") else None
            )
            for z in camera.get("zones") or []
        ]
        shapes += [Shape("line", ln["id"], [tuple(ln["start"]), tuple(ln["end"])]) for ln in camera.get("lines") or []]
        shapes += [
            Shape("mask", f"mask-{i + 1}", [tuple(p) for p in polygon])
            for i, polygon in enumerate(camera.get("privacy_masks") or [])
        ]
        calibration = camera.get("calibration")
        if calibration:
            shapes.append(Shape("calibration", CALIBRATION_KEY, [tuple(p) for p in calibration["image"]]))
        self.shapes, self.active, self.selected, self.direction_start = shapes, None, None, None
        self._undo.clear()
        self._changed()

    def geometry(self) -> dict[str, Any]:
        """zones, lines, privacy_masks and the calibration's image points, as config data.

        Shapes are written as drawn, even unfinished ones: the runner's validation then names
        the offending field (a polygon with two points, a line without its end).

        Returns:
            {"zones", "lines", "privacy_masks", "calibration_image"}; the last is None without a
            calibration shape.
        """
        zones = []
        for shape in self.of_kind("zone"):
            zone: dict[str, Any] = {"id": shape.key, "polygon": [list(p) for p in shape.points]}
            if shape.direction:
                zone["direction"] = list(shape.direction)
            zones.append(zone)
        lines = []
        for shape in self.of_kind("line"):
            line: dict[str, Any] = {"id": shape.key}
            if shape.points:
                line["start"] = list(shape.points[0])
            if len(shape.points) > 1:
                line["end"] = list(shape.points[1])
            lines.append(line)
        calibration = self.find(CALIBRATION_KEY)
        return {
            "zones": zones,
            "lines": lines,
            "privacy_masks": [[list(p) for p in s.points] for s in self.of_kind("mask")],
            "calibration_image": [list(p) for p in calibration.points] if calibration else None,
        }

    def scene(self) -> dict[str, Any]:
        """What the browser draws.

        Returns:
            The shapes (`Shape.as_json`), the active and selected keys, the tool, the direction
            tool's first click and whether undo is possible.
        """
        return {
            "shapes": [s.as_json() for s in self.shapes],
            "active": self.active,
            "selected": self.selected,
            "tool": self.tool,
            "direction_start": list(self.direction_start) if self.direction_start else None,
            "can_undo": self.can_undo(),
        }


def _inside(point: Point, polygon: list[Point]) -> bool:
    """The runner's even-odd rule, except that a polygon without area contains nothing (nothing to click in)."""
    return polygon_area(polygon) > 0 and bool(points_in_polygon(np.asarray([point], dtype=float), polygon)[0])


# -- the browser view -------------------------------------------------------------------------------
_ESM = r"""
const COLORS = { zone: "#1f77b4", line: "#ff7f0e", mask: "#222222", calibration: "#d62728" };
const HIT_PX = 8;

function render({ model, el }) {
  const wrap = document.createElement("div");
  wrap.className = "vigie-canvas-wrap";
  const canvas = document.createElement("canvas");
  canvas.className = "vigie-canvas";
  canvas.tabIndex = 0;
  wrap.appendChild(canvas);
  el.appendChild(wrap);
  const ctx = canvas.getContext("2d");
  const image = new Image();
  let drag = null;      // {key, index, x, y, moved}
  let pointer = null;   // last pointer position, normalised

  function scene() { return model.get("scene") || { shapes: [] }; }

  function resize() {
    const width = model.get("display_width");
    const ratio = model.get("image_height") / Math.max(1, model.get("image_width"));
    canvas.width = width;
    canvas.height = Math.round(width * ratio);
    draw();
  }

  function toNorm(event) {
    const rect = canvas.getBoundingClientRect();
    return [Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width)),
            Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height))];
  }

  function px(point) { return [point[0] * canvas.width, point[1] * canvas.height]; }

  function pointsOf(shape) {
    if (drag && drag.key === shape.key && drag.moved) {
      const points = shape.points.slice();
      points[drag.index] = [drag.x, drag.y];
      return points;
    }
    return shape.points;
  }

  function vertexAt(norm) {
    let best = null;
    for (const shape of scene().shapes) {
      shape.points.forEach((point, index) => {
        const dx = (point[0] - norm[0]) * canvas.width, dy = (point[1] - norm[1]) * canvas.height;
        const distance = Math.hypot(dx, dy);
        if (distance <= HIT_PX && (!best || distance < best.distance)) best = { key: shape.key, index, distance };
      });
    }
    return best;
  }

  function arrow(from, to, color) {
    const angle = Math.atan2(to[1] - from[1], to[0] - from[0]);
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = 3;
    ctx.beginPath(); ctx.moveTo(from[0], from[1]); ctx.lineTo(to[0], to[1]); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(to[0], to[1]);
    ctx.lineTo(to[0] - 12 * Math.cos(angle - 0.45), to[1] - 12 * Math.sin(angle - 0.45));
    ctx.lineTo(to[0] - 12 * Math.cos(angle + 0.45), to[1] - 12 * Math.sin(angle + 0.45));
    ctx.closePath(); ctx.fill();
  }

  function centroid(points) {
    const sum = points.reduce((acc, p) => [acc[0] + p[0], acc[1] + p[1]], [0, 0]);
    return [sum[0] / points.length, sum[1] / points.length];
  }

  function drawShape(shape, state) {
    const points = pointsOf(shape).map(px);
    if (!points.length) return;
    const color = COLORS[shape.kind] || "#9467bd";
    const selected = state.selected === shape.key;
    ctx.lineWidth = selected ? 3 : 2;
    ctx.strokeStyle = color;
    ctx.setLineDash(state.active === shape.key ? [6, 4] : []);
    ctx.beginPath();
    points.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
    if (shape.kind === "zone" || shape.kind === "mask") {
      if (state.active !== shape.key) ctx.closePath();
      const zoneFill = selected ? "rgba(31,119,180,0.30)" : "rgba(31,119,180,0.15)";
      ctx.fillStyle = shape.kind === "mask" ? "rgba(0,0,0,0.55)" : zoneFill;
      if (points.length >= 3) ctx.fill();
    }
    ctx.stroke();
    ctx.setLineDash([]);
    if (shape.kind === "line" && points.length === 2) {
      const mid = [(points[0][0] + points[1][0]) / 2, (points[0][1] + points[1][1]) / 2];
      const dx = points[1][0] - points[0][0], dy = points[1][1] - points[0][1];
      const len = Math.max(1, Math.hypot(dx, dy));
      arrow(mid, [mid[0] + 18 * dx / len, mid[1] + 18 * dy / len], color);   // start -> end
    }
    if (shape.direction && points.length >= 3) {
      const c = px(centroid(pointsOf(shape)));
      const d = shape.direction, len = Math.max(1e-9, Math.hypot(d[0] * canvas.width, d[1] * canvas.height));
      const reach = Math.min(canvas.width, canvas.height) * 0.12;
      arrow([c[0] - reach * d[0] * canvas.width / len, c[1] - reach * d[1] * canvas.height / len],
            [c[0] + reach * d[0] * canvas.width / len, c[1] + reach * d[1] * canvas.height / len], "#2ca02c");
    }
    points.forEach((p, i) => {
      ctx.beginPath();
      ctx.arc(p[0], p[1], selected ? 6 : 4, 0, 2 * Math.PI);
      ctx.fillStyle = "#ffffff"; ctx.fill();
      ctx.lineWidth = 2; ctx.strokeStyle = color; ctx.stroke();
      if (shape.kind === "calibration") {
        ctx.fillStyle = color; ctx.font = "bold 13px sans-serif";
        ctx.fillText(String(i + 1), p[0] + 8, p[1] - 8);
      }
    });
    if (shape.kind !== "calibration") {
      const c = px(centroid(pointsOf(shape)));
      ctx.font = "12px sans-serif"; ctx.fillStyle = "#ffffff";
      ctx.strokeStyle = "rgba(0,0,0,0.7)"; ctx.lineWidth = 3;
      ctx.strokeText(shape.key, c[0] + 6, c[1] - 6); ctx.fillText(shape.key, c[0] + 6, c[1] - 6);
    }
  }

  function draw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (image.complete && image.naturalWidth) {
      ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    } else {
      ctx.fillStyle = "#555"; ctx.fillRect(0, 0, canvas.width, canvas.height);
    }
    const state = scene();
    for (const shape of state.shapes) drawShape(shape, state);
    if (state.direction_start && pointer) {
      arrow(px(state.direction_start), px(pointer), "#2ca02c");
    }
  }

  function send(message) { model.send(message); }

  function onDown(event) {
    if (event.button !== 0) return;
    canvas.focus();
    const norm = toNorm(event);
    // Pressing on a vertex may start a drag with any tool; without movement it stays a click
    // (so that clicking the first vertex of a polygon being drawn closes it).
    const hit = vertexAt(norm);
    drag = hit ? { key: hit.key, index: hit.index, x: norm[0], y: norm[1], moved: false, start: norm } : null;
    if (drag) canvas.setPointerCapture(event.pointerId);
    event.preventDefault();
  }

  function onMove(event) {
    pointer = toNorm(event);
    if (drag) {
      const far =
        Math.hypot((pointer[0] - drag.start[0]) * canvas.width, (pointer[1] - drag.start[1]) * canvas.height) > 3;
      drag.moved = drag.moved || far;
      drag.x = pointer[0]; drag.y = pointer[1];
      draw();
    } else if (scene().direction_start) {
      draw();
    }
  }

  function onUp(event) {
    if (event.button !== 0) return;
    const norm = toNorm(event);
    if (drag && drag.moved) {
      send({ type: "move_vertex", key: drag.key, index: drag.index, x: norm[0], y: norm[1] });
    } else {
      send({ type: "click", x: norm[0], y: norm[1] });
    }
    drag = null;
  }

  function onContextMenu(event) {
    event.preventDefault();
    const hit = vertexAt(toNorm(event));
    if (hit) send({ type: "delete_vertex", key: hit.key, index: hit.index });
  }

  function onKey(event) {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      send({ type: "undo" }); event.preventDefault();
    } else if (event.key === "Enter" || event.key === "Escape") {
      send({ type: "finish" }); event.preventDefault();
    }
    else if ((event.key === "Delete" || event.key === "Backspace") && pointer) {
      const hit = vertexAt(pointer);
      if (hit) { send({ type: "delete_vertex", key: hit.key, index: hit.index }); event.preventDefault(); }
    }
  }

  canvas.addEventListener("pointerdown", onDown);
  canvas.addEventListener("pointermove", onMove);
  canvas.addEventListener("pointerup", onUp);
  canvas.addEventListener("contextmenu", onContextMenu);
  canvas.addEventListener("keydown", onKey);
  image.onload = draw;
  const loadImage = () => { image.src = model.get("image_src") || ""; resize(); };
  model.on("change:image_src", loadImage);
  model.on("change:scene", draw);
  model.on("change:display_width", resize);
  model.on("change:image_width", resize);
  model.on("change:image_height", resize);
  loadImage();
  return () => {
    model.off("change:image_src", loadImage);
    model.off("change:scene", draw);
    model.off("change:display_width", resize);
    model.off("change:image_width", resize);
    model.off("change:image_height", resize);
  };
}

export default { render };
"""

_CSS = """
.vigie-canvas-wrap { display: inline-block; line-height: 0; }
.vigie-canvas { max-width: 100%; cursor: crosshair; outline: 1px solid #888; touch-action: none; }
.vigie-canvas:focus { outline: 2px solid #1f77b4; }
"""


class CanvasWidget(anywidget.AnyWidget):
    """The snapshot with its shapes; mouse intents are applied by the `CanvasModel` in Python."""

    _esm = _ESM
    _css = _CSS
    image_src = traitlets.Unicode("").tag(sync=True)  # data: URL of the JPEG snapshot
    image_width = traitlets.Int(1280).tag(sync=True)
    image_height = traitlets.Int(720).tag(sync=True)
    display_width = traitlets.Int(900).tag(sync=True)
    scene = traitlets.Dict().tag(sync=True)

    def __init__(self, model: CanvasModel, on_error: Callable[[str], None] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.model = model
        self.on_error = on_error or (lambda message: None)
        model.on_change(self.refresh)
        self.on_msg(self._on_browser_message)
        self.refresh()

    def refresh(self) -> None:
        self.scene = self.model.scene()

    def set_image(self, data_url: str, width: int, height: int) -> None:
        """Show a snapshot under the shapes.

        Args:
            data_url: the image as a `data:` URL (a JPEG from `setup_app.jpeg_data_url`).
            width: image width, pixels.
            height: image height, pixels.
        """
        self.model.set_image_size(width, height)
        self.image_width, self.image_height = width, height
        self.image_src = data_url

    def _on_browser_message(self, _widget: Any, content: Mapping[str, Any], _buffers: Any) -> None:
        try:
            apply_intent(self.model, content)
        except EditError as exc:
            self.on_error(str(exc))
        self.refresh()  # also after an error: the browser drops its local drag preview


def apply_intent(model: CanvasModel, message: Mapping[str, Any]) -> None:
    """Apply one message from the browser ({"type": "click", "x": .., "y": ..} ...) to the model.

    Args:
        model: the shapes being edited.
        message: a browser intent: click, move_vertex, delete_vertex, undo or finish, with its fields.

    Raises:
        EditError: an unknown intent, or one the model refuses.
    """
    kind = message.get("type")
    if kind == "click":
        model.click(float(message["x"]), float(message["y"]))
    elif kind == "move_vertex":
        model.move_vertex(str(message["key"]), int(message["index"]), float(message["x"]), float(message["y"]))
    elif kind == "delete_vertex":
        model.delete_vertex(str(message["key"]), int(message["index"]))
    elif kind == "undo":
        model.undo()
    elif kind == "finish":
        model.finish()
    else:
        raise EditError(t("canvas.unknown_intent", kind=kind))
