"""Configure and start a rootful Podman API service for tests and ``make demo``.

Rules and invariants (see shared/reference/podman.md for why each one is needed):
* The containers.conf written here sets runc (crun refuses cgroups v1 hybrid hosts),
  cgroupfs, file events, and ``default_ulimits`` for nofile/nproc no higher than the host's
  hard ``nofile`` limit and ``kernel.pid_max`` (podman's 1048576 default is refused).
* ``CONTAINERS_CONF`` is in the environment of every podman command run here, including
  ``podman system service`` itself (without it every API start fails with HTTP 500).
* The image ``localhost/busybox:latest`` is built from busybox-static with ``podman import``
  when absent: no registry is needed.
* ``start_service`` returns only once ``GET /_ping`` answers on the unix socket, or raises
  ExecutorError naming what failed; ``PodmanService.stop`` is idempotent.
* ``podman_unusable_reason`` returns a one-line reason when podman cannot be used here, or
  None; it never raises.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import resource
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

from p2pakash.errors import ExecutorError

BUSYBOX_IMAGE = "localhost/busybox:latest"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
_DEFAULT_NOFILE = 20000
_DEFAULT_NPROC = 32768


def host_ulimits() -> tuple[int, int]:
    """(nofile, nproc) limits a container may get on this host."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = _DEFAULT_NOFILE if hard == resource.RLIM_INFINITY else hard
    try:
        nproc = int(Path("/proc/sys/kernel/pid_max").read_text().strip())
    except (OSError, ValueError):
        nproc = _DEFAULT_NPROC
    return min(nofile, 1048576), min(nproc, 1048576)


def containers_conf_text() -> str:
    nofile, nproc = host_ulimits()
    return (
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "\n[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )


def write_containers_conf(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "containers.conf"
    path.write_text(containers_conf_text())
    return path


def podman_env(conf: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(conf)
    return env


def _run(argv: list[str], env: dict[str, str], *, stdin: bytes | None = None,
         timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(argv, input=stdin, env=env, capture_output=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExecutorError(f"podman setup: {' '.join(argv[:3])}: {exc}") from None


def find_busybox() -> Path | None:
    for candidate in BUSYBOX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    found = shutil.which("busybox")
    return Path(found) if found else None


def busybox_rootfs_tar(busybox: Path) -> bytes:
    """A tar of a minimal root: /bin/busybox, one symlink per applet, passwd and group."""
    listing = subprocess.run([str(busybox), "--list"], capture_output=True, check=False,
                             timeout=10)
    applets = sorted({a for a in listing.stdout.decode().split() if a and a != "busybox"})
    if not applets:
        raise ExecutorError(f"podman setup: {busybox} --list gave no applets")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "etc", "tmp", "www"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in applets:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                                          "nobody:x:65534:65534:nobody:/:/bin/false\n"),
                           ("etc/group", "root:x:0:\nnogroup:x:65534:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ensure_busybox_image(env: dict[str, str], image: str = BUSYBOX_IMAGE) -> None:
    """Build ``image`` from busybox-static with ``podman import`` unless it exists."""
    if _run(["podman", "image", "exists", image], env).returncode == 0:
        return
    busybox = find_busybox()
    if busybox is None:
        raise ExecutorError("podman setup: no busybox binary (install busybox-static)")
    result = _run(["podman", "import", "--change", 'CMD ["/bin/sh"]', "-", image], env,
                  stdin=busybox_rootfs_tar(busybox))
    if result.returncode != 0:
        raise ExecutorError(f"podman setup: podman import {image} failed: "
                            f"{result.stderr.decode(errors='replace').strip()}")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


def ping(socket_path: Path, timeout: float = 1.0) -> bool:
    """True when the API service on ``socket_path`` answers ``GET /_ping`` with 200."""
    connection = _UnixHTTPConnection(socket_path, timeout)
    try:
        connection.request("GET", "/_ping")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@attrs.define(kw_only=True)
class PodmanService:
    """A running ``podman system service`` on a unix socket."""

    socket_path: Path
    conf_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket_path}"

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()


def start_service(workdir: Path, *, timeout: float = 15.0,
                  image: str | None = BUSYBOX_IMAGE) -> PodmanService:
    """Write containers.conf in ``workdir``, build ``image`` if needed, start the service."""
    if shutil.which("podman") is None:
        raise ExecutorError("podman setup: podman is not installed (run scripts/setup-podman.sh)")
    conf = write_containers_conf(workdir)
    env = podman_env(conf)
    if image is not None:
        ensure_busybox_image(env, image)
    socket_path = workdir / "podman.sock"
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    log_path = workdir / "podman-service.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    service = PodmanService(socket_path=socket_path, conf_path=conf, process=process,
                            log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip()[-500:]
            raise ExecutorError(f"podman setup: service exited with {process.returncode}: {tail}")
        if socket_path.exists() and ping(socket_path):
            return service
        time.sleep(0.05)
    service.stop()
    raise ExecutorError(f"podman setup: service on {socket_path} not ready in {timeout} s")


@contextlib.contextmanager
def running_service(workdir: Path, *, timeout: float = 15.0,
                    image: str | None = BUSYBOX_IMAGE) -> Iterator[PodmanService]:
    service = start_service(workdir, timeout=timeout, image=image)
    try:
        yield service
    finally:
        service.stop()


def podman_unusable_reason(workdir: Path) -> str | None:
    """None when podman runs a container here, else one line saying why not."""
    if shutil.which("podman") is None:
        return "podman is not installed (make podman / scripts/setup-podman.sh as root)"
    env = podman_env(write_containers_conf(workdir))
    try:
        result = _run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], env,
                      timeout=30)
    except ExecutorError as exc:
        return str(exc)
    if result.returncode != 0:
        return "podman info failed: " + result.stderr.decode(errors="replace").strip()[-300:]
    return None
