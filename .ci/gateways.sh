#!/usr/bin/env bash
# Installs nginx-light and caddy (Debian packages) for identity-proxy/tests/it/authz, which start
# them in the foreground on 127.0.0.1 with temporary configurations. The
# packages' own services are not wanted: policy-rc.d keeps their postinst from
# starting them, and any that did start are stopped.
set -euo pipefail

packages=()
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    packages+=(nginx-light)
fi
if ! command -v caddy >/dev/null 2>&1; then
    packages+=(caddy)
fi
if [ "${#packages[@]}" = 0 ]; then
    echo "nginx and caddy already installed"
    exit 0
fi

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

# 101: "action not allowed" for invoke-rc.d, so no service is started.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    created_policy=1
fi
trap 'if [ "$created_policy" = 1 ]; then $sudo rm -f "$policy"; fi' EXIT

$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" >/dev/null

# Where a service manager did start them anyway, stop them: the tests never
# use the default ports, but nothing should be left listening.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now nginx caddy >/dev/null 2>&1 || true
fi
if [ -f /run/nginx.pid ]; then
    $sudo nginx -s quit >/dev/null 2>&1 || true
fi
