#!/usr/bin/env bash
# Builds FROM-scratch images of Prometheus, Pushgateway, Alertmanager and node-exporter from
# the Debian packages on this machine (they need only libc.so.6 and ld-linux; Prometheus also
# its web assets). Nothing is pulled. Each image gets the static `starvation` binary as /probe,
# its healthcheck (scratch images have no shell or curl).
#
#   deploy/docker/build-monitoring-images.sh --probe PATH/TO/static/starvation [--tag TAG]
#
# Images: starvation/prometheus:TAG, starvation/pushgateway:TAG, starvation/alertmanager:TAG,
# starvation/node-exporter:TAG (TAG defaults to dev).
set -euo pipefail
probe=
tag=dev
while (($#)); do
    case "$1" in
    --probe) probe="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build-monitoring-images.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -n $probe && -x $probe ]] || { echo "build-monitoring-images.sh: --probe must name the static starvation binary (deploy/build-images.sh builds it)" >&2; exit 2; }
for bin in prometheus promtool prometheus-pushgateway prometheus-alertmanager amtool prometheus-node-exporter; do
    command -v "$bin" >/dev/null || {
        echo "missing /usr/bin/$bin: apt-get install prometheus prometheus-pushgateway prometheus-alertmanager prometheus-node-exporter" >&2
        exit 1
    }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# build NAME PORT HEALTH_PATH DATA_DIR ENTRYPOINT_JSON CMD_JSON FILES...
build() {
    local name=$1 port=$2 health=$3 data=$4 entrypoint=$5 cmd=$6
    shift 6
    local ctx="$work/$name"
    mkdir -p "$ctx/rootfs/lib/x86_64-linux-gnu" "$ctx/rootfs/lib64" "$ctx/rootfs/bin" "$ctx/rootfs/etc/ssl/certs" "$ctx/data"
    cp -L /lib/x86_64-linux-gnu/libc.so.6 "$ctx/rootfs/lib/x86_64-linux-gnu/"
    cp -L /lib64/ld-linux-x86-64.so.2 "$ctx/rootfs/lib64/"
    cp -L /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/" 2>/dev/null || true
    cp "$probe" "$ctx/rootfs/probe"
    for f in "$@"; do
        mkdir -p "$ctx/rootfs$(dirname "$f")"
        cp -rL "$f" "$ctx/rootfs$f"
    done
    # Debian links the UI's moment-timezone to the full library (200+ MB of data); the UI
    # loads only the minified build with data.
    local tz="$ctx/rootfs/usr/share/prometheus/web/static/moment-timezone"
    [[ -d $tz ]] && find "$tz" -type f ! -name 'moment-timezone-with-data*.min.js' -delete
    cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
COPY --chown=65534:65534 data/ $data
USER 65534:65534
EXPOSE $port
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s CMD ["/probe", "probe", "http://127.0.0.1:$port$health"]
ENTRYPOINT $entrypoint
CMD $cmd
DOCKERFILE
    echo "==> starvation/$name:$tag" >&2
    DOCKER_BUILDKIT=0 docker build -q -t "starvation/$name:$tag" "$ctx" >/dev/null
}

build prometheus 9090 /-/healthy /prometheus '["/usr/bin/prometheus"]' \
    '["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.enable-remote-write-receiver", "--enable-feature=native-histograms"]' \
    /usr/bin/prometheus /usr/bin/promtool /usr/share/prometheus/web
build pushgateway 9091 /-/healthy /pushgateway '["/usr/bin/prometheus-pushgateway"]' '[]' \
    /usr/bin/prometheus-pushgateway
build alertmanager 9093 /-/healthy /alertmanager '["/usr/bin/prometheus-alertmanager"]' \
    '["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]' \
    /usr/bin/prometheus-alertmanager /usr/bin/amtool /usr/share/prometheus/alertmanager
build node-exporter 9100 /metrics /tmp '["/usr/bin/prometheus-node-exporter"]' \
    '["--path.procfs=/host/proc", "--path.sysfs=/host/sys", "--path.rootfs=/host/root"]' \
    /usr/bin/prometheus-node-exporter

docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep "^starvation/.*:$tag " >&2
