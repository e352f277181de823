#!/bin/sh
# Installs redis-server (the cluster tests start their own on a free loopback
# port) from the OS packages when it is missing. Run as root from the repository
# root: `.ci/redis.sh`. Does nothing when redis-server is already on PATH.
set -eu
if command -v redis-server >/dev/null 2>&1; then
    redis-server --version
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Other jobs may hold the dpkg lock for a while: wait for it instead of failing.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends redis-server >/dev/null
# The package starts a system-wide service where an init system runs; the tests
# don't use it (they start their own server), so stop it if it was started.
if command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
fi
redis-server --version
