#!/bin/sh
# Installs Outpost from a release tarball. The work is `outpost install` and
# `outpost uninstall` (they write and reverse a manifest); this script finds
# the binary shipped beside it, checks that it runs on this machine before
# anything changes, and says plainly when a live install needs root.
#
#   ./install.sh [--user] [--root DIR] [--dry-run]
#   ./install.sh --uninstall [--keep-state] [--root DIR] [--dry-run]
#
# The binary: ./outpost beside this script, or $OUTPOST_BIN.
set -eu

usage() {
	cat <<'EOF'
usage: install.sh [--user] [--root DIR] [--dry-run]
       install.sh --uninstall [--keep-state] [--root DIR] [--dry-run]

  --user        a service for this user instead of the system
  --root DIR    stage every path under DIR instead of / (packagers, tests)
  --dry-run     print each file and command, change nothing
  --uninstall   reverse exactly what install did, from its manifest
  --keep-state  with --uninstall: keep the state directory (CA, audit log, ledger)

The outpost binary is the one beside this script, or $OUTPOST_BIN.
EOF
}

die() {
	printf 'install.sh: %s\n' "$*" >&2
	exit 1
}

action=install
mode=--system
root=
dry_run=false
keep_state=false
while [ $# -gt 0 ]; do
	case $1 in
	--user) mode=--user ;;
	--system) mode=--system ;;
	--root)
		[ $# -ge 2 ] || die "--root needs a directory"
		root=$2
		shift
		;;
	--root=*) root=${1#--root=} ;;
	--dry-run) dry_run=true ;;
	--uninstall) action=uninstall ;;
	--keep-state) keep_state=true ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown argument: $1"
		;;
	esac
	shift
done
if [ "$keep_state" = true ] && [ "$action" != uninstall ]; then
	die "--keep-state goes with --uninstall"
fi

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
bin=${OUTPOST_BIN:-$here/outpost}
[ -f "$bin" ] || die "no outpost binary at $bin (set OUTPOST_BIN to its path)"
[ -x "$bin" ] || die "$bin is not executable (chmod +x it)"
# A tarball for another CPU or libc fails here, before anything is changed.
version=$("$bin" --version 2>&1) || die "$bin does not run on this machine: $version"

# The live system, as opposed to a staged tree. A dry run changes nothing, so
# it is left to outpost to judge.
if [ "$mode" = --system ] && [ "$dry_run" = false ] &&
	{ [ -z "$root" ] || [ "$root" = / ]; } && [ "$(id -u)" -ne 0 ]; then
	die "a system $action changes /etc, /usr/local, /var/lib and the trust store: run as root (sudo), or stage it with --root DIR"
fi

if [ "$action" = uninstall ]; then
	set -- uninstall
	# User mode is an install of its own, with its own manifest.
	[ "$mode" = --system ] || set -- "$@" --user
	[ "$keep_state" = false ] || set -- "$@" --keep-state
else
	set -- install "$mode"
fi
[ -z "$root" ] || set -- "$@" --root "$root"
[ "$dry_run" = false ] || set -- "$@" --dry-run

printf '%s: %s %s\n' "$version" "$bin" "$*"
exec "$bin" "$@"
