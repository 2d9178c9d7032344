#!/usr/bin/env bash
# The cost of the encrypted overlay (docs/swarm.md), measured between two nodes of the
# Docker-in-Docker Swarm of deploy/cluster.sh: requests/s at saturation and latency at a fixed
# moderate rate, plain overlay vs `--opt encrypted` (IPsec ESP), side by side in one session.
#
#   scripts/measure-overlay.sh [--runs N] [--duration 15s] [--rate 1000] [--rate-duration 20s]
#                              [--connections 32] [--image IMAGE] [--name starvation-cluster-NAME]
#
# What it does: builds the project image (deploy/build-images.sh --profile release, unless
# --image names one already built) and a FROM-scratch wrk image (this machine's wrk and its
# libraries; labelled so `cluster.sh down` removes it); `cluster.sh up` (manager + 2 workers);
# loads both images into every node; creates two attachable overlay networks, one plain and one
# encrypted; on each, one `starvation serve --block-ms 0` service task on node2; then the client
# runs as a container on node3 (so every request crosses from node3 to node2 over VXLAN, and on
# the encrypted network through ESP). Before measuring, each network must carry one probe from
# node3 to node2; a network that does not is reported with the reason (the nodes' IPsec errors
# and xfrm counters) and not measured. Each round measures both networks, alternating which
# goes first:
#   saturation: wrk -t2 -c CONNECTIONS -d DURATION (closed loop): requests/s;
#   fixed rate: starvation load --start-rate RATE --stages RATE:RATE_DURATION (open model):
#               service time p50/p99 (send -> body), response-time p99 (scheduled -> body),
#               failed and dropped iterations.
# Prints every run and a table (median, min-max over the rounds); raw results in
# target/overlay/<UTC time>/. The cluster is taken down on every exit (trap). Exit 0 when both
# networks were measured, 1 when one carried no traffic (the table says which, and why).
# Needs: Docker, wrk, jq, and to run as root for the xfrm diagnostics (/proc/PID/net of the nodes).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=5
duration=15s
rate=1000
rate_duration=20s
connections=32
image=
name=starvation-cluster-ovl
while (($#)); do
    case "$1" in
    --runs) runs=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --rate-duration) rate_duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "measure-overlay.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for tool in docker wrk jq; do
    command -v "$tool" >/dev/null || { echo "measure-overlay.sh: missing $tool" >&2; exit 1; }
done

say() { echo "measure-overlay.sh: $*" >&2; }
cluster() { deploy/cluster.sh --name "$name" "$@"; }
hostdocker() { env -u DOCKER_HOST -u DOCKER_CONTEXT docker "$@"; }
nd() {
    local ip=$1
    shift
    env -u DOCKER_HOST -u DOCKER_CONTEXT docker -H "tcp://$ip:2375" "$@"
}

out=target/overlay/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
say "results in $out"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "command: scripts/measure-overlay.sh --runs $runs --duration $duration --rate $rate --rate-duration $rate_duration --connections $connections"
    echo "host: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r), Docker $(hostdocker version -f '{{.Server.Version}}')"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/session.txt" >&2

# ---------------------------------------------------------------------------------------------
# Images

if [[ -z $image ]]; then
    image=starvation:overlay-bench
    deploy/build-images.sh --profile release --tag "$image" >/dev/null
fi
hostdocker image inspect "$image" >/dev/null 2>&1 || { say "no image $image"; exit 1; }

# wrk FROM scratch: the binary, every library ldd lists and the loader, in Debian's merged-/usr
# layout (the loader is asked for as /lib64/ld-linux-x86-64.so.2).
wrk_image=starvation/wrk:$name
build_wrk_image() {
    local ctx r f lib dir
    ctx=$(mktemp -d)
    r=$ctx/rootfs
    mkdir -p "$r"/usr/{bin,lib,lib64}
    ln -s usr/bin "$r/bin"
    ln -s usr/lib "$r/lib"
    ln -s usr/lib64 "$r/lib64"
    f=$(command -v wrk)
    cp -L "$f" "$r/usr/bin/wrk"
    while read -r lib; do
        dir=$(readlink -f "$(dirname "$lib")")
        mkdir -p "$r$dir"
        cp -L "$lib" "$r$dir/"
    done < <(ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
    printf 'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/usr/bin/wrk"]\n' >"$ctx/Dockerfile"
    # Labelled like the cluster: `cluster.sh down` removes it from this Engine.
    DOCKER_BUILDKIT=0 hostdocker build -q --label "starvation-cluster=$name" -t "$wrk_image" "$ctx" >/dev/null 2>&1
    rm -rf "$ctx"
}

# ---------------------------------------------------------------------------------------------
# The cluster, down on every exit

# shellcheck disable=SC2317 # called by the trap
finish() {
    local rc=$?
    trap - EXIT INT TERM
    say "taking the cluster down"
    cluster down || true
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

cluster up >/dev/null
build_wrk_image
cluster load "$image" "$wrk_image"
# shellcheck disable=SC1090
nodes=$(sed -n 's/^STARVATION_CLUSTER_NODES=//p' "target/cluster/$name/env")
node_ip() { tr ',' '\n' <<<"$nodes" | sed -n "s/^$1://p"; }
mip=$(node_ip node1)
server_node=node2
client_node=node3
sip=$(node_ip $server_node)
cip=$(node_ip $client_node)
[[ -n $mip && -n $sip && -n $cip ]] || { say "cluster env without node1..3: $nodes"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Networks and servers

nets=(plain encrypted)
declare -A addr=() broken=()
for net in "${nets[@]}"; do
    opts=()
    [[ $net == encrypted ]] && opts=(--opt encrypted)
    nd "$mip" network create -d overlay --attachable "${opts[@]}" "ovl-$net" >/dev/null
    nd "$mip" service create -d -q --no-resolve-image --name "ovl-srv-$net" --network "ovl-$net" \
        --endpoint-mode dnsrr --constraint "node.hostname==$server_node" \
        "$image" serve --block-ms 0 --listen 0.0.0.0:5000 >/dev/null
done
for net in "${nets[@]}"; do
    deadline=$((SECONDS + 60))
    until
        a=$(nd "$mip" service ps -q --filter desired-state=running "ovl-srv-$net" |
            xargs -r env -u DOCKER_HOST docker -H "tcp://$mip:2375" inspect \
                -f "{{if eq .Status.State \"running\"}}{{range .NetworksAttachments}}{{if eq .Network.Spec.Name \"ovl-$net\"}}{{index .Addresses 0}}{{end}}{{end}}{{end}}")
        [[ -n $a ]]
    do
        ((SECONDS < deadline)) || { nd "$mip" service ps --no-trunc "ovl-srv-$net" >&2; say "server on $net not running"; exit 1; }
        sleep 0.5
    done
    addr[$net]=${a%/*}
    say "$net: server task on $server_node at ${addr[$net]}"
done

# The xfrm counters of a node's network namespace that are not zero (as root: /proc/PID/net).
xfrm_counters() {
    local pid
    pid=$(hostdocker inspect -f '{{.State.Pid}}' "$name-$1")
    awk '$2 != 0 {printf "%s=%s ", $1, $2}' "/proc/$pid/net/xfrm_stat" 2>/dev/null || echo "(unreadable)"
}
sa_count() {
    local pid
    pid=$(hostdocker inspect -f '{{.State.Pid}}' "$name-$1")
    if command -v nsenter >/dev/null && command -v ip >/dev/null; then
        nsenter -t "$pid" -n ip xfrm state count 2>/dev/null | awk '{print $NF}'
    else
        echo "?"
    fi
}

# One probe from the client node; 3 attempts (the overlay's tables converge after the attach).
for net in "${nets[@]}"; do
    ok=0
    for attempt in 1 2 3; do
        if nd "$cip" run --rm --network "ovl-$net" "$image" probe --timeout 5s \
            "http://${addr[$net]}:5000/healthz" >>"$out/probe-$net.log" 2>&1; then
            ok=1
            break
        fi
        sleep 1
    done
    if ((ok)); then
        say "$net: $client_node reaches the server on $server_node (attempt $attempt)"
    else
        broken[$net]=1
        say "$net: $client_node does NOT reach the server on $server_node: $(tail -1 "$out/probe-$net.log")"
    fi
done
{
    for n in "$server_node" "$client_node"; do
        echo "$n: IPsec SAs (ip xfrm state count): $(sa_count "$n"); xfrm counters not zero: $(xfrm_counters "$n")"
        hostdocker logs "$name-$n" 2>&1 | grep -m1 'Failed Adding' | sed "s/^/$n dockerd: /" || true
    done
    if [[ -r /proc/config.gz ]]; then
        echo "kernel: $(zcat /proc/config.gz | grep -E '^(# )?CONFIG_(INET_ESP|CRYPTO_GCM|MODULES)( |=)' | tr '\n' ' ')"
    fi
} | tee "$out/ipsec.txt" >&2

# ---------------------------------------------------------------------------------------------
# Rounds

printf 'round\tnetwork\treq_s\twrk_p50_ms\twrk_p99_ms\twrk_errors\tfixed_p50_ms\tfixed_p99_ms\tfixed_resp_p99_ms\tfailed\tdropped\n' >"$out/runs.tsv"
# wrk prints latencies as 812.00us, 1.23ms, 2.10s: in ms.
to_ms() { awk '{v = $1; if (v ~ /us$/) print v / 1000; else if (v ~ /ms$/) print v + 0; else if (v ~ /s$/) print v * 1000; else print v}'; }
measure() {
    local round=$1 net=$2 url w req p50 p99 werr j
    url="http://${addr[$net]}:5000/test-threadpool"
    w=$(nd "$cip" run --rm --network "ovl-$net" "$wrk_image" -t2 -c"$connections" -d"$duration" --latency "$url")
    echo "$w" >"$out/wrk-$round-$net.txt"
    req=$(awk '/^Requests\/sec/ {print $2}' <<<"$w")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$w" | to_ms)
    p99=$(awk '$1 == "99%" {print $2}' <<<"$w" | to_ms)
    werr=$(awk '/Socket errors|Non-2xx/ {e = e $0 "; "} END {print e == "" ? 0 : e}' <<<"$w")
    j=$(nd "$cip" run --rm --network "ovl-$net" "$image" load --url "$url" --start-rate "$rate" \
        --stages "$rate:$rate_duration" --no-progress --format json 2>/dev/null)
    echo "$j" >"$out/load-$round-$net.json"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$net" "$req" "$p50" "$p99" "$werr" \
        "$(jq -r '[.service_time.p50_ms, .service_time.p99_ms, .response_time.p99_ms, .failed, .dropped] | @tsv' <<<"$j")" |
        tee -a "$out/runs.tsv" >&2
}
for ((r = 1; r <= runs; r++)); do
    order=("${nets[@]}")
    ((r % 2 == 0)) && order=(encrypted plain)
    for net in "${order[@]}"; do
        [[ -z ${broken[$net]:-} ]] || continue
        measure "$r" "$net"
    done
done
# The SAs' byte counters after the runs: traffic went through ESP (when there are SAs).
for n in "$server_node" "$client_node"; do
    echo "after the runs, $n: IPsec SAs: $(sa_count "$n"); xfrm counters not zero: $(xfrm_counters "$n")"
done | tee -a "$out/ipsec.txt" >&2
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/session.txt"

# ---------------------------------------------------------------------------------------------
# Table: median (min-max) per network

spread() { # column number -> "median (min-max)"
    sort -g | awk '{v[NR] = $1} END {
        if (NR == 0) { print "-"; exit }
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%s (%s-%s)", f(m), f(v[1]), f(v[NR]) }
        function f(x) { return x >= 100 ? sprintf("%.0f", x) : sprintf("%.3g", x) }'
}
{
    echo
    echo "$(head -2 "$out/session.txt" | tail -1 | sed 's/^command: //')"
    echo "server: 1 task on $server_node; client: a container on $client_node; $(nproc) CPUs shared by this machine, 3 nested Engines, server and client"
    echo
    echo "| overlay | rounds | requests/s at saturation (wrk -c$connections) | wrk p50 / p99 ms | at $rate/s: p50 ms | p99 ms | response p99 ms | failed / dropped |"
    echo "|---|---|---|---|---|---|---|---|"
    for net in "${nets[@]}"; do
        if [[ -n ${broken[$net]:-} ]]; then
            echo "| $net | 0 | no traffic between the nodes: see below | | | | | |"
            continue
        fi
        col() { awk -F'\t' -v n="$net" -v c="$1" '$2 == n {print $c}' "$out/runs.tsv" | spread; }
        sum() { awk -F'\t' -v n="$net" -v c="$1" '$2 == n {s += $c} END {print s + 0}' "$out/runs.tsv"; }
        echo "| $net | $(awk -F'\t' -v n="$net" '$2 == n' "$out/runs.tsv" | wc -l) | $(col 3) | $(col 4) / $(col 5) | $(col 7) | $(col 8) | $(col 9) | $(sum 10) / $(sum 11) |"
    done
    echo
    echo "median (min-max) over the rounds; raw: $out"
    if ((${#broken[@]})); then
        echo
        echo "not measured (no request crossed the nodes): ${!broken[*]}"
        cat "$out/ipsec.txt"
    fi
} | tee "$out/table.md"
((${#broken[@]} == 0))
