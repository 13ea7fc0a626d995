"""`vigie` command line: validate, run, replay, alerts, decide, pause/resume, purge, audit, models."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

from runner import __version__
from runner.core.alerts import FOLLOW_UPS, REJECT_REASONS
from runner.core.errors import ConfigError, SourceError, UsageError, VigieError

log = logging.getLogger("vigie")


def _db_default() -> str:
    return os.environ.get("VIGIE_DB", "var/vigie.db")


def _with_identity(p: argparse.ArgumentParser, user_required: bool = False) -> argparse.ArgumentParser:
    """--user and --role: who acts, and in which role (the register refuses a role without the right)."""
    if user_required:  # a decision names its operator explicitly, never from the environment
        p.add_argument("--user", "--operator", dest="user", required=True, help="identity of the authorised operator")
    else:
        p.add_argument(
            "--user",
            "--operator",
            dest="user",
            default=os.environ.get("VIGIE_USER") or os.environ.get("VIGIE_OPERATOR"),
            help="your identity (default $VIGIE_USER)",
        )
    p.add_argument(
        "--role",
        default=os.environ.get("VIGIE_ROLE"),
        help="role you act in: operator, analyst, design, runner or dpo (default $VIGIE_ROLE)",
    )
    return p


def _principal(args, what: str):
    from runner.core.access import Principal

    if not args.user or not args.user.strip():
        raise UsageError(f"--user is required (or set VIGIE_USER): every {what} is attributed")
    if not args.role:
        raise UsageError(f"--role is required (or set VIGIE_ROLE): every {what} records the role it was done in")
    return Principal(args.user, args.role)


def build_parser() -> argparse.ArgumentParser:
    """The `vigie` argument parser.

    Returns:
        The parser of every command and its options.
    """
    parser = argparse.ArgumentParser(prog="vigie", description="Vigie augmented video-protection runner.")
    parser.add_argument("--version", action="version", version=f"vigie {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--db",
            default=_db_default(),
            help="alert register: an SQLite file or postgresql://user@host:port/name (password from ${ENV}, "
            "PGPASSWORD or ~/.pgpass); default $VIGIE_DB or var/vigie.db",
        )
        p.add_argument(
            "--media-dir",
            default=os.environ.get("VIGIE_MEDIA_DIR") or None,
            help="snapshot folder; default $VIGIE_MEDIA_DIR, else media/ beside an SQLite register, var/media for "
            "PostgreSQL",
        )
        return p

    p = sub.add_parser("validate", help="check a site config; one line per problem")
    p.add_argument("config")

    p = with_db(sub.add_parser("run", help="run the service on every enabled camera (SIGTERM stops cleanly)"))
    p.add_argument("config")
    p.add_argument("--camera", action="append", dest="cameras", help="only this camera (repeatable)")
    p.add_argument(
        "--fast", action="store_true", help="read file sources as fast as possible instead of at their frame rate"
    )
    p.add_argument("--node", help="run as this node among several sharing the site's cameras (one register)")
    p.add_argument("--max-cameras", type=positive_int, help="with --node: most cameras this node takes (default all)")
    p.add_argument("--lease-renew-s", type=float, default=2.0, help="with --node: lease renewal period (default 2 s)")
    p.add_argument(
        "--lease-ttl-s", type=float, default=10.0, help="with --node: a lease not renewed expires after (default 10 s)"
    )

    p = with_db(
        sub.add_parser("replay", help="process a recorded clip through one camera's config, as fast as possible")
    )
    p.add_argument("config")
    p.add_argument("--camera", required=True, help="camera whose zones and rules apply")
    p.add_argument("--source", help="clip to replay (default: the camera's source)")
    p.add_argument("--json", action="store_true", help="one JSON object per alert on stdout")

    p = sub.add_parser("eval", help="replay labelled clips through evaluation sites and score each event kind")
    p.add_argument("sites", nargs="+", help="evaluation site configs (e.g. zones/eval*/site.yaml)")
    p.add_argument("--labels", default=None, help="events CSV (default: $VIGIE_SHARED_DATA/labels/events.csv)")
    p.add_argument("--extra-labels", action="append", default=[], help="more label CSVs of the same format")
    p.add_argument("--camera", action="append", dest="cameras", help="only this camera (repeatable)")
    p.add_argument("--tolerance-s", type=float, default=1.0, help="slack around labelled windows (default 1 s)")
    p.add_argument("--details", action="store_true", help="one line per clip and kind")
    p.add_argument("--split", default=None, help="clip,half CSV: totals per half too (make eval: zones/eval_split.csv)")
    p.add_argument("--json", action="store_true", help="machine-readable results")
    p.add_argument("--db", default=None, help="register for the replays (default: a temporary one)")

    p = with_db(sub.add_parser("alerts", help="list stored alerts"))
    p.add_argument("--status", choices=["pending", "confirmed", "rejected"])
    p.add_argument("--camera")
    p.add_argument("--kind")
    p.add_argument("--limit", type=positive_int, default=None)
    p.add_argument("--json", action="store_true")
    _with_identity(p)  # alerts restricted by the DPO are listed to the dpo role only

    p = with_db(sub.add_parser("decide", help="record an operator's decision on an alert"))
    p.add_argument("alert_id", type=positive_int)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--confirm", action="store_true", help="the event is real")
    group.add_argument(
        "--reject", choices=REJECT_REASONS, metavar="REASON", help=f"false alert: {', '.join(REJECT_REASONS)}"
    )
    p.add_argument("--follow-up", required=True, choices=FOLLOW_UPS, help=f"one of {', '.join(FOLLOW_UPS)}")
    _with_identity(p, user_required=True)
    p.add_argument("--note", default=None)

    for name in ("pause", "resume"):
        p = with_db(
            sub.add_parser(name, help=f"{name} analysis of one camera or of everything (honoured within a second)")
        )
        p.add_argument("--camera", help="camera id (default: every camera)")
        _with_identity(p)

    p = _with_identity(
        with_db(sub.add_parser("purge", help="apply retention now (media and records past their limits; runner role)"))
    )
    p.add_argument(
        "--config",
        help="site config: purge that site's records with its retention (default: each site its recorded retention)",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would go (per table and site); write nothing")
    p.add_argument(
        "--accept-clock", action="store_true", help="the clock is right after a long idle time: record it, then purge"
    )

    p = sub.add_parser("audit", help="audit log")
    audit_sub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    q = with_db(
        audit_sub.add_parser("verify", help="check the hash chain; exit 1 and the first broken row if tampered")
    )
    q.add_argument("--checkpoints", type=Path, help="signed checkpoint file (vigie audit checkpoint) to check too")
    q.add_argument("--public-key", type=Path, help="public key of the checkpoints (vigie audit keygen)")
    q = with_db(
        audit_sub.add_parser(
            "checkpoint", help="sign the newest audit row (DPO's key); append it to a file outside the register"
        )
    )
    q.add_argument("--key", type=Path, required=True, help="Ed25519 private key file (mode 0600)")
    q.add_argument("--out", type=Path, required=True, help="checkpoint file, or a folder (<db name>.checkpoints)")
    q = audit_sub.add_parser("keygen", help="write a new checkpoint signing key pair (private key 0600)")
    q.add_argument("folder", type=Path, help="where to write them (the DPO's, not the register's folder)")
    q = with_db(audit_sub.add_parser("show", help="print the latest audit rows"))
    q.add_argument("--limit", type=positive_int, default=50)

    p = sub.add_parser("status", help="camera health and pause state; runner nodes and their camera leases")
    with_db(p)
    p.add_argument("--json", action="store_true", help="one JSON object (nodes, cameras, health, pauses)")

    p = sub.add_parser("users", help="named logins of the workbench (passwords from a prompt or stdin, never argv)")
    users_sub = p.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    q = with_db(users_sub.add_parser("add", help="create a login with a role; asks for its password"))
    q.add_argument("login")
    q.add_argument("--role", required=True, help="operator, analyst, design (every role but the service's)")
    for name, text in (("disable", "disable a login (never deleted)"), ("passwd", "set a login's new password")):
        with_db(users_sub.add_parser(name, help=text)).add_argument("login")
    with_db(users_sub.add_parser("list", help="every login, its role and state"))
    for q in users_sub.choices.values():
        q.add_argument(
            "--user",
            default=os.environ.get("VIGIE_USER"),
            help="who makes the change, for the audit log (default $VIGIE_USER, else your shell login)",
        )

    _add_rights_parser(sub, with_db)

    p = sub.add_parser("register", help="the register itself: copy one into another backend")
    register_sub = p.add_subparsers(dest="register_command", required=True, metavar="ACTION")
    q = register_sub.add_parser(
        "copy", help="copy a register (e.g. a design-phase SQLite file) into an empty one (e.g. PostgreSQL), ids kept"
    )
    q.add_argument("source", help="register to copy: an SQLite file or a postgresql:// URL (only read)")
    q.add_argument("destination", help="empty register to fill: an SQLite file or a postgresql:// URL")
    q.add_argument("--source-media-dir", type=Path, default=None, help="the source's snapshot folder")
    q.add_argument("--media-dir", type=Path, default=None, help="the destination's snapshot folder (files copied)")

    p = sub.add_parser("models", help="configured models")
    models_sub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    models_sub.add_parser("list", help="resolve every model of a config").add_argument("config")
    models_sub.add_parser("verify", help="check sha256 and load every model of a config").add_argument("config")
    q = models_sub.add_parser("plan", help="per camera: which model serves which label for which rule, and its cost")
    q.add_argument("config")
    q.add_argument("--camera", action="append", dest="cameras", help="only this camera (repeatable)")
    q.add_argument("--no-measure", action="store_true", help="do not time the models (cost estimated from input sizes)")
    return parser


def _add_rights_parser(sub, with_db) -> None:
    """`vigie rights ACTION`: the DPO's answers to the rights requests (the work is in runner.tools.rights)."""
    p = sub.add_parser("rights", help="rights requests of the persons filmed: find, export, restrict, erase (dpo)")
    rights_sub = p.add_subparsers(dest="rights_command", required=True, metavar="ACTION")
    helps = {
        "open": "record a request received (kind, channel, date)",
        "find": "list what the register holds for a camera and a time",
        "export": "write alerts (JSON) and their snapshots, everyone but the subject blurred",
        "restrict": "hide alerts from operators and analysts (kept for the legal duration)",
        "lift": "end a restriction",
        "erase": "erase the alerts' media (their legal fields stay)",
        "close": "close a request (answered, rejected or withdrawn)",
        "list": "open requests, their age, those past the 30-day deadline",
    }
    for name, text in helps.items():
        q = _with_identity(with_db(rights_sub.add_parser(name, help=text)))
        if name != "list":
            q.add_argument("--request", required=True, help="the request's reference (e.g. DPO-2026-014)")
        if name in ("find", "export", "restrict", "lift", "erase"):
            q.add_argument("--camera", help="camera id (find: default every camera)")
            q.add_argument("--from", dest="start", help="first time, ISO 8601 (e.g. 2026-05-14T21:30+02:00)")
            q.add_argument("--to", dest="end", help="last time, ISO 8601")
        if name in ("export", "restrict", "lift", "erase"):
            q.add_argument("--alert", dest="alert_ids", type=positive_int, action="append", help="alert id (repeat)")
        if name in ("find", "export", "restrict", "lift", "erase", "open"):
            q.add_argument("--timezone", help="zone of times given without an offset (e.g. Europe/Paris)")
    rights_sub.choices["find"].add_argument("--json", action="store_true", help="one JSON object per alert")
    rights_sub.choices["export"].add_argument("--out", required=True, help="new or empty folder")
    rights_sub.choices["export"].add_argument(
        "--blur-all", action="store_true", help="blur the alert's subject too (the requester is someone else)"
    )
    opening = rights_sub.choices["open"]
    opening.add_argument("--kind", required=True, help="access, rectification, erasure, restriction, objection...")
    opening.add_argument("--channel", default="other", help="mail, email, in_person, phone, cnil or other")
    opening.add_argument("--received", help="when it was received (default now); the month to answer counts from it")
    rights_sub.choices["close"].add_argument("--status", required=True, choices=["answered", "rejected", "withdrawn"])
    rights_sub.choices["list"].add_argument("--all", action="store_true", help="closed requests too")


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1, or a one-line usage error.

    Args:
        text: the argument as typed.

    Returns:
        The number.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' must be 1 or more")
    return value


def quiet_library_warnings() -> None:
    """Ignore the libraries' warnings that tell a Vigie user nothing they can act on (Vigie's own still show).

    Ultralytics traces a `.pt` with `torch.jit.trace` when it exports it to OpenVINO (once per model, into the
    export cache); torch 2.14 deprecates that API with a FutureWarning addressed to Ultralytics, not to us.
    """
    warnings.filterwarnings(
        "ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated", category=FutureWarning, module=r"torch\.jit"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `vigie` command.

    Args:
        argv: the command line without the program name (default: sys.argv[1:]).

    Returns:
        The exit code: 0, the error's own (`VigieError.exit_code`: 2 config or usage, 4 source...), 130 on Ctrl-C.
    """
    args = build_parser().parse_args(argv)
    quiet_library_warnings()
    level = logging.DEBUG if args.verbose else (logging.INFO if args.command == "run" else logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    handler = COMMANDS[args.command]
    try:
        return handler(args) or 0
    except ConfigError as exc:
        # One line per problem, each already `FILE: field.path: message` (like a compiler's output).
        print(str(exc), file=sys.stderr)
        return exc.exit_code
    except VigieError as exc:
        print(f"vigie: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (`vigie alerts | head`): not an error. Point stdout at /dev/null so that the
        # interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


# -- commands --------------------------------------------------------------------------------------
def cmd_validate(args) -> int:
    """`vigie validate`: check a site config and print its summary line.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised, and `main` turns them into exit codes).
    """
    from runner.config.loading import expand_env, load_config

    loaded = load_config(args.config)
    cfg = loaded.config
    # ${ENV} placeholders resolved as `run` resolves them: a variable `run` would refuse is an error here too.
    for index, camera in enumerate(cfg.cameras):
        expand_env(camera.source, f"cameras[{index}].source")
    for name, spec in cfg.models.items():
        expand_env(spec.weights, f"models.{name}.weights")
    from runner.tools.models_plan import config_checks

    warnings, errors = config_checks(cfg)
    if errors:
        raise ConfigError(str(args.config), errors)
    rules = sum(len(c.rules) for c in cfg.cameras)
    print(
        f"{args.config}: valid (site {cfg.site}, revision {cfg.revision}, phase {cfg.phase}, "
        f"{len(cfg.cameras)} camera(s), {rules} rule(s), sha256 {loaded.sha256[:12]})"
    )
    for warning in warnings:
        print(f"{args.config}: warning: {warning}")
    return 0


def _register(args, create: bool = True, read_only: bool = False):
    """Commands that only read open the register read-only: they work on a read-only copy or disk."""
    from runner.register import Register

    return Register(args.db, args.media_dir, create=create, read_only=read_only)


def cmd_run(args) -> int:
    """`vigie run`: the live service on the config's cameras until SIGTERM or SIGINT.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised, and `main` turns them into exit codes).
    """
    from runner.config.loading import load_config
    from runner.service.cluster import NodeCluster
    from runner.service.config_watch import CONFIG_CHANGED, reexecute
    from runner.service.lifecycle import Runner, RunOptions

    node = _cluster_options(args)  # refused before anything is loaded
    stop_requested = threading.Event()  # a SIGTERM during a reload stops the node instead
    loaded = load_config(args.config)
    with _register(args) as register:
        runner = Runner(
            loaded,
            register,
            RunOptions(mode="live", camera_ids=args.cameras, realtime=not args.fast),
            on_alert=lambda a: log.warning("ALERT %s", _one_line(a.record, a.stored)),
        )
        if node is not None:
            cameras = [c.id for c in runner.cameras()]
            runner.cluster = NodeCluster(
                register,
                loaded.config.site,
                cameras,
                node(len(cameras)),
                config=(loaded.config.revision, loaded.sha256),
            )

        def stop(*_) -> None:
            stop_requested.set()
            runner.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        summary = runner.run()
        dropped = {c: n for c, n in summary.frames_dropped.items() if n}
        log.log(
            logging.WARNING if dropped else logging.INFO,
            "stopped (%s): %d alert(s), frames analysed %s, frames dropped %s",
            summary.stop_reason,
            summary.alerts_total,
            summary.frames,
            dropped or "none",
        )
        for camera_id, warning in summary.source_warnings.items():
            log.warning("camera %s: %s", camera_id, warning)
    if summary.stop_reason == CONFIG_CHANGED and not stop_requested.is_set():
        log.warning("node %s: re-executing on the new site file %s (same PID)", args.node, args.config)
        reexecute()  # the register is closed, the leases released: the node starts again as if just started
    return 0


def _cluster_options(args):
    """`vigie run --node`'s options, checked (a function of the camera count, the default capacity), or None."""
    from runner.service.cluster import ClusterOptions

    if args.node is None:
        if args.max_cameras is not None:
            raise UsageError("--max-cameras is an option of a node: add --node NAME")
        return None
    ClusterOptions(args.node, args.max_cameras or 1, args.lease_renew_s, args.lease_ttl_s)  # refuses bad values now
    return lambda cameras: ClusterOptions(
        args.node, args.max_cameras or max(1, cameras), args.lease_renew_s, args.lease_ttl_s
    )


def cmd_replay(args) -> int:
    """`vigie replay`: one clip through one camera's config, as fast as possible; the alerts, then a summary.

    A progress bar (frames, alerts) is drawn on stderr while it runs, only on a terminal and without --json.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised, and `main` turns them into exit codes).
    """
    from runner.config.loading import load_config
    from runner.service.lifecycle import Runner, RunOptions
    from runner.tools.progress import ReplayProgress, replay_due_frames, wants_bar

    loaded = load_config(args.config)
    printed: list = []  # the RaisedAlerts, in the order stored
    bar = wants_bar(sys.stderr, args.json)
    progress = ReplayProgress(bar, replay_due_frames(loaded, args.camera, args.source) if bar else None)

    def on_alert(raised) -> None:
        if args.json:
            print(json.dumps(_alert_json(raised.record, raised.stored, register)), flush=True)
        printed.append(raised)
        progress.alert_raised(raised)

    with _register(args) as register:
        runner = Runner(
            loaded,
            register,
            RunOptions(
                mode="replay",
                camera_ids=[args.camera],
                source_override=args.source,
                on_frame=progress.frame_analysed if progress.enabled else None,
            ),
            on_alert=on_alert,
        )
        signal.signal(signal.SIGTERM, lambda *_: runner.stop())
        with progress:
            summary = runner.run()
        if summary.camera_errors:
            raise SourceError(next(iter(summary.camera_errors.values())))
        frames = sum(summary.frames.values())
        out = sys.stderr if args.json else sys.stdout
        if not args.json:
            rows = [register.alert(r.stored.id) for r in printed if r.stored]
            print(_alerts_table(rows), file=out)
        fps = frames / summary.wall_s if summary.wall_s else 0.0
        print(
            f"{len(printed)} alert(s) on {frames} processed frame(s) in {summary.wall_s:.1f} s ({fps:.1f} fps); "
            f"all marked as tests",
            file=out,
        )
        where = register.target.display if register.target.is_postgres else register.db_path.resolve()
        print(f"register: {where}   snapshots: {register.media_dir.resolve()}", file=out)
        for camera_id, warning in summary.source_warnings.items():  # a damaged file: the run is partial
            print(f"warning: camera {camera_id}: {warning}", file=sys.stderr)
        if summary.rule_errors:  # the rule skipped those frames: its alerts may be missing (traceback in the log)
            print(
                "rule errors (frames skipped): " + ", ".join(f"{k} {n}" for k, n in summary.rule_errors.items()),
                file=sys.stderr,
            )
    return 0


def cmd_eval(args) -> int:
    """`vigie eval`: replay the labelled clips of evaluation sites and print the quality table per event kind.

    A progress bar (frames of all the clips, alerts) is drawn on stderr, only on a terminal and without --json.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised, and `main` turns them into exit codes).
    """
    import tempfile

    from runner.config.loading import load_config
    from runner.register import Register
    from runner.tools.evaluation import (
        UNSPLIT,
        evaluate_site,
        format_details,
        format_summary,
        load_labels,
        load_split,
        summarise,
        unsplit_clips,
    )
    from runner.tools.progress import ReplayProgress, eval_due_frames, wants_bar

    labels_path = args.labels or os.path.join(
        os.environ.get("VIGIE_SHARED_DATA", "../shared/data"), "labels", "events.csv"
    )
    if not Path(labels_path).is_file():
        raise UsageError(f"labels file not found: {labels_path} (set VIGIE_SHARED_DATA or pass --labels)")
    labels = load_labels(labels_path) + [e for extra in args.extra_labels for e in load_labels(extra)]
    split = load_split(args.split) if args.split else None  # checked before the long replays
    sites = [load_config(path) for path in args.sites]
    bar = wants_bar(sys.stderr, args.json)
    progress = ReplayProgress(bar, eval_due_frames(sites, args.cameras) if bar else None)
    with tempfile.TemporaryDirectory(prefix="vigie-eval-") as scratch:
        with Register(args.db or Path(scratch) / "eval.db") as register, progress:
            results = []
            for loaded in sites:
                results += evaluate_site(
                    loaded,
                    labels,
                    register,
                    args.cameras,
                    args.tolerance_s,
                    progress=lambda text: progress.note(f"replaying {text}"),
                    on_frame=progress.frame_analysed if progress.enabled else None,
                    on_alert=progress.alert_raised if progress.enabled else None,
                )
    summaries = summarise(results, split)
    unsplit = unsplit_clips(results, split) if split is not None else []
    if args.json:
        print(
            json.dumps(
                {
                    "kinds": [s.as_dict() for s in summaries],
                    "unsplit_clips": unsplit,
                    "clips": [
                        {
                            "site": r.site,
                            "camera": r.camera_id,
                            "clip": r.clip,
                            "half": split.get(r.clip, UNSPLIT) if split is not None else None,
                            "kind": r.kind,
                            "alerts_t_s": r.alert_times_s,
                            "found": len(r.score.found),
                            "missed": len(r.score.missed),
                            "alert_delays_s": r.score.alert_delays_s,
                            "false_t_s": r.score.false_alert_times_s,
                            "duration_s": r.duration_s,
                        }
                        for r in results
                    ],
                },
                indent=1,
            )
        )
        return 0
    if args.details:
        print(format_details(results, split))
        print()
    print(format_summary(summaries, unsplit))
    return 0


def cmd_alerts(args) -> int:
    """`vigie alerts`: the stored alerts, as a table or one JSON object per line.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised, and `main` turns them into exit codes).
    """
    with _register(args, create=False, read_only=True) as register:
        dpo = (args.role or "").strip().lower() == "dpo"
        rows = register.alerts(status=args.status, camera_id=args.camera, kind=args.kind, include_restricted=dpo)
        if args.limit:
            rows = rows[-args.limit :]
        if args.json:
            for row in rows:
                print(json.dumps(row, default=str))
        else:
            print(_alerts_table(rows))
    return 0


def cmd_decide(args) -> int:
    """`vigie decide`: record an operator's decision on an alert.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised, and `main` turns them into exit codes).
    """
    with _register(args, create=False) as register:
        decision = "confirmed" if args.confirm else "rejected"
        row = register.decide(
            args.alert_id,
            decision,
            by=_principal(args, "decision"),
            follow_up=args.follow_up,
            reason=args.reject,
            note=args.note,
        )
        print(
            f"alert {args.alert_id}: {decision}"
            + (f" ({row['reason']})" if row["reason"] else "")
            + f", follow-up {row['follow_up']}, by {row['operator']} at {row['decided_utc']}"
        )
    return 0


def _pause(args, paused: bool) -> int:
    principal = _principal(args, "pause and resume")
    scope = args.camera or "*"
    with _register(args, create=False) as register:
        audit_id = register.set_paused(scope, paused, principal)
        what = f"camera {args.camera}" if args.camera else "all cameras"
        print(
            f"{what}: {'paused' if paused else 'resumed'} by {principal.user} (audit row {audit_id}); "
            "a running service applies it within a second"
        )
    return 0


def cmd_pause(args) -> int:
    """`vigie pause`: pause the analysis of one camera or of all.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised, and `main` turns them into exit codes).
    """
    return _pause(args, True)


def cmd_resume(args) -> int:
    """`vigie resume`: resume the analysis of one camera or of all.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised, and `main` turns them into exit codes).
    """
    return _pause(args, False)


def cmd_purge(args) -> int:
    """`vigie purge`: apply the retention limits now, site by site (or show what would go, with --dry-run).

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised, and `main` turns them into exit codes).
    """
    from runner.config.loading import load_config
    from runner.config.site import Retention
    from runner.register.retention import (
        SitePolicy,
        effective_retention,
        purge_summary,
        record_site_retention,
        run_purge,
        site_retentions,
    )

    policy = SitePolicy.of(load_config(args.config).config) if args.config else None
    if args.dry_run:
        return _purge_dry_run(args, policy)
    principal = _principal(args, "purge")
    with _register(args, create=False) as register:
        plan: dict[str | None, Retention]
        if policy is not None:
            retention, refusal = record_site_retention(register, policy, principal)
            if refusal:
                raise UsageError(f"{refusal}; nothing purged")
            plan = {policy.site: retention}
        else:
            # each site its own retention; an empty register: the audit rows past the legacy or legal retention
            plan = {site: r for site, r in site_retentions(register).items()}
            plan = plan or {None: effective_retention(register, None)}
        accept_clock = args.accept_clock
        for site, retention in plan.items():
            counts = run_purge(register, retention, principal, site=site, accept_clock=accept_clock)
            accept_clock = False  # recorded once
            what = "purged" if len(plan) == 1 else f"purged site {site}"
            print(
                f"{what} (media > {retention.media_days} d, records > {retention.alert_days} d): "
                + purge_summary(counts)
            )
    return 0


def _purge_dry_run(args, policy) -> int:
    """`vigie purge --dry-run`: what a purge would delete now, per site and table; the register is opened read-only."""
    from runner.register.retention import purge_preview, site_retentions

    with _register(args, create=False, read_only=True) as register:
        retentions = {policy.site: policy.retention} if policy is not None else site_retentions(register)
        preview = purge_preview(register, retentions)
    print("dry run: nothing is deleted")
    if preview["clock"]:
        print(f"a purge now would be REFUSED: {preview['clock']}")
    for row in preview["sites"]:
        span = f" (oldest {row['oldest']}, newest {row['newest']})" if row["alerts"] else ""
        print(
            f"site {row['site']} (media > {row['media_days']} d, records > {row['alert_days']} d): would delete "
            f"media_files {row['media_files']}, alerts {row['alerts']}{span}, decisions {row['decisions']}"
        )
    audit = preview["audit"]
    span = f" (oldest {audit['oldest']}, newest {audit['newest']})" if audit["audit_rows"] else ""
    print(
        f"audit log (rows > {audit['alert_days']} d, the longest retention): would delete {audit['audit_rows']}{span}"
    )
    return 0


def cmd_audit(args) -> int:
    """`vigie audit verify|show|checkpoint|keygen`: check the hash chain (and signed checkpoints), print the
    latest audit rows, sign a checkpoint, or make the key pair that signs them.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0, or 1 when the chain is broken.
    """
    if args.audit_command == "keygen":
        return _audit_keygen(args)
    if args.audit_command == "checkpoint":
        return _audit_checkpoint(args)
    with _register(args, create=False, read_only=True) as register:
        if args.audit_command == "show":
            for row in register.audit_rows(limit=args.limit):
                print(
                    f"{row['id']:>6} {row['ts_utc']} {row['event']:<18} {row['actor']:<12} "
                    f"{row['camera_id'] or '-':<10} {row['details']}"
                )
            return 0
        if args.checkpoints is not None and args.public_key is None:
            raise UsageError("--checkpoints needs --public-key (the public key of the signing key pair)")
        report = register.verify(args.checkpoints, args.public_key)
        if report.ok:
            signed = f"; {report.checkpoints_checked} signed checkpoint(s) hold" if args.checkpoints else ""
            print(f"audit chain intact: {report.rows_checked} row(s), {report.alerts_checked} alert(s) checked{signed}")
            return 0
        print(
            f"audit chain BROKEN at row {report.first_bad_row}: {report.problem}"
            if report.first_bad_row
            else f"audit chain BROKEN: {report.problem}"
        )
        return 1


def _audit_keygen(args) -> int:
    from runner.register.checkpoints import generate_keys

    private_path, public_path = generate_keys(args.folder)
    print(f"signing key {private_path} (mode 600: keep it off the runner), public key {public_path} (site folder)")
    return 0


def _audit_checkpoint(args) -> int:
    """Sign the newest audit row, append it outside the register, and log it as one line on stderr."""
    from runner.register.checkpoints import append_checkpoint, checkpoint_file, same_file_system

    with _register(args, create=False, read_only=True) as register:
        target = checkpoint_file(args.out, register.db_path)
        checkpoint = register.checkpoint(args.key)
        append_checkpoint(target, checkpoint)
        shared_disk = same_file_system(target, register.db_path)
    print(checkpoint.log_line(), file=sys.stderr)  # for syslog / journald: a copy the runner cannot rewrite
    note = " (same file system as the register: keep a copy on another)" if shared_disk else ""
    print(f"checkpoint: audit row {checkpoint.row_id} ({checkpoint.rows} row(s)) signed, appended to {target}{note}")
    return 0


def cmd_rights(args) -> int:
    """`vigie rights ACTION`: the DPO answers a rights request (see runner.tools.rights).

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised; another role than dpo gets exit code 3 and nothing is written).
    """
    from runner.tools.rights import run_command

    return run_command(args, _principal(args, "rights action"))


def cmd_register(args) -> int:
    """`vigie register copy SRC DST`: copy a register into an empty one, audit chain intact (see runner.register.copy).

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised: a non-empty destination is refused in one line).
    """
    from runner.register.backend import parse_target
    from runner.register.copy import copy_register

    counts = copy_register(args.source, args.destination, source_media=args.source_media_dir, media=args.media_dir)
    rows = sum(count for table, count in counts.items() if table != "media_files")
    print(
        f"copied {rows} row(s) ({counts.get('alerts', 0)} alert(s), {counts.get('audit', 0)} audit row(s)) and "
        f"{counts['media_files']} media file(s) from {parse_target(args.source).display} to "
        f"{parse_target(args.destination).display}; check it: vigie audit verify --db DESTINATION"
    )
    return 0


def cmd_users(args) -> int:
    """`vigie users add|disable|passwd|list`: manage the workbench's named logins (each change audited).

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised, and `main` turns them into exit codes).
    """
    import getpass

    from runner.core.access import clean_user

    if args.users_command == "list":
        with _register(args, create=False, read_only=True) as register:
            for user in register.users.list():
                state = "disabled" if user["disabled"] else "enabled"
                print(f"{user['login']:<24} {user['role']:<10} {state:<9} changed {user['changed_utc']}")
        return 0
    actor = clean_user(args.user or getpass.getuser())
    with _register(args) as register:
        if args.users_command == "disable":
            register.users.disable(args.login, by=actor)
            print(f"{args.login}: disabled (its open sessions end at their next request)")
            return 0
        if args.users_command == "passwd" and register.users.get(args.login) is None:  # before asking
            raise UsageError(f"login {args.login[:40]!r}: no such user (vigie users list shows them)")
        password = _read_password(f"password for {args.login}")
        if args.users_command == "add":
            user = register.users.add(args.login, args.role, password, by=actor)
            print(f"{user['login']}: added, role {user['role']}")
        else:
            register.users.set_password(args.login, password, by=actor)
            print(f"{args.login}: password changed (its open sessions end at their next request)")
    return 0


def _read_password(prompt: str) -> str:
    """A password typed twice at a terminal, else the first line of stdin (never the command line)."""
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"{prompt}: ")
    if getpass.getpass(f"{prompt} (again): ") != first:
        raise UsageError("the two passwords differ: nothing changed")
    return first


def cmd_status(args) -> int:
    """`vigie status`: the runner's heartbeat, the pauses and each camera's health.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0 (errors are raised, and `main` turns them into exit codes).
    """
    from runner.register.outbox import Outbox, backlog_lines
    from runner.service.lifecycle import crashed_runs

    with _register(args, create=False, read_only=True) as register:
        if args.json:
            print(json.dumps(_status_document(register), indent=2, ensure_ascii=False, default=str))
            return 0
        control = register.control_state()
        print(f"runner heartbeat: {register.get_meta('runner_heartbeat_utc') or 'never'}")
        crashed_cameras: set[str] = set()
        for _, run in crashed_runs(register):  # died without stopping (kill -9, power cut): health rows are stale
            crashed_cameras.update(run.get("cameras", []))
            print(f"runner CRASHED: pid {run.get('pid')} started {run.get('started_utc')} died without stopping")
        if last_crash := register.get_meta("runner_last_crash"):
            run = json.loads(last_crash)
            print(f"last crash: pid {run.get('pid')} started {run.get('started_utc')}, found {run.get('detected_utc')}")
        print(
            "paused: " + (", ".join(s if s != "*" else "ALL" for s, r in control.items() if r["paused"]) or "nothing")
        )
        for row in register.health():
            status, detail = row["status"], row["detail"]
            if row["camera_id"] in crashed_cameras and status not in ("error", "ended"):
                status, detail = "crashed", f"runner died without stopping (last said: {status} {detail})"
            print(f"  {row['camera_id']:<16} {status:<9} {row['updated_utc']}  {detail}")
        print("\n".join(backlog_lines(Outbox(register.database).backlog())) or "outbox: no output configured yet")
        print("\n".join(_nodes_lines(register)))
    return 0


def _status_document(register) -> dict:
    """`vigie status --json`: pauses, health rows, runner nodes, camera leases (ages by the database's clock) and
    the outbox's backlog per destination."""
    from runner.register.leases import is_duty
    from runner.register.outbox import Outbox
    from runner.service.config_watch import rejected_meta_key

    leases = register.leases.leases()
    health = {row["camera_id"]: row for row in register.health()}
    nodes = register.leases.nodes()
    for node in nodes:  # the last new site file each node refused, until it starts on a valid one
        node["config_rejected"] = json.loads(register.get_meta(rejected_meta_key(node["name"])) or "null")
    return {
        "runner_heartbeat_utc": register.get_meta("runner_heartbeat_utc"),
        "paused": sorted(scope for scope, row in register.control_state().items() if row["paused"]),
        "health": list(health.values()),
        "nodes": nodes,
        "cameras": [_lease_view(row, health.get(row["camera_id"])) for row in leases if not is_duty(row["camera_id"])],
        "duties": [_lease_view(row) for row in leases if is_duty(row["camera_id"])],
        "outbox": Outbox(register.database).backlog(),  # per destination: rows owed, oldest, last error
    }


def _lease_view(row: dict, health: dict | None = None) -> dict:
    """A lease row as `vigie status` shows it: owner, token, age of the lease and of its last renewal."""
    from datetime import datetime

    now = datetime.fromisoformat(row["now_utc"])
    held = row["node"] is not None and row["expires_utc"] > row["now_utc"]
    return {
        "site": row["site"],
        "camera": row["camera_id"],
        "owner": row["node"] if held else None,
        "token": row["token"],
        "lease_age_s": round((now - datetime.fromisoformat(row["acquired_utc"])).total_seconds(), 1) if held else None,
        "renewed_age_s": round((now - datetime.fromisoformat(row["renewed_utc"])).total_seconds(), 1) if held else None,
        "health": health["status"] if health else None,
    }


def _nodes_lines(register) -> list[str]:
    """The nodes and the camera leases, as `vigie status` prints them (nothing when no node ever ran)."""
    document = _status_document(register)
    if not document["nodes"]:
        return []
    lines = ["nodes:"]
    for node in document["nodes"]:
        state = "alive" if node["alive"] else ("stopped" if node["state"] == "stopped" else "DEAD")
        lines.append(
            f"  {node['name']:<12} {state:<7} heartbeat {node['heartbeat_age_s']:.1f} s ago  "
            f"cameras {len(node['cameras'])}/{node['capacity']}  {', '.join(node['cameras'])}  "
            f"(config revision {node['config_revision']}, {node['host']})"
        )
        if refused := node["config_rejected"]:
            lines.append(
                f"    site file REFUSED at {refused['refused_utc']} (sha256 {refused['sha256'][:12]}, still on "
                f"revision {refused['running_revision']}): {refused['problems'][0]}"
            )
    lines.append("camera leases:")
    for view in document["cameras"] + document["duties"]:
        owner = view["owner"] or "(free)"
        age = f"held {view['lease_age_s']} s, renewed {view['renewed_age_s']} s ago" if view["owner"] else ""
        lines.append(f"  {view['camera']:<16} {owner:<12} token {view['token']:<4} {age}  {view['health'] or ''}")
    return lines


def cmd_models(args) -> int:
    """`vigie models list|verify|plan`: resolve (and with verify, check and load) every model of a config;
    plan: which model serves which label for which rule on each camera, at what cost.

    Args:
        args: the parsed command line.

    Returns:
        The exit code: 0, or 1 when a model failed.
    """
    from runner.config.loading import load_config
    from runner.inference.detector import load_detector
    from runner.inference.modelref import resolve_weights

    loaded = load_config(args.config)
    if args.models_command == "plan":
        return _models_plan(args, loaded)
    failures = 0
    for name, spec in loaded.config.models.items():
        try:
            resolved = resolve_weights(name, spec, loaded.base_dir, verify=args.models_command == "verify")
        except VigieError as exc:
            failures += 1
            print(f"{name:<12} ERROR {exc}")
            continue
        pinned = "pinned" if spec.sha256 else "not pinned"
        line = (
            f"{name:<12} {resolved.backend:<9} {resolved.found_by:<10} sha256 {resolved.sha256[:16]}... "
            f"({pinned})  {resolved.path}"
        )
        if args.models_command == "verify":
            try:
                detector = load_detector(name, spec, resolved)
                line += f"  OK, {len(detector.names)} classes"
            except VigieError as exc:
                failures += 1
                line += f"  ERROR {exc}"
        print(line)
    return 1 if failures else 0


def _models_plan(args, loaded) -> int:
    """`vigie models plan`: the routing, input sizes and cost of each camera's models (runner.tools.models_plan)."""
    from runner.inference.detector import ModelPool
    from runner.tools.models_plan import plan_lines

    cameras = loaded.config.cameras
    if args.cameras:
        unknown = sorted(set(args.cameras) - {c.id for c in cameras})
        if unknown:
            raise UsageError(f"unknown camera(s) {', '.join(unknown)} (cameras: {', '.join(c.id for c in cameras)})")
        cameras = [c for c in cameras if c.id in args.cameras]
    lines = plan_lines(ModelPool(loaded.config, loaded.base_dir), cameras, measure=not args.no_measure)
    print("\n".join(lines))
    return 1 if any(": ERROR " in line or line.lstrip().startswith("error:") for line in lines) else 0


COMMANDS = {
    "validate": cmd_validate,
    "run": cmd_run,
    "replay": cmd_replay,
    "eval": cmd_eval,
    "alerts": cmd_alerts,
    "decide": cmd_decide,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "purge": cmd_purge,
    "audit": cmd_audit,
    "status": cmd_status,
    "models": cmd_models,
    "users": cmd_users,
    "rights": cmd_rights,
    "register": cmd_register,
}


# -- formatting ------------------------------------------------------------------------------------
def _alert_json(record, stored, register) -> dict:
    from runner.register.outbox import alert_fields  # the one home of this shape (the outbox pushes it too)

    snapshot = None
    if stored is not None and stored.snapshot:
        snapshot = str((register.media_dir / stored.snapshot).resolve())
    return alert_fields(record, stored.id if stored else None, snapshot)


def _one_line(record, stored) -> str:
    return (
        f"#{stored.id if stored else '-'} {record.kind} rule={record.rule_id} camera={record.camera_id} "
        f"t={record.t_s:.1f}s subject={record.subject} score={record.score:.2f}"
    )


def _alerts_table(rows: list[dict]) -> str:
    if not rows:
        return "(no alerts)"
    header = ["id", "time (UTC)", "t_s", "camera", "kind", "rule", "subject", "score", "status", "test", "details"]
    body = []
    for r in rows:
        details = ", ".join(f"{k}={v}" for k, v in r["details"].items() if k not in ("zone", "line"))
        body.append(
            [
                str(r["id"]),
                r["ts_utc"][:19].replace("T", " "),
                f"{r['t_s']:.1f}",
                r["camera_id"],
                r["kind"],
                r["rule_id"],
                r["subject"],
                f"{r['score']:.2f}",
                r["status"],
                "yes" if r["is_test"] else "no",
                details[:60],
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
