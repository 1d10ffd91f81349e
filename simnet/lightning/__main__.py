"""`python -m simnet.lightning [lightningd options]`: the lightningd SIMULATION."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from simnet.lightning import control
from simnet.lightning.clzmq import check_options
from simnet.lightning.hub import OutsideWorld
from simnet.lightning.node import VERSION, Node
from simnet.lightning.options import Options, parse
from simnet.lightning.rpc import RpcServer

BANNER = (
    "*** SIMULATION *** simnet lightningd stand-in (Core Lightning {version} JSON-RPC and cl-zmq "
    "shapes). This is test equipment, not Core Lightning; it moves no real money."
)


async def run(opts: Options) -> int:
    """Start the node, serve until `stop` or SIGTERM/SIGINT."""
    node = Node(opts)
    if node.role == "hub":
        node.outside = OutsideWorld(node)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await node.start()
    rpc = RpcServer(node, done.set)
    await rpc.start()
    runner = None
    if opts.get("simnet-control"):
        runner = await control.start(node, str(opts.get("simnet-control")))
    node.log("INFO", "lightningd", f"JSON-RPC listening on {rpc.path} (SIMULATION)")
    await done.wait()
    await rpc.close()
    if runner is not None:
        await runner.cleanup()
    await node.stop()
    return 0


def _daemonize(opts: Options) -> None:
    """--daemon: fork; the parent exits once the child's RPC socket is up (systemd Type=forking)."""
    rpc = opts.network_dir / (opts.get("rpc-file") or "lightning-rpc")
    rpc.unlink(missing_ok=True)
    child = os.fork()
    if child:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if rpc.exists():
                os._exit(0)
            done, status = os.waitpid(child, os.WNOHANG)
            if done:
                os._exit(os.waitstatus_to_exitcode(status) or 1)
            time.sleep(0.05)
        os._exit(1)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def main() -> None:
    """Entry point."""
    if "--version" in sys.argv[1:]:
        print(f"{VERSION} (simnet lightningd SIMULATION)")
        sys.exit(0)
    opts = parse(sys.argv[1:])
    print(BANNER.format(version=VERSION), flush=True)
    check_options(opts)
    if opts.flag("daemon", False):
        _daemonize(opts)
    pid_file = Path(opts.get("pid-file") or opts.lightning_dir / f"lightningd-{opts.network}.pid")
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        code = asyncio.run(run(opts))
    finally:
        pid_file.unlink(missing_ok=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
