"""Starting and stopping `studio serve`: the key and host rules, the runs loaded before
anything listens, the socket, uvicorn run in this process, the one "serving on URL" line the
window (and the tests) wait for, and a shutdown that answers every waiting request."""

from __future__ import annotations

import socket
import sys
import threading

import uvicorn

from studio.errors import StudioError
from studio.serve import ServeSettings, is_local
from studio.serve.app import Metrics, create_app
from studio.serve.workers import load_models, start_workers, stop_workers


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: a free one), not yet listening: a taken port is
    refused before the runs load, and no client connects before the server is ready."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StudioError(f"--host {host} is not an address of this machine ({exc.strerror}); "
                          f"give an IP address such as 127.0.0.1.") from None
    # A name such as localhost: its IPv4 address, where clients look first.
    family, kind, proto, _, address = next((a for a in found if a[0] == socket.AF_INET), found[0])
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise StudioError(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Pick another "
                          f"--port (--port 0 takes a free one) or --host.") from None
    return sock


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/v1"


def who_can_reach(settings: ServeSettings, port: int) -> str:
    if is_local(settings.host):
        key = ("every request but /health needs 'Authorization: Bearer KEY' with the API key"
               if settings.api_key else "no API key is needed")
        return f"only this machine can reach it ({settings.host}); {key}. Ctrl+C stops it."
    return (f"any machine that can reach {settings.host}:{port} can call it; every request but "
            f"/health needs 'Authorization: Bearer KEY' with the API key. Ctrl+C stops it.")


def serve(paths: list[str], settings: ServeSettings, checkpoint: str | None = None,
          device: str = "auto", stop_with_stdin: bool = False) -> int:
    """Load the runs, listen, and answer until Ctrl+C (or SIGTERM), or, with
    `stop_with_stdin`, until standard input closes. Refusals (a run that cannot load, a taken
    port, a non-local host without a key) are StudioErrors, said before anything listens."""
    settings.check()
    sock = bind(settings.host, settings.port)
    workers = []
    try:
        models = load_models(paths, checkpoint, device)
        metrics = Metrics()
        workers = start_workers(models, settings, metrics)
        metrics.watch(workers)
        port = sock.getsockname()[1]

        def ready() -> None:
            print(f"serving on {url_of(settings.host, port)} "
                  f"(models: {', '.join(m.name for m in models)})", flush=True)
            print(who_can_reach(settings, port), file=sys.stderr, flush=True)

        config = uvicorn.Config(create_app(models, settings, metrics), lifespan="off",
                                log_level="warning", access_log=False, timeout_graceful_shutdown=5)
        server = StudioServer(config, on_ready=ready, on_exit=lambda: stop_workers(workers, wait=0))
        if stop_with_stdin:
            stop_when_stdin_closes(server)
        server.run(sockets=[sock])
    finally:
        stop_workers(workers)
        sock.close()
    return 0


def stop_when_stdin_closes(server: "StudioServer") -> None:
    """Stop the server once standard input reaches its end. The window starts its servers with
    a pipe as their stdin, which the system closes when the window's process ends however it
    ends (a crash, a kill), so a server never outlives the window that started it."""
    def wait_for_the_end() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        server.on_exit()  # as Ctrl+C does, without a signal for uvicorn to raise again
        server.should_exit = True

    threading.Thread(target=wait_for_the_end, name="stdin-watch", daemon=True).start()


class StudioServer(uvicorn.Server):
    """uvicorn's Server, saying when it listens, and stopping the workers first on Ctrl+C (or
    SIGTERM), so that every waiting request is answered (503) and no stream keeps it up."""

    def __init__(self, config, on_ready, on_exit):
        super().__init__(config)
        self.on_ready, self.on_exit = on_ready, on_exit

    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self.on_ready()

    def handle_exit(self, sig, frame):
        self.on_exit()
        super().handle_exit(sig, frame)
