#!/bin/sh
# Install podman, runc and busybox-static from Debian's packages when podman is missing.
# Idempotent: does nothing when podman, runc and busybox are already installed. Only root
# installs; anyone else gets one line and the podman tests skip with their reason.
# Configuration (containers.conf, the local busybox image, the API service) is done per
# test session by p2pakash/executor/podman_setup.py, not here.
set -eu

have() { command -v "$1" >/dev/null 2>&1; }

if have podman && have runc && { have busybox || [ -x /bin/busybox ]; }; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "setup-podman: not root, skipping podman install (podman tests will skip)"
    exit 0
fi
if ! have apt-get; then
    echo "setup-podman: no apt-get on this machine, skipping podman install"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "setup-podman: installing podman runc busybox-static"
# runc, not crun: crun refuses cgroups v1 hybrid hosts (see shared/reference/podman.md).
# Recommends stay on: they bring catatonit (the --init binary) and netavark.
# A failed install is reported, not fatal: the podman tests then skip and say why
# (set P2PAKASH_REQUIRE_PODMAN=1 to make them fail instead).
if apt-get update -q >/dev/null && apt-get install -y -q podman runc busybox-static >/dev/null
then
    echo "setup-podman: $(podman --version)"
else
    echo "setup-podman: apt-get could not install podman; podman tests will skip" >&2
fi
