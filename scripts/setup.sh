#!/usr/bin/env bash
# Installs what PART for Swift needs from Debian's packages: oneDNN, zlib, libjpeg-turbo and libpng
# headers, the Fashion-MNIST files of the main job, Chromium (the test suite opens `part report`'s
# page in it, headless) and Open MPI (loaded at run time by `mpirun ... part train`; nothing else
# needs it). Skips apt entirely when everything is already there.
set -euo pipefail

packages=(libdnnl-dev zlib1g-dev libturbojpeg0-dev libpng-dev dataset-fashion-mnist chromium libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing Debian packages: ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
