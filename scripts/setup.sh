#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything dlm-rs needs on a Debian bookworm machine (run as root).
# Idempotent: a second run only checks.  Never touches the system's apt
# sources; the kernel source comes through scripts/kernel.sh's private apt
# configuration.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

PKGS=(
	# kernel build
	build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils kmod
	libclang-19-dev llvm-19 python3
	# the debug flavour (KASAN with Rust) is built with clang
	clang-19 lld-19
	# guests and harness
	qemu-system-x86 busybox-static gfs2-utils nftables iproute2 e2fsprogs
	# the cluster stack staged into the guests (never started on the host)
	corosync dlm-controld
	# the wire oracle: tshark's DLM3 dissector decodes the hub's pcap
	tshark
	# make bench's plot of the ours/stock ratios
	python3-matplotlib
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# corosync and dlm-controld are for the guests: a policy-rc.d that denies
	# every start keeps their services from starting on the host during the
	# install (one already there, e.g. a container's, is left alone).
	own_policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\n# dlm-rs setup.sh: install only, start nothing\nexit 101\n' \
			>/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		own_policy=1
	fi
	rc=0
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
	[ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
	[ "$rc" = 0 ] || { log "apt-get install failed ($rc)"; exit "$rc"; }
	# Nor at the host's next boot.
	case " ${missing[*]} " in
	*" corosync "* | *" dlm-controld "*)
		if [ -d /run/systemd/system ]; then
			systemctl disable --quiet corosync.service dlm.service 2>/dev/null || true
		fi
		;;
	esac
fi

# Rust: the rustup toolchain already on the machine, plus rust-src for the
# kernel's own core/alloc build.
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v rustc >/dev/null; then
	log "no rustc on PATH: the machine's rustup toolchain is required"
	exit 1
fi
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
	log "adding rust-src"
	rustup component add rust-src
fi
if ! bindgen --version 2>/dev/null | grep -q '0\.72\.1'; then
	log "installing bindgen-cli 0.72.1 (about 90 s)"
	LIBCLANG_PATH=/usr/lib/llvm-19/lib cargo install -q bindgen-cli --version 0.72.1 --locked
fi
if ! cargo fuzz --version 2>/dev/null | grep -q '0\.13\.2'; then
	log "installing cargo-fuzz 0.13.2 (about 2 min)"
	cargo install -q cargo-fuzz --version 0.13.2 --locked
fi
log "ok: $(rustc --version), $(bindgen --version 2>&1 | head -1), $(cargo fuzz --version 2>&1)"
