#!/usr/bin/env bash
# Install the system programs MigrationBox's tests need and pip cannot provide.
#
# Why a script and not the Makefile alone: the replication tests talk to a real OpenSSH
# server (Debian's openssh-server, run unprivileged by the tests on loopback, never as
# the system service) and the replication benchmark compares against rsync over that same
# server. Both are Debian packages, so a fresh machine gets them from apt. The Teams voice
# tests and benchmark speak their commands with espeak-ng (every language the bot knows,
# Hungarian included), also a Debian package.
#
# Idempotent: nothing is done when the programs are already there. As root, a missing
# program is installed (one `apt-get update` first). When not root, the script prints what
# to install and exits 0: the tests that need it then skip and say why.
set -euo pipefail

# program path -> Debian package that provides it
declare -A NEEDED=(
  [/usr/sbin/sshd]=openssh-server
  [/usr/bin/ssh-keygen]=openssh-client
  [/usr/bin/ssh]=openssh-client
  [/usr/bin/rsync]=rsync
  [/usr/bin/espeak-ng]=espeak-ng
)

missing=()
for program in "${!NEEDED[@]}"; do
  [ -x "$program" ] || missing+=("${NEEDED[$program]}")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-test-deps: sshd, ssh, ssh-keygen, rsync and espeak-ng are present"
  exit 0
fi
# one package name once, in a stable order
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${packages[*]}; install them with:" >&2
  echo "  sudo apt-get install -y --no-install-recommends ${packages[*]}" >&2
  echo "install-test-deps: the tests that need them will be skipped" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# The system sshd must never be started by the package install: the tests start their own
# on a free loopback port. policy-rc.d answering 101 tells invoke-rc.d not to start services.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [ "$own_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}"

# Should a service manager have started it anyway, stop and disable the system service.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
elif [ -x /etc/init.d/ssh ]; then
  /etc/init.d/ssh stop >/dev/null 2>&1 || true
fi
echo "install-test-deps: installed ${packages[*]}"
