#!/bin/sh
# build-deb.sh BUILDDIR SRCDIR — `make deb`: the Debian packages of Loom
# built from `make dist`'s tarball, then checked with lintian.
#
#   1. make -C BUILDDIR dist, and unpack the tarball in BUILDDIR/_pkg-deb/;
#   2. copy packaging/debian/ (as the tarball carries it) to debian/ there;
#   3. dpkg-buildpackage -us -uc -b;
#   4. move the .deb, .ddeb, .buildinfo and .changes to BUILDDIR/packages/;
#   5. lintian --fail-on error,warning on the .changes.
#
# Environment:
#   DEB_BUILD_OPTIONS  passed on as set; unset, "nocheck parallel=N" (N: the
#                      processors): debian/rules runs the unit suites only
#                      when nocheck is absent (DEB_BUILD_OPTIONS= make deb).
#   LOOM_DEB_VERSION   a Debian version for a test build (0.1.0-2,
#                      0.1.0-1+test1, ...): a changelog entry for it is put on
#                      top of debian/changelog in the scratch copy only.
#   LINTIAN_ARGS       more lintian options (default: --display-info).
#
# Needs dpkg-dev, debhelper and lintian besides Loom's build dependencies
# (packaging/debian/control; ./bootstrap installs them all).
set -eu

say() { printf 'build-deb: %s\n' "$*"; }
die() { printf 'build-deb: %s\n' "$*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 BUILDDIR SRCDIR (run it through \`make deb')"
builddir=$(cd "$1" && pwd) || die "$1: no such build directory"
srcdir=$(cd "$2" && pwd) || die "$2: no such source directory"
[ -f "$builddir/Makefile" ] || die "$builddir: not a configured build directory (run ./bootstrap or ./configure first)"

for tool in dpkg-buildpackage dh lintian; do
	command -v "$tool" >/dev/null 2>&1 ||
		die "$tool is missing: apt-get install dpkg-dev debhelper lintian (./bootstrap does it)"
done

if [ -n "${LOOM_DEB_VERSION:-}" ]; then
	dpkg --validate-version "$LOOM_DEB_VERSION" ||
		die "LOOM_DEB_VERSION=$LOOM_DEB_VERSION: not a Debian version (e.g. 0.1.0-2)"
fi

version=$(sed -n 's/^PACKAGE_VERSION = //p' "$builddir/Makefile")
[ -n "$version" ] || die "$builddir/Makefile: no PACKAGE_VERSION"
tarball=$builddir/loom-$version.tar.gz

say "make dist"
make -s -C "$builddir" dist >/dev/null
[ -f "$tarball" ] || die "make dist made no $tarball"

scratch=$builddir/_pkg-deb
rm -rf "$scratch"
mkdir -p "$scratch"
tar -xzf "$tarball" -C "$scratch"
tree=$scratch/loom-$version

# What is packaged is what the tarball carries: a file of packaging/debian
# left out of EXTRA_DIST would silently be missing from the build.
missing=
for f in $(cd "$srcdir" && find packaging/debian -type f ! -name '*~' | sort); do
	[ -e "$tree/$f" ] || missing="$missing $f"
done
[ -z "$missing" ] ||
	die "the dist tarball lacks$missing: add them to EXTRA_DIST in packaging/debian/Makefile.inc"

cp -R "$tree/packaging/debian" "$tree/debian"
chmod +x "$tree/debian/rules"

if [ -n "${LOOM_DEB_VERSION:-}" ]; then
	maint=$(sed -n 's/^Maintainer: //p' "$tree/debian/control")
	{
		printf 'loom (%s) unstable; urgency=medium\n\n' "$LOOM_DEB_VERSION"
		printf '  * Test build %s (LOOM_DEB_VERSION).\n\n' "$LOOM_DEB_VERSION"
		printf ' -- %s  %s\n\n' "$maint" "$(date -R)"
		cat "$tree/packaging/debian/changelog"
	} >"$tree/debian/changelog"
fi
debversion=$(cd "$tree" && dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
changes=loom_${debversion}_$arch.changes

if [ -z "${DEB_BUILD_OPTIONS+set}" ]; then
	DEB_BUILD_OPTIONS="nocheck parallel=$(nproc 2>/dev/null || echo 1)"
fi
export DEB_BUILD_OPTIONS

log=$scratch/build.log
say "dpkg-buildpackage -us -uc -b of loom $debversion (DEB_BUILD_OPTIONS=\"$DEB_BUILD_OPTIONS\"; log: $log)"
if ! (cd "$tree" && dpkg-buildpackage -us -uc -b) >"$log" 2>&1; then
	tail -n 60 "$log" >&2
	die "dpkg-buildpackage failed; the whole log is $log"
fi

# The .changes names every file the build made.
packages=$builddir/packages
mkdir -p "$packages"
files=$(sed -n '/^Files:/,/^[^ ]/s/^ [0-9a-f]\{32\} [0-9]* [^ ]* [^ ]* //p' "$scratch/$changes")
for f in $files $changes; do
	mv -f "$scratch/$f" "$packages/"
done

say "lintian"
# shellcheck disable=SC2086 # LINTIAN_ARGS is a list of options
lintian --fail-on error,warning ${LINTIAN_ARGS:---display-info} "$packages/$changes" ||
	die "lintian found errors or warnings in $packages/$changes (above)"

say "packages in $packages:"
for f in $files; do
	case $f in
	*.deb | *.ddeb) printf '  %s\n' "$f" ;;
	esac
done
