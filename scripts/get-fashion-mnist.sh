#!/bin/sh
# Fashion-MNIST for `make demo` / `make test` on a fresh machine, got the way CI gets it:
#   1. already on disk (./data/fashion-mnist or Debian's /usr/share/datasets/fashion-mnist): done;
#   2. Debian's dataset-fashion-mnist package, when apt-get can install it (as root, or with sudo that
#      needs no password);
#   3. the checksum-verified download (`robustdml data fashion-mnist`);
# otherwise stop with one line saying what to do.
# Usage: scripts/get-fashion-mnist.sh ROBUSTDML   (the robustdml command, e.g. .venv/bin/robustdml)
set -u
robustdml=${1:?usage: scripts/get-fashion-mnist.sh ROBUSTDML}

present() { $robustdml data fashion-mnist --no-download >/dev/null 2>&1; }

present && exit 0
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    as_root=""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
  else
    as_root="cannot"
  fi
  if [ "$as_root" != cannot ]; then
    echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist" >&2
    $as_root apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
      || { $as_root apt-get update -q >/dev/null 2>&1 \
           && $as_root apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }
    present && exit 0
  fi
fi
echo "Fashion-MNIST: downloading it into ./data/fashion-mnist" >&2
$robustdml data fashion-mnist >/dev/null 2>&1 && exit 0
echo "error: could not get Fashion-MNIST (not on disk, the Debian package dataset-fashion-mnist could not be installed, and the download failed): run 'sudo apt-get install dataset-fashion-mnist', or put the four .gz files of https://github.com/zalandoresearch/fashion-mnist into ./data/fashion-mnist, then run make again" >&2
exit 1
