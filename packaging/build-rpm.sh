#!/bin/sh
# build-rpm.sh BUILDDIR SRCDIR — `make rpm`: the RPM packages of Loom (loom,
# loom-libs, loom-devel) built from `make dist`'s tarball with rpmbuild,
# then checked with rpmlint.
#
#   1. make -C BUILDDIR dist;
#   2. BUILDDIR/_pkg-rpm/ as rpmbuild's _topdir: SOURCES/ gets the tarball
#      and loom.sysusers (packaging/systemd/loom.sysusers with the state
#      directory filled in, as make installs it), SPECS/ the spec as the
#      tarball carries it;
#   3. rpmbuild -bb --nodeps (with Debian's rpm, its brp-compress run by bash:
#      see below);
#   4. copy the RPMs to BUILDDIR/packages/;
#   5. check each: no libtool archive, no RPATH/RUNPATH; then rpmlint on
#      the spec and the RPMs (packaging/rpm/loom.rpmlintrc says why each
#      warning left is right), failing on any error.
#
# Environment:
#   LOOM_RPM_CHECK=1   run the spec's %check (the unit suites); without it,
#                      --without check, as make deb's nocheck: make check is
#                      where the tests run.
#   RPMBUILD_ARGS      more rpmbuild options (--define 'dist .fc40', ...).
#
# Works with Fedora's rpm-build and with Debian's rpm 4.18 (apt-get install
# rpm rpmlint).  --nodeps: Debian has no rpm database of the BuildRequires
# (they are installed as Debian packages), so rpmbuild would find none of
# them; on Fedora, `dnf builddep packaging/rpm/loom.spec` installs them.
# Debian's rpm defines no _enable_debug_packages, so it makes no debuginfo
# packages; a Fedora build makes them as usual (the spec leaves it alone).
set -eu

say() { printf 'build-rpm: %s\n' "$*"; }
die() { printf 'build-rpm: %s\n' "$*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 BUILDDIR SRCDIR (run it through \`make rpm')"
builddir=$(cd "$1" && pwd) || die "$1: no such build directory"
srcdir=$(cd "$2" && pwd) || die "$2: no such source directory"
[ -f "$builddir/Makefile" ] || die "$builddir: not a configured build directory (run ./bootstrap or ./configure first)"

for tool in rpmbuild rpmlint rpm2cpio cpio readelf; do
	command -v "$tool" >/dev/null 2>&1 ||
		die "$tool is missing: apt-get install rpm rpmlint cpio binutils (Fedora: dnf install rpm-build rpmlint cpio binutils)"
done

version=$(sed -n 's/^PACKAGE_VERSION = //p' "$builddir/Makefile")
[ -n "$version" ] || die "$builddir/Makefile: no PACKAGE_VERSION"
specversion=$(sed -n 's/^Version: *//p' "$srcdir/packaging/rpm/loom.spec")
[ "$version" = "$specversion" ] ||
	die "configure.ac says version $version, packaging/rpm/loom.spec $specversion: update the spec's Version (Release 1) and %changelog"
tarball=$builddir/loom-$version.tar.gz

start=$(date +%s)
say "make dist"
make -s -C "$builddir" dist >/dev/null
[ -f "$tarball" ] || die "make dist made no $tarball"

top=$builddir/_pkg-rpm
rm -rf "$top"
mkdir -p "$top/SOURCES" "$top/SPECS"
cp "$tarball" "$top/SOURCES/"
# What is packaged is what the tarball carries: the spec, and the
# sysusers.d file's source.
for f in packaging/rpm/loom.spec packaging/systemd/loom.sysusers; do
	tar -xzOf "$tarball" "loom-$version/$f" >"$top/$(basename "$f").t" 2>/dev/null ||
		die "the dist tarball lacks $f: add it to EXTRA_DIST (packaging/rpm/Makefile.inc, packaging/systemd/Makefile.inc)"
done
mv "$top/loom.spec.t" "$top/SPECS/loom.spec"
# @loomstatedir@ as configure's ${localstatedir}/lib/loom with the spec's
# --localstatedir=/var; any other @name@ is one this script does not know
sed 's|@loomstatedir@|/var/lib/loom|g' "$top/loom.sysusers.t" >"$top/SOURCES/loom.sysusers"
rm -f "$top/loom.sysusers.t"
! grep -n '@[a-zA-Z_]*@' "$top/SOURCES/loom.sysusers" >&2 ||
	die "packaging/systemd/loom.sysusers has a placeholder build-rpm.sh does not fill in (above): teach it"

checkopt="--without check"
[ "${LOOM_RPM_CHECK:-}" = 1 ] && checkopt="--with check"

# Debian's rpm runs its brp-compress, a bash script (`read -d`), with
# /bin/sh, which is dash there: it fails on every file and compresses no
# manual page.  There, the same %__os_install_post with brp-compress run
# by bash.
load=
brp=$(rpm --eval '%{_rpmconfigdir}')/brp-compress
if [ -f "$brp" ] && head -n 1 "$brp" | grep -q '^#! */bin/sh' &&
	grep -q 'read .*-d' "$brp" && ! printf 'ax' | /bin/sh -c 'read -d x v' 2>/dev/null; then
	load="--load $top/brp-bash.macros"
	{
		printf '%%__os_install_post \\\n'
		rpm --eval '%{__os_install_post}' | sed -e '/^[[:space:]]*$/d' \
			-e "s|^\([[:space:]]*\)\($brp\)|\1/bin/bash \2|" -e 's|[[:space:]]*$| \\|'
		printf '%%{nil}\n'
	} >"$top/brp-bash.macros"
fi
log=$top/build.log
say "rpmbuild -bb --nodeps $checkopt of loom $version (log: $log)"
# shellcheck disable=SC2086 # checkopt, load and RPMBUILD_ARGS are lists of options
if ! rpmbuild -bb --nodeps $checkopt $load --define "_topdir $top" ${RPMBUILD_ARGS:-} \
	"$top/SPECS/loom.spec" >"$log" 2>&1; then
	tail -n 60 "$log" >&2
	die "rpmbuild failed; the whole log is $log"
fi

packages=$builddir/packages
mkdir -p "$packages"
rpms=$(find "$top/RPMS" -name '*.rpm' | sort)
[ -n "$rpms" ] || die "rpmbuild made no RPM (see $log)"
for f in $rpms; do
	rm -f "$packages/$(basename "$f")"
	cp "$f" "$packages/"
done

# No libtool archive and no RPATH in any package (rpmlint sees an RPATH
# too; a .la it does not call an error).
bad=
scratch=$top/_check
for f in $rpms; do
	rm -rf "$scratch"
	mkdir -p "$scratch"
	(cd "$scratch" && rpm2cpio "$f" | cpio -idm --quiet)
	la=$(cd "$scratch" && find . -name '*.la')
	[ -z "$la" ] || bad="$bad
  $(basename "$f"): libtool archives: $la"
	for elf in $(cd "$scratch" && find . -type f \( -perm -u+x -o -name '*.so*' \)); do
		if readelf -d "$scratch/$elf" 2>/dev/null | grep -E '\((RPATH|RUNPATH)\)' >/dev/null; then
			bad="$bad
  $(basename "$f"): ${elf#.} has an RPATH/RUNPATH"
		fi
	done
done
rm -rf "$scratch"
[ -z "$bad" ] || die "packages with what they must not ship:$bad"

say "rpmlint"
# the spec beside its sources, for the %(cat %{SOURCE1}) in %pre
cp "$top/SPECS/loom.spec" "$top/SOURCES/"
rc=0
# shellcheck disable=SC2086 # rpms: file names without blanks, one a word
rpmlint -r "$srcdir/packaging/rpm/loom.rpmlintrc" "$top/SOURCES/loom.spec" $rpms || rc=$?
[ "$rc" -eq 0 ] || die "rpmlint found errors (above; exit status $rc)"

say "packages in $packages ($(($(date +%s) - start)) s):"
for f in $rpms; do
	printf '  %s\n' "$(basename "$f")"
done
