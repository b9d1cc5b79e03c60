#!/usr/bin/env bash
# Regenerates the committed assets: assets/ring.wav (Python's wave module), assets/peercall.png and its
# smaller sizes under assets/icons/ (ImageMagick). Run only to change them; the build uses the committed files.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - <<'PY'
# The ring: two short bursts of a 440+480 Hz chord (the North American ring tone), 48 kHz mono 16-bit.
import math, struct, wave
rate = 48000
def burst(seconds):
    n = int(rate * seconds)
    fade = int(rate * 0.01)  # 10 ms ramps: no clicks
    out = []
    for i in range(n):
        env = min(1.0, i / fade, (n - i) / fade)
        s = 0.5 * (math.sin(2 * math.pi * 440 * i / rate) + math.sin(2 * math.pi * 480 * i / rate))
        out.append(int(0.6 * 32767 * env * s))
    return out
samples = burst(0.4) + [0] * int(rate * 0.2) + burst(0.4)
with wave.open("assets/ring.wav", "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(rate)
    w.writeframes(struct.pack("<%dh" % len(samples), *samples))
PY

# The icon: a white camera on a blue rounded square, 256x256.
convert -size 256x256 xc:none \
  -fill '#2563eb' -draw 'roundrectangle 8,8 247,247 48,48' \
  -fill white -draw 'roundrectangle 44,84 164,172 18,18' \
  -fill white -draw 'polygon 172,128 214,96 214,160' \
  -fill '#2563eb' -draw 'circle 84,128 84,110' \
  -define png:exclude-chunks=date,time -strip assets/peercall.png
# The sizes desktops ask for besides 256 (menus 48, software centres 128); assets/icons/peercall.svg is
# the same drawing as a vector, for the scalable slot.
for size in 48 128; do
  convert assets/peercall.png -resize "${size}x${size}" -define png:exclude-chunks=date,time -strip \
    "assets/icons/peercall-${size}.png"
done
echo "wrote assets/ring.wav, assets/peercall.png and assets/icons/peercall-{48,128}.png"
