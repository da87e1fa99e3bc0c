"""Frames into the attached program: one dispatch for the agent's `inject` and the command line's."""
from __future__ import annotations

import threading

from backend.kernel import injector


def run(args: dict, cancel: threading.Event | None = None):
    """Run a checked inject request (catalog.inject_args). wire: from the ingress's veth peer,
    through its driver's NAPI poll (backend/kernel/wire.py); else BPF_PROG_TEST_RUN with live
    frames (backend/kernel/injector.py). Returns the result (its to_dict() is the answer)."""
    if args["wire"]:
        from backend.kernel import wire
        return wire.send(args["iface"], args["count"], args["rate"] or 0.0, args["size"], args["flows"], args["cpu"],
                         args["batch"], args["first_flow"], cancel=cancel, burst=args["burst"] or 0)
    return injector.inject(args["iface"], args["count"], args["batch"], args["size"], args["flows"], args["cpu"],
                           args["first_flow"], cancel=cancel)
