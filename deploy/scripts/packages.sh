# shellcheck shell=bash
# Debian package helper for the project's scripts. Source this file; it defines functions only and
# is safe under `set -euo pipefail`.

# ensure_packages COMMAND:PACKAGE...: install with apt each PACKAGE whose COMMAND (a program on PATH
# or an absolute path) is missing. A fresh machine has no package lists and a kept one may have stale
# ones, so when the install fails the lists are refreshed (apt-get update) and the install tried again.
ensure_packages() {
    local pair missing=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
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
