"""Export of a site config drawn in the workbench: diff, revision bump, files, sha256, audit row.

Layout of one site folder (`zones/<site>/`):

    site.yaml                 the current revision, what the runner loads
    revisions/site.r0003.yaml every revision ever exported (also a hand-written one found in site.yaml)
    revisions/SHA256SUMS      `<sha256>  site.r0003.yaml` lines (`sha256sum -c SHA256SUMS` checks them)

An export validates the draft with the runner's own models, writes the exact bytes the runner will
read back, and logs `config_exported` (site, revision, sha256, actor and role) in the register's
audit log. Only the design role exports (`runner.core.access`); every file it writes stays under
`zones_dir/<site>/` (a site name that is not a plain folder name is refused).
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from runner.config.loading import LoadedConfig, dump_config, load_config, parse_config, validation_problems
from runner.config.site import SiteConfig
from runner.core.access import Action, Principal, require
from runner.core.errors import ConfigError
from runner.register import Register
from workbench.i18n import add_messages, t

CURRENT_FILE = "site.yaml"
REVISIONS_DIR = "revisions"
SUMS_FILE = "SHA256SUMS"
AUDIT_EVENT = "config_exported"
MAX_ACTOR_CHARS = 200
_REVISION_FILE = re.compile(r"^site\.r(\d{4,})\.yaml$")


add_messages(
    {
        "fr": {
            "export.conflict": (
                "le site {site} a changé depuis que vous l'avez ouvert (révision {base} → {current}, "
                "{count} modification(s) d'un autre agent) : fusionnez ou recommencez"
            ),
            "export.conflict_new_site": "le site {site} existe déjà (révision {current}) : rechargez-le",
            "export.nothing_to_export": "aucune modification par rapport à la révision {revision} : rien à exporter",
        },
        "en": {
            "export.conflict": (
                "site {site} changed since you opened it (revision {base} -> {current}, "
                "{count} change(s) by another agent): merge or start again"
            ),
            "export.conflict_new_site": "site {site} already exists (revision {current}): reload it",
            "export.nothing_to_export": "no change from revision {revision}: nothing to export",
        },
    }
)


class ExportError(Exception):
    """The draft cannot be exported. `problems` holds (field path, message) pairs; str() is one line."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None):
        self.problems = problems or []
        super().__init__(message)


class ExportConflict(ExportError):
    """The site moved on since the draft was opened (optimistic concurrency): nothing was written.

    `base` is the config the draft was built on (None for a new site, or when its revision file is
    gone), `current` the site's current one, `theirs` what changed from one to the other.
    """

    def __init__(
        self,
        message: str,
        base: Mapping[str, Any] | None,
        current: Mapping[str, Any],
        theirs: list[FieldChange],
    ):
        self.base = base
        self.current = current
        self.theirs = theirs
        super().__init__(message, [(change.path, change.describe()) for change in theirs])


# -- diff -------------------------------------------------------------------------------------------
class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class FieldChange:
    path: str  # cameras[pets].zones[lawn].polygon: list items with an id are named by it
    old: Any
    new: Any

    def describe(self) -> str:
        """The change as one line of the export plan.

        Returns:
            '+ path: new', '- path: old' or '~ path: old -> new', values in flow YAML cut at 120 characters.
        """
        if self.old is MISSING:
            return f"+ {self.path}: {_short(self.new)}"
        if self.new is MISSING:
            return f"- {self.path}: {_short(self.old)}"
        return f"~ {self.path}: {_short(self.old)} -> {_short(self.new)}"


def _short(value: Any, limit: int = 120) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True).strip()
    text = text.removesuffix("\n...").removesuffix("...").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def field_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[FieldChange]:
    """Field-level changes between two configs as plain data (`model_dump(mode="json")`).

    Lists whose items all have an `id` (cameras, zones, lines, rules) are compared item by item,
    matched by id, so that inserting a zone does not show every later zone as changed. Other lists
    (a polygon, labels) are compared as whole values.

    Args:
        old: the previous config; None compares against an empty one (a first export).
        new: the new config.

    Returns:
        The changes in the old config's order, then what only the new one has.
    """
    changes: list[FieldChange] = []
    _diff_value("", old if old is not None else {}, new, changes)
    return changes


def _diff_value(path: str, old: Any, new: Any, out: list[FieldChange]) -> None:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in list(old) + [k for k in new if k not in old]:
            child = f"{path}.{key}" if path else str(key)
            _diff_value(child, old.get(key, MISSING), new.get(key, MISSING), out)
    elif _is_id_list(old) and _is_id_list(new):
        old_by_id, new_by_id = {i["id"]: i for i in old}, {i["id"]: i for i in new}
        for item_id in list(old_by_id) + [k for k in new_by_id if k not in old_by_id]:
            _diff_value(f"{path}[{item_id}]", old_by_id.get(item_id, MISSING), new_by_id.get(item_id, MISSING), out)
    elif old != new:
        out.append(FieldChange(path, old, new))


def _is_id_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, Mapping) and "id" in i for i in value)


def merge_configs(
    base: Mapping[str, Any] | None, theirs: Mapping[str, Any], mine: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Three-way merge of configs as plain data: my edits of `base` replayed over `theirs` (the site now).

    Matched as `field_diff` does (mappings by key, lists of items with an `id` item by item); a field
    both sides changed to different values is a conflict and keeps their (exported) value.

    Args:
        base: the config my draft was built on; None merges against an empty one.
        theirs: the site's current config (what another agent exported meanwhile).
        mine: my draft.

    Returns:
        (the merged config, the paths of the conflicting fields where their value was kept).
    """
    conflicts: list[str] = []
    merged = _merge_value("", base if base is not None else {}, theirs, mine, conflicts)
    return dict(merged), conflicts


def _merge_value(path: str, base: Any, theirs: Any, mine: Any, conflicts: list[str]) -> Any:
    if mine == base or mine == theirs:
        return theirs
    if theirs == base:
        return mine
    if all(isinstance(v, Mapping) for v in (theirs, mine)) and isinstance(base, Mapping | _Missing):
        base_map = base if isinstance(base, Mapping) else {}
        merged: dict[str, Any] = {}
        for key in list(theirs) + [k for k in mine if k not in theirs]:
            child = f"{path}.{key}" if path else str(key)
            value = _merge_value(
                child, base_map.get(key, MISSING), theirs.get(key, MISSING), mine.get(key, MISSING), conflicts
            )
            if value is not MISSING:
                merged[key] = value
        return merged
    if all(_is_id_list(v) or v == [] or v is MISSING for v in (base, theirs, mine)) and MISSING not in (theirs, mine):
        by_id = [{item["id"]: item for item in (v if isinstance(v, list) else [])} for v in (base, theirs, mine)]
        items = []
        for item_id in list(by_id[1]) + [k for k in by_id[2] if k not in by_id[1]]:
            base_item, their_item, my_item = (side.get(item_id, MISSING) for side in by_id)
            value = _merge_value(f"{path}[{item_id}]", base_item, their_item, my_item, conflicts)
            if value is not MISSING:
                items.append(value)
        return items
    conflicts.append(path)
    return theirs


def yaml_diff(old_text: str, new_text: str, old_name: str, new_name: str) -> str:
    """Unified diff of two YAML texts ('' when equal).

    Args:
        old_text: the previous YAML.
        new_text: the new YAML.
        old_name: the label of the '---' line.
        new_name: the label of the '+++' line.

    Returns:
        The diff with 2 lines of context.
    """
    lines = difflib.unified_diff(
        old_text.splitlines(keepends=True), new_text.splitlines(keepends=True), old_name, new_name, n=2
    )
    return "".join(lines)


# -- one site's folder ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Revision:
    number: int
    path: Path
    sha256: str | None  # as listed in SHA256SUMS (None: the file is not listed there)


class SiteFolder:
    """zones/<site>/: the current config and every exported revision."""

    def __init__(self, zones_dir: Path, site: str):
        if not _is_plain_name(site):
            raise ExportError(f"site {str(site)[:60]!r}: not a plain folder name (no '/', '..' or control characters)")
        self.site = site
        self.dir = Path(zones_dir) / site
        self.current_path = self.dir / CURRENT_FILE
        self.revisions_dir = self.dir / REVISIONS_DIR
        self.sums_path = self.revisions_dir / SUMS_FILE

    def current(self) -> LoadedConfig | None:
        """The current site.yaml, or None for a site never exported (raises ConfigError when invalid).

        Returns:
            The loaded config, or None when the folder holds no site.yaml.
        """
        return load_config(self.current_path) if self.current_path.exists() else None

    def revision_path(self, number: int) -> Path:
        """Where revision `number` is archived.

        Args:
            number: the revision number.

        Returns:
            revisions/site.rNNNN.yaml (at least 4 digits) under the site folder.
        """
        return self.revisions_dir / f"site.r{number:04d}.yaml"

    def listed_sums(self) -> dict[str, str]:
        """File name -> sha256 from SHA256SUMS.

        Returns:
            The listed digests by file name; empty when the file does not exist.
        """
        if not self.sums_path.exists():
            return {}
        sums = {}
        for line in self.sums_path.read_text(encoding="utf-8").splitlines():
            digest, _, name = line.partition("  ")
            if name:
                sums[name.strip()] = digest.strip()
        return sums

    def revisions(self) -> list[Revision]:
        """The archived revision files.

        Returns:
            One entry per site.rNNNN.yaml, by increasing number; empty without a revisions folder.
        """
        if not self.revisions_dir.is_dir():
            return []
        sums = self.listed_sums()
        found = []
        for path in self.revisions_dir.iterdir():
            match = _REVISION_FILE.match(path.name)
            if match:
                found.append(Revision(int(match.group(1)), path, sums.get(path.name)))
        return sorted(found, key=lambda r: r.number)

    def next_revision(self, current: LoadedConfig | None) -> int:
        """One above both the current file's revision and every archived one (never reused).

        Args:
            current: the loaded site.yaml, or None when there is none (or it cannot be read).

        Returns:
            The number of the next revision (1 for a first export).
        """
        highest = max([r.number for r in self.revisions()] + [current.config.revision if current else 0])
        return highest + 1

    def verify(self) -> list[str]:
        """Revision files whose bytes no longer match SHA256SUMS (or that it does not list).

        Returns:
            One line per such file, naming it and the mismatch; empty when all match.
        """
        problems = []
        for revision in self.revisions():
            actual = sha256_of(revision.path.read_bytes())
            if revision.sha256 is None:
                problems.append(f"{revision.path.name}: not listed in {SUMS_FILE}")
            elif actual != revision.sha256:
                problems.append(f"{revision.path.name}: sha256 {actual} differs from {SUMS_FILE} ({revision.sha256})")
        return problems


def _is_plain_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and name not in (".", "..")
        and name.isprintable()
        and not any(sep in name for sep in ("/", "\\"))
    )


def list_sites(zones_dir: Path) -> list[str]:
    """Site folders that hold a site.yaml, sorted.

    Args:
        zones_dir: the folder of the site folders.

    Returns:
        The site names; empty when the folder does not exist.
    """
    zones_dir = Path(zones_dir)
    if not zones_dir.is_dir():
        return []
    return sorted(p.name for p in zones_dir.iterdir() if (p / CURRENT_FILE).is_file())


def sha256_of(data: bytes) -> str:
    """The digest that SHA256SUMS lists.

    Args:
        data: the file's bytes.

    Returns:
        The SHA-256 in lower-case hex.
    """
    return hashlib.sha256(data).hexdigest()


# -- export -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportPlan:
    """What an export would write; shown to the agent before they confirm."""

    site: str
    revision: int
    previous_revision: int | None
    previous_sha256: str | None
    text: str  # the exact YAML that will be written
    sha256: str
    changes: list[FieldChange]
    unified_diff: str


@dataclass(frozen=True)
class ExportResult:
    site: str
    revision: int
    sha256: str
    current_path: Path
    revision_path: Path
    audit_id: int
    actor: str
    changes: list[FieldChange]


def validate_draft(draft: Mapping[str, Any] | SiteConfig) -> SiteConfig:
    """The runner's own validation; raises ExportError with every (field path, message).

    Args:
        draft: the site config as plain data, or an already validated one (returned as is).

    Returns:
        The validated config.

    Raises:
        ExportError: the draft is invalid; its `problems` list every (field path, message).
    """
    if isinstance(draft, SiteConfig):
        return draft
    try:
        return SiteConfig.model_validate(dict(draft))
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise ExportError(
            t("export.invalid", count=len(problems), first=_problem_line(problems[0])), problems
        ) from None


def _problem_line(problem: tuple[str, str]) -> str:
    path, message = problem
    return f"{path}: {message}" if path else message


class ConfigExporter:
    """Exports drafts of the sites under `zones_dir`, logging each export in the register."""

    def __init__(self, zones_dir: Path, register: Register | Callable[[], Register]):
        self.zones_dir = Path(zones_dir)
        self._register = register

    def plan(self, draft: Mapping[str, Any] | SiteConfig, base_revision: int | None = None) -> ExportPlan:
        """Validate the draft, number its revision and compute the diff; writes nothing.

        Args:
            draft: the site config as plain data, or a validated one.
            base_revision: the revision the draft was built on (0: a site that did not exist yet);
                None skips the check (a caller that holds no earlier revision, such as a test).

        Returns:
            The plan: the next revision, the exact YAML and its sha256, the changes from the current
            site.yaml (an unreadable one counts as none).

        Raises:
            ExportConflict: the site's current revision is not `base_revision` (another agent exported).
            ExportError: the draft is invalid, its site name is not a plain folder name, or the runner
                would reject the YAML written from it.
        """
        config = validate_draft(draft)
        folder = SiteFolder(self.zones_dir, config.site)
        current = self._current(folder)
        if base_revision is not None:
            self._check_base(folder, current, base_revision)
        revision = folder.next_revision(current)
        config = config.model_copy(update={"revision": revision})
        text = dump_config(config)
        try:  # what the runner will read back must be this config: refuse anything it would reject
            reread = parse_config(text, f"{config.site}/{CURRENT_FILE}")
        except ConfigError as exc:
            problems = [("", p) for p in exc.problems]
            raise ExportError(t("export.invalid", count=len(problems), first=exc.problems[0]), problems) from None
        old_data = current.config.model_dump(mode="json") if current else None
        # Both sides as the runner dumps them: a hand-written file's layout and comments would
        # otherwise drown the changed values.
        old_text = dump_config(current.config) if current else ""
        return ExportPlan(
            site=config.site,
            revision=revision,
            previous_revision=current.config.revision if current else None,
            previous_sha256=current.sha256 if current else None,
            text=text,
            sha256=sha256_of(text.encode("utf-8")),
            changes=field_diff(old_data, reread.model_dump(mode="json")),
            unified_diff=yaml_diff(
                old_text, text, f"r{current.config.revision}" if current else "(none)", f"r{revision}"
            ),
        )

    def export(
        self, draft: Mapping[str, Any] | SiteConfig, by: Principal, base_revision: int | None = None
    ) -> ExportResult:
        """Write the draft as the site's next revision; `by` must hold the design role.

        Args:
            draft: the site config as plain data, or a validated one.
            by: who exports; the audit row names them and their role.
            base_revision: the revision the draft was built on (0: a new site); None skips the check.

        Returns:
            What was written: revision, sha256, paths, the audit row's id, the changes.

        Raises:
            PermissionDenied: `by` may not export configs.
            ExportConflict: the site moved on since `base_revision` (nothing written).
            ExportError: an actor name over `MAX_ACTOR_CHARS`, an invalid draft, a draft identical to the
                current revision, a site folder leading outside `zones_dir`, or a revision file that already
                exists (a concurrent export).
        """
        require(by, Action.EXPORT_CONFIG)
        if len(by.user) > MAX_ACTOR_CHARS:
            raise ExportError(t("export.actor_too_long", limit=MAX_ACTOR_CHARS))
        config = validate_draft(draft)
        with _export_lock(self.zones_dir, SiteFolder(self.zones_dir, config.site)):
            # Check and write under one lock: two servers exporting one site at once cannot both pass the
            # revision check (the second then sees the first one's revision and gets the conflict).
            plan = self.plan(config, base_revision)
            if plan.previous_revision is not None and not [c for c in plan.changes if c.path != "revision"]:
                # A revision is a change someone made: an identical config would only add noise to the history.
                raise ExportError(t("export.nothing_to_export", revision=plan.previous_revision))
            # Opened before any file is written: a register that cannot be opened stops the export.
            if isinstance(self._register, Register):
                return self._write(plan, by, self._register)
            with self._register() as register:
                return self._write(plan, by, register)

    def _write(self, plan: ExportPlan, by: Principal, register: Register) -> ExportResult:
        folder = SiteFolder(self.zones_dir, plan.site)
        zones = self.zones_dir.resolve()
        if (
            not folder.dir.resolve().is_relative_to(zones) or folder.dir.resolve() == zones
        ):  # e.g. a symlinked site folder
            raise ExportError(f"site folder {folder.dir} leads outside {self.zones_dir}")
        data = plan.text.encode("utf-8")
        folder.revisions_dir.mkdir(parents=True, exist_ok=True)
        self._archive_current(folder)
        revision_path = folder.revision_path(plan.revision)
        _write_new_file(revision_path, data)
        _append_sum(folder, revision_path.name, plan.sha256)
        # Audit before site.yaml changes: whatever the runner loads from now on was logged first.
        audit_id = register.audit(
            AUDIT_EVENT,
            by.user,
            None,
            {
                **by.audit_details(),
                "site": plan.site,
                "revision": plan.revision,
                "sha256": plan.sha256,
                "path": str(folder.current_path),
                "revision_file": revision_path.name,
                "previous_revision": plan.previous_revision,
                "previous_sha256": plan.previous_sha256,
                "changes": len(plan.changes),
            },
        )
        _replace_file(folder.current_path, data)
        return ExportResult(
            plan.site, plan.revision, plan.sha256, folder.current_path, revision_path, audit_id, by.user, plan.changes
        )

    @staticmethod
    def _check_base(folder: SiteFolder, current: LoadedConfig | None, base_revision: int) -> None:
        current_revision = current.config.revision if current else (0 if not folder.current_path.exists() else -1)
        if current_revision == base_revision:
            return
        if current is None:  # an unreadable site.yaml appeared or replaced the base: nothing to merge with
            raise ExportError(t("export.revision_exists", path=folder.current_path))
        current_data = current.config.model_dump(mode="json")
        if base_revision == 0:
            raise ExportConflict(
                t("export.conflict_new_site", site=folder.site, current=current.config.revision),
                None,
                current_data,
                field_diff(None, current_data),
            )
        base = _revision_data(folder, base_revision)
        theirs = [c for c in field_diff(base, current_data) if c.path != "revision"]
        raise ExportConflict(
            t(
                "export.conflict",
                site=folder.site,
                base=base_revision,
                current=current.config.revision,
                count=len(theirs),
            ),
            base,
            current_data,
            theirs,
        )

    @staticmethod
    def _current(folder: SiteFolder) -> LoadedConfig | None:
        try:
            return folder.current()
        except ConfigError:
            return None  # an unreadable current file is replaced; its bytes are archived first

    @staticmethod
    def _archive_current(folder: SiteFolder) -> None:
        """Keep the bytes of a current site.yaml that no revision file holds yet (written by hand)."""
        if not folder.current_path.exists():
            return
        data = folder.current_path.read_bytes()
        digest = sha256_of(data)
        if digest in folder.listed_sums().values():
            return
        try:
            number = parse_config(data, CURRENT_FILE).revision
        except ConfigError:
            number = None
        path = folder.revision_path(number) if number is not None else None
        if path is None or path.exists():  # an edit by hand that kept its revision number
            path = folder.revisions_dir / f"site.unexported-{digest[:12]}.yaml"
            if path.exists():
                return
        _write_new_file(path, data)
        _append_sum(folder, path.name, digest)


@contextmanager
def _export_lock(zones_dir: Path, folder: SiteFolder) -> Iterator[None]:
    """An exclusive lock per site, across processes (`zones/.<site>.export.lock`, outside the site folder)."""
    Path(zones_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(zones_dir) / f".{folder.site}.export.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _revision_data(folder: SiteFolder, number: int) -> dict[str, Any] | None:
    """An archived revision as plain data; None when its file is gone or unreadable."""
    path = folder.revision_path(number)
    try:
        return load_config(path).config.model_dump(mode="json") if path.is_file() else None
    except ConfigError:
        return None


def _write_new_file(path: Path, data: bytes) -> None:
    """Create `path` (never overwrite: two exports racing for one revision number fail, not merge)."""
    try:
        with open(path, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except FileExistsError:
        raise ExportError(t("export.revision_exists", path=path)) from None


def _append_sum(folder: SiteFolder, name: str, digest: str) -> None:
    with open(folder.sums_path, "a", encoding="utf-8") as handle:
        handle.write(f"{digest}  {name}\n")
        handle.flush()
        os.fsync(handle.fileno())


def _replace_file(path: Path, data: bytes) -> None:
    """Atomic replace (temp file + fsync + rename): the runner never reads a half-written config."""
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
