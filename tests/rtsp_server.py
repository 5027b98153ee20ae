#!/usr/bin/python3
"""A real RTSP server for the watch tests (GStreamer's RTSP server), run by Debian's /usr/bin/python3.

    /usr/bin/python3 tests/rtsp_server.py PORT MOUNT    -> prints "READY <port>" once listening

It serves a live moving-ball test pattern (320x240, 10 frames/s, H.264 with a keyframe every
second) over RTP/UDP and RTP/TCP, shared by every client. SIGTERM ends it. Needs python3-gi,
gir1.2-gst-rtsp-server-1.0 and the base, good and ugly GStreamer plugins (``.ci/run`` installs them).
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def main() -> None:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(sys.argv[1])
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory(sys.argv[2], factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{sys.argv[1]}")
    print("READY", server.get_bound_port(), flush=True)
    GLib.MainLoop().run()  # SIGTERM's default action ends the process


if __name__ == "__main__":
    main()
