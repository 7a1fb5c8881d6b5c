#!/usr/bin/env bash
# Everything the README's test command needs outside npm: the end-to-end prerequisites (chromium,
# Node 24, code-server) and a software Vulkan driver for the WebGPU provider test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/e2e-setup.sh
bash scripts/webgpu-setup.sh
