#!/usr/bin/env bash
# Installs the Debian packages Peercall needs, and only those that are missing.
# Usage: scripts/install-deps.sh [build|test|deb]   (test adds what the end-to-end tests use; deb what
# `make deb` needs: dpkg-dev and cargo-deb)
set -euo pipefail

want=(
  libasound2-dev   # cpal's ALSA backend
  libclang-dev     # bindgen for nokhwa's v4l2 bindings
  cmake            # the opus crate builds its bundled libopus with CMake
  nasm             # openh264's assembly: ~3x faster encode
  libvpx-dev       # VP8/VP9 (env-libvpx-sys links it through pkg-config)
  pkg-config
  libwebrtc-audio-processing-dev  # echo cancellation, noise suppression, gain control (webrtc-audio-processing 0.5)
)
if [[ "${1:-build}" == "deb" ]]; then
  want+=(dpkg-dev)
fi
if [[ "${1:-build}" == "test" ]]; then
  # The window test: a virtual X server, screenshots, typing and clicking (xdotool), and Mesa's
  # software GL (llvmpipe) for glow.
  want+=(xvfb xauth imagemagick x11-utils xdotool libgl1-mesa-dri libegl1 libglx-mesa0 libxkbcommon-x11-0 libxcursor1 libxi6 libxrandr2)
  # The browser interop tests: Debian's Chromium, driven by playwright-core under Node, and
  # Firefox ESR, driven by puppeteer-core over WebDriver BiDi.
  want+=(chromium firefox-esr)
  # The TURN test: coturn on loopback with use-auth-secret.
  want+=(coturn)
  # The cluster tests: signaling nodes sharing a real Redis on loopback.
  want+=(redis-server)
  # The network tests: packet loss by nftables rules inside network namespaces; the link emulator's
  # tests send their probes with small Python programs.
  want+=(nftables iproute2 python3)
  # The desktop tests: the package's tools (dpkg-shlibdeps for its dependencies, desktop-file-validate),
  # a D-Bus session with the AT-SPI bus and pyatspi (the window as a screen reader sees it), and xrdb
  # (the desktop's text scale, Xft.dpi).
  want+=(dpkg-dev desktop-file-utils dbus at-spi2-core python3-pyatspi x11-xserver-utils)
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    want+=(nodejs npm)
  fi
fi

missing=()
for pkg in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# cargo-deb builds the Debian package (`make deb`; the package test). Pinned, so every machine builds the
# same package layout; --locked uses the versions its authors tested.
CARGO_DEB_VERSION=3.8.0
if [[ "${1:-build}" == "test" || "${1:-build}" == "deb" ]]; then
  if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "install-deps: installing cargo-deb $CARGO_DEB_VERSION (a few minutes, once)" >&2
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
  fi
fi

# playwright-core and puppeteer-core drive the system's browsers; neither downloads a browser of its own.
browser_tests="$(dirname "$0")/../tests/browser"
if [[ "${1:-build}" == "test" && ( ! -d "$browser_tests/node_modules/playwright-core" \
      || ! -d "$browser_tests/node_modules/puppeteer-core" ) ]]; then
  echo "install-deps: installing playwright-core and puppeteer-core for the browser tests" >&2
  (cd "$browser_tests" && npm ci --no-audit --no-fund --silent)
fi
