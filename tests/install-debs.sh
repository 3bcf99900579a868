#!/bin/sh
# install-debs.sh PKG...: install the Debian packages that are not installed
# yet, as root or through sudo; say what it does. Used by `make deps`.
missing=
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
	echo "saepipe: missing packages:$missing (no apt-get here: install them by hand)" >&2
	exit 1
fi
sudo=
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null 2>&1 || {
		echo "saepipe: missing packages:$missing (run as root or install sudo)" >&2; exit 1; }
	sudo=sudo
fi
echo "saepipe: installing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2 &&
$sudo apt-get install -y -qq --no-install-recommends $missing >&2
