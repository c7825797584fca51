# shellcheck shell=bash
# Debian package helper for the project's scripts. Source this file; it defines functions only and
# is safe under `set -euo pipefail`.

# ensure_packages CHECK:PACKAGE...: install with apt each PACKAGE whose CHECK is missing: a program on
# PATH, or an absolute path of a file the package installs (for a library). A fresh machine has no
# package lists and a kept one may have stale ones, so when the install fails the lists are refreshed
# (apt-get update) and the install tried again.
ensure_packages() {
    local pair check missing=()
    for pair in "$@"; do
        check="${pair%%:*}"
        if [[ "$check" == /* ]]; then [ -e "$check" ]; else command -v "$check" >/dev/null 2>&1; fi || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=''
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "packages.sh: ${missing[*]} missing and sudo is unavailable" >&2; return 1; }
        sudo='sudo'
    fi
    echo "Installing ${missing[*]} (apt)" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 && return 0
    $sudo apt-get update -q >/dev/null
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}
