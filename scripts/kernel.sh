#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Fetch Debian's linux-source-7.2 through a private apt configuration and
# build the dlm-rs test kernel (bzImage + modules) from tinyconfig plus the
# fragments in scripts/kernel/.  The built tree is cached outside the clone,
# keyed by the source version and the fragments' hash, and rebuilt when
# either changes.
#
#   FLAVOUR=base|debug  (default base; debug adds KASAN, lockdep, kmemleak)
#
# Prints the path of the built tree (usable as KDIR) on stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
FLAVOUR=${FLAVOUR:-base}
CACHE=${DLMRS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dlm-rs}
JOBS=${JOBS:-$(($(nproc) + 1))}
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[kernel] %s\n' "$*" >&2; }

# The kernel's Rust support needs clang for KASAN (init/Kconfig: RUST depends
# on !KASAN || CC_IS_CLANG), so the debug flavour is built with LLVM.  The make
# flags are kept in the tree (.dlmrs-make-flags) for out-of-tree module builds.
case "$FLAVOUR" in
base)
	frags=("$here/kernel/base.config")
	kmake=()
	;;
debug)
	frags=("$here/kernel/base.config" "$here/kernel/debug.config")
	kmake=(LLVM=-19)
	;;
*) log "unknown FLAVOUR=$FLAVOUR (base or debug)"; exit 2 ;;
esac

mkdir -p "$CACHE"
# One build at a time per cache: a second caller waits, then finds it cached.
exec 9>"$CACHE/.lock"
flock 9

# --- 1. the source package, through a private apt configuration ----------
fetch_source() {
	local apt="$CACHE/apt" suite deb
	mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$CACHE/debs"
	for suite in sid forky; do
		echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" >"$apt/sources.list"
		local opts=(-o Dir::Etc::SourceList="$apt/sources.list"
			-o Dir::Etc::SourceParts=/nonexistent
			-o Dir::State::Lists="$apt/lists"
			-o Dir::Cache="$apt/cache"
			-o APT::Get::List-Cleanup=0
			-o Debug::NoLocking=1
			-o APT::Sandbox::User=root)
		if ! apt-get "${opts[@]}" update -qq >&2; then
			log "apt update for $suite failed"
			continue
		fi
		local ver
		ver=$(apt-cache "${opts[@]}" show linux-source-7.2 2>/dev/null |
			awk '/^Version:/ {print $2; exit}') || true
		if [ -z "$ver" ]; then
			log "$suite has no linux-source-7.2"
			continue
		fi
		deb=$(ls "$CACHE/debs"/linux-source-7.2_"${ver//:/%3a}"_all.deb 2>/dev/null || true)
		if [ -z "$deb" ]; then
			log "downloading linux-source-7.2 $ver from $suite"
			(cd "$CACHE/debs" && apt-get "${opts[@]}" download -qq "linux-source-7.2=$ver" >&2)
			deb=$(ls "$CACHE/debs"/linux-source-7.2_*"_all.deb" | grep -F "_${ver//:/%3a}_" | head -1)
		fi
		echo "$deb"
		return 0
	done
	# Offline fallback: the newest cached package.
	deb=$(ls -t "$CACHE/debs"/linux-source-7.2_*_all.deb 2>/dev/null | head -1 || true)
	if [ -n "$deb" ]; then
		log "no suite answered; using cached $deb"
		echo "$deb"
		return 0
	fi
	log "cannot fetch linux-source-7.2 from sid or forky"
	return 1
}

deb=$(fetch_source)
srcver=$(dpkg-deb -f "$deb" Version)
upver=${srcver%%-*}
upver=${upver%%+*}
case "$upver" in
7.2|7.2.*) ;;
*) log "linux-source-7.2 version $srcver is not 7.2.x"; exit 1 ;;
esac

fraghash=$( (cat "${frags[@]}"; [ ${#kmake[@]} -eq 0 ] || echo "${kmake[*]}") | sha256sum | cut -c1-12)
key="linux-$srcver-$FLAVOUR-$fraghash"
tree="$CACHE/$key"

if [ -f "$tree/.dlmrs-built" ]; then
	log "cached: $tree"
	echo "$tree"
	exit 0
fi

# --- 2. unpack -----------------------------------------------------------
log "unpacking $srcver into $tree"
rm -rf "$tree" "$tree.tmp"
mkdir -p "$tree.tmp"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tree.tmp" --wildcards '*/linux-source-7.2.tar.xz'
tar -xJf "$tree.tmp"/usr/src/linux-source-7.2.tar.xz -C "$tree.tmp"
mv "$tree.tmp"/linux-source-7.2 "$tree"
rm -rf "$tree.tmp"

# --- 3. configure and build ----------------------------------------------
cd "$tree"
log "configuring ($FLAVOUR)"
make -s "${kmake[@]}" tinyconfig >&2
scripts/kconfig/merge_config.sh -m .config "${frags[@]}" >/dev/null
make -s "${kmake[@]}" olddefconfig >&2
# Every line of the fragments must have survived olddefconfig.
bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*) grep -qxF "$line" .config || { log "not in .config: $line"; bad=1; } ;;
	"# CONFIG_"*" is not set") grep -qxF "$line" .config || { sym=${line#\# }; sym=${sym%% *}; grep -q "^$sym=" .config && { log "set, wanted unset: $sym"; bad=1; }; } ;;
	esac
done < <(cat "${frags[@]}")
if [ $bad -ne 0 ]; then
	log "config fragment did not apply; see $tree/.config"
	exit 1
fi
make -s "${kmake[@]}" rustavailable >&2
log "building bzImage and modules with -j$JOBS (about 8-10 minutes)"
start=$(date +%s)
make -s "${kmake[@]}" -j"$JOBS" bzImage modules >"$tree/build.log" 2>&1 || {
	tail -40 "$tree/build.log" >&2
	exit 1
}
log "built in $(($(date +%s) - start)) s"
echo "${kmake[*]}" >.dlmrs-make-flags
touch .dlmrs-built
echo "$tree"
