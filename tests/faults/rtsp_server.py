"""A loopback RTSP server that serves a real clip forever, for the fault tests.

Run with the *system* Python (Debian's `python3-gi` and `gir1.2-gst-rtsp-server-1.0`; the venv has no
`gi`): `/usr/bin/python3 tests/faults/rtsp_server.py CLIP PORT [--user U --password P]`.

No re-encoding: the clip's compressed frames (MPEG-4 part 2 in AVI, or H.264 in MP4; Debian's vtest.avi
is DivX 3, which has no RTP payloader, so the tests hand it over once re-written as MPEG-4) are read once
with a demuxer and a parser, then pushed in a loop through an `appsrc` to the RTP payloader with
ever-increasing time stamps, so the stream never ends. Each client gets its own pass from frame 0
(a key frame). The script prints `READY rtsp://127.0.0.1:PORT/clip` once it listens.
"""

from __future__ import annotations

import argparse
import sys
from typing import NamedTuple

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


class Packet(NamedTuple):
    data: bytes
    key: bool
    pts: int  # ns
    dts: int  # ns
    duration: int  # ns


# Container/codec -> (demuxer, parser, RTP payloader).
CHAINS = {
    ".avi": ("avidemux", "mpeg4videoparse", "rtpmp4vpay"),
    ".mp4": ("qtdemux", "h264parse config-interval=-1", "rtph264pay config-interval=-1"),
}


def read_frames(clip: str, demuxer: str, parser: str) -> tuple[Gst.Caps, list[Packet], int]:
    """The clip's compressed frames from its first key frame, their caps and the clip's duration (ns)."""
    pipeline = Gst.parse_launch(
        f"filesrc location={clip!s} ! {demuxer} ! {parser} ! appsink name=sink sync=false emit-signals=false"
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    frames, caps, bus = [], None, pipeline.get_bus()
    while not sink.get_property("eos"):
        error = bus.pop_filtered(Gst.MessageType.ERROR)
        if error is not None:
            pipeline.set_state(Gst.State.NULL)
            sys.exit(f"cannot read {clip}: {error.parse_error()[0].message}")
        sample = sink.emit("try-pull-sample", Gst.SECOND // 10)
        if sample is None:
            continue
        caps = caps or sample.get_caps()
        buffer = sample.get_buffer()
        ok, info = buffer.map(Gst.MapFlags.READ)
        if ok:
            pts = buffer.pts if buffer.pts != Gst.CLOCK_TIME_NONE else buffer.dts
            dts = buffer.dts if buffer.dts != Gst.CLOCK_TIME_NONE else pts
            frames.append(
                Packet(bytes(info.data), not buffer.has_flags(Gst.BufferFlags.DELTA_UNIT), pts, dts, buffer.duration)
            )
            buffer.unmap(info)
    pipeline.set_state(Gst.State.NULL)
    first_key = next((i for i, packet in enumerate(frames) if packet.key), None)
    if first_key is None or caps is None:
        sys.exit(f"no key frame read from {clip}")
    frames = frames[first_key:]
    origin = frames[0].dts  # time stamps relative to the first key frame, B-frame reordering kept
    structure = caps.get_structure(0)
    ok, num, den = structure.get_fraction("framerate")
    frame_ns = int(Gst.SECOND * den / num) if ok and num > 0 and den > 0 else Gst.SECOND // 25
    if any(p.dts == Gst.CLOCK_TIME_NONE for p in frames):  # no time stamps at all: one frame per period
        frames = [p._replace(pts=i * frame_ns, dts=i * frame_ns) for i, p in enumerate(frames)]
        origin = 0
    packets = [p._replace(pts=p.pts - origin, dts=p.dts - origin, duration=frame_ns) for p in frames]
    duration_ns = max(p.pts for p in packets) + frame_ns
    return caps, packets, duration_ns


class LoopingFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, caps: Gst.Caps, packets: list[Packet], duration_ns: int, parser: str, payloader: str):
        super().__init__()
        self.caps, self.packets, self.duration_ns = caps, packets, duration_ns
        self.set_launch(f"( appsrc name=src format=time ! {parser} ! {payloader} name=pay0 pt=96 )")
        self.connect("media-configure", self._configure)

    def _configure(self, _factory, media) -> None:
        src = media.get_element().get_by_name_recurse_up("src")
        src.set_property("caps", self.caps)
        state = {"n": 0}

        def need_data(appsrc, _length):
            n = state["n"]
            packet = self.packets[n % len(self.packets)]
            offset_ns = (n // len(self.packets)) * self.duration_ns  # each pass goes on where the last ended
            buffer = Gst.Buffer.new_wrapped(packet.data)
            buffer.pts, buffer.dts, buffer.duration = packet.pts + offset_ns, packet.dts + offset_ns, packet.duration
            if not packet.key:
                buffer.set_flags(Gst.BufferFlags.DELTA_UNIT)
            state["n"] = n + 1
            appsrc.emit("push-buffer", buffer)

        src.connect("need-data", need_data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip")
    parser.add_argument("port", type=int)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    Gst.init(None)
    suffix = args.clip[args.clip.rfind(".") :].lower()
    if suffix not in CHAINS:
        sys.exit(f"unsupported clip type {suffix} (supported: {', '.join(CHAINS)})")
    demuxer, clip_parser, payloader = CHAINS[suffix]
    caps, packets, duration_ns = read_frames(args.clip, demuxer, clip_parser.split()[0])

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = LoopingFactory(caps, packets, duration_ns, clip_parser, payloader)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/clip", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    print(
        f"READY rtsp://127.0.0.1:{args.port}/clip frames={len(packets)} loop_s={duration_ns / Gst.SECOND:g}", flush=True
    )
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
