"""Free ports and waiting for a server to listen."""

import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(
    port: int, timeout_s: float, process: "subprocess.Popen[bytes] | None" = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"the process meant to listen on {port} exited ({process.returncode})"
            )
        if port_in_use(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


def wait_for_gateway(
    metrics_port: int, timeout_s: float, process: "subprocess.Popen[bytes]"
) -> None:
    """Until the gateway's metrics say it is connected and subscribed."""
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited ({process.returncode}): see gateway.log")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if b"coreline_gateway_connected 1.0" in response.read():
                    return
        except OSError:
            pass  # not serving yet
        time.sleep(0.2)
    raise RuntimeError(f"the gateway did not subscribe within {timeout_s:.0f} s: see gateway.log")
