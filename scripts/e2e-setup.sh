#!/usr/bin/env bash
# Installs what the end-to-end tests (npm run test:e2e) need, outside the repository:
#   - Debian packages: chromium (the browser playwright-core drives) and libkrb5-dev (code-server's
#     native `kerberos` module builds against it);
#   - Node 24 from npm (code-server's postinstall refuses other versions, and it runs on it);
#   - code-server 4.139.1 (VS Code 1.139.1 served to the browser).
# Cache folder: $OPT_E2E_CACHE, default ~/.cache/opt-complete-e2e. Idempotent: what is present is
# skipped. Needs root (or sudo) for apt-get, and the Debian and npm registries.
set -euo pipefail

CACHE="${OPT_E2E_CACHE:-$HOME/.cache/opt-complete-e2e}"
CODE_SERVER_VERSION=4.139.1
NODE_MAJOR=24
T0=$SECONDS

log() { printf '[e2e-setup] %s\n' "$*"; }
step_time() { log "  ... $1 took $(( SECONDS - $2 ))s"; }

mkdir -p "$CACHE"
log "cache: $CACHE"

# --- 1. Debian packages -----------------------------------------------------------------------
missing=()
for pkg in chromium libkrb5-dev; do
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  log "apt: chromium and libkrb5-dev already installed (skipped)"
else
  t=$SECONDS
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO=(sudo); else
      log "apt: need root (or sudo) to install: ${missing[*]}"; exit 1
    fi
  fi
  log "apt: installing ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  step_time "apt-get" "$t"
fi
[ -x /usr/bin/chromium ] || { log "error: /usr/bin/chromium missing after install"; exit 1; }

# --- 2. Node 24 from npm ----------------------------------------------------------------------
NODE_DIR="$CACHE/node$NODE_MAJOR"
NODE_BIN_DIR="$NODE_DIR/node_modules/node/bin"
node_ok() { [ -x "$NODE_BIN_DIR/node" ] && "$NODE_BIN_DIR/node" --version 2>/dev/null | grep -q "^v$NODE_MAJOR\."; }
if node_ok; then
  log "node: $("$NODE_BIN_DIR/node" --version) present (skipped)"
else
  t=$SECONDS
  log "node: installing node@$NODE_MAJOR from npm into $NODE_DIR"
  rm -rf "$NODE_DIR"; mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && echo '{"private":true}' > package.json \
    && npm install --no-audit --no-fund --no-save --loglevel=error "node@$NODE_MAJOR")
  node_ok || { log "error: node $NODE_MAJOR did not install"; exit 1; }
  log "node: $("$NODE_BIN_DIR/node" --version)"
  step_time "node install" "$t"
fi

# --- 3. code-server (installed and run with Node 24) --------------------------------------------
CS_DIR="$CACHE/code-server"
CS_MARK="$CS_DIR/.installed-$CODE_SERVER_VERSION"
if [ -f "$CS_MARK" ] && [ -f "$CS_DIR/node_modules/code-server/out/node/entry.js" ]; then
  log "code-server: $CODE_SERVER_VERSION present (skipped)"
else
  t=$SECONDS
  log "code-server: installing code-server@$CODE_SERVER_VERSION with Node $NODE_MAJOR (takes a few minutes)"
  rm -rf "$CS_DIR"; mkdir -p "$CS_DIR"
  # Native modules must be built against Node 24's headers, not those a user npmrc may point at.
  node_h="$(find "$NODE_DIR/node_modules" -path '*/include/node/node.h' -print -quit 2>/dev/null || true)"
  nodedir_env=()
  if [ -n "$node_h" ]; then nodedir_env=("npm_config_nodedir=$(dirname "$(dirname "$(dirname "$node_h")")")"); fi
  (cd "$CS_DIR" && echo '{"private":true}' > package.json \
    && env PATH="$NODE_BIN_DIR:$PATH" "${nodedir_env[@]}" \
       npm install --no-audit --no-fund --no-save --loglevel=error --unsafe-perm "code-server@$CODE_SERVER_VERSION")
  [ -f "$CS_DIR/node_modules/code-server/out/node/entry.js" ] || { log "error: code-server did not install"; exit 1; }
  touch "$CS_MARK"
  step_time "code-server install" "$t"
fi
version="$("$NODE_BIN_DIR/node" -p "require('$CS_DIR/node_modules/code-server/package.json').version" 2>/dev/null || true)"
log "code-server: version ${version:-?} at $CS_DIR/node_modules/.bin/code-server"

log "done in $(( SECONDS - T0 ))s"
