#!/usr/bin/env bash
# Installs a software Vulkan driver so onnxruntime's WebGPU provider (Dawn) finds an adapter on a
# machine without a GPU, and test/runtime/deviceWebgpu.test.ts runs the real WebGPU path instead of
# skipping: Mesa's lavapipe from bookworm-backports (Mesa ≥ 24; Debian 12's own 22.3 is refused by
# Dawn: "Vulkan shaderUniform*ArrayDynamicIndexing required"). Idempotent. A machine where this
# cannot install (no root, no Debian mirror) only loses that test, which then skips with the reason.
set -uo pipefail

log() { printf '[webgpu-setup] %s\n' "$*"; }

mesa_major() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/'; }

if [ "$(mesa_major || true)" -ge 24 ] 2>/dev/null && dpkg-query -W libvulkan1 >/dev/null 2>&1; then
  log "lavapipe (mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)) already installed (skipped)"
  exit 0
fi
if ! grep -qs "bookworm" /etc/os-release; then
  log "not Debian 12 (bookworm): install Mesa ≥ 24's Vulkan drivers yourself to run the WebGPU test; skipping"
  exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=(sudo); else log "need root (or sudo) for apt-get; the WebGPU test will skip"; exit 0; fi
fi
t=$SECONDS
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | "${SUDO[@]}" tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
fi
if "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null \
  && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libvulkan1 >/dev/null \
  && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t bookworm-backports mesa-vulkan-drivers >/dev/null; then
  log "installed mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers) in $(( SECONDS - t ))s"
else
  log "apt-get failed; the WebGPU test will skip"
fi
exit 0
