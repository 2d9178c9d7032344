#!/usr/bin/env bash
# A real multi-node Docker Swarm on this one machine, from Docker-in-Docker nodes.
#
#   deploy/cluster.sh [--name NAME] [--workers N] up  build the node image, start 1 + N nodes, form the Swarm
#   deploy/cluster.sh [--name NAME] down              remove every container, volume, network and image `up` made
#   deploy/cluster.sh [--name NAME] status            the nodes as the manager sees them (exit 1 when not up)
#   deploy/cluster.sh [--name NAME] load IMAGE...     copy images from this Engine into every node (save | load)
#   deploy/cluster.sh [--name NAME] check [--image IMAGE]   prove the overlay network works across nodes
#
# Each node is a container of starvation/dind-node:NAME (FROM scratch: this machine's dockerd,
# containerd, runc, docker-init, docker-proxy, iptables and their libraries) with what
# --privileged gives but CAP_SYS_RESOURCE (this VM refuses that one), on a bridge network this
# script creates (a free /24 from 172.28.0.0/16). node1 is the manager (label role=master),
# node2.. the workers (role=worker; --workers, default 2). Each dockerd keeps its data on a
# named volume and listens on its unix socket and on plain TCP port 2375 of the private bridge
# (no TLS: the network exists only on this machine, only for this test cluster).
#
# --name (default starvation-cluster, or STARVATION_CLUSTER_NAME; starvation-cluster[a-z0-9-]*)
# names everything, so two clusters (a CI run and yours) do not meet: every container, volume,
# network and image made carries the label starvation-cluster=NAME and a name starting with
# NAME (the node image: starvation/dind-node:NAME), and `down` removes exactly those. `up`
# prints the manager's address and writes it to target/cluster/env (another name:
# target/cluster/NAME/env; STARVATION_CLUSTER_DIR overrides the directory); a failed `up` runs
# `down`; `up` on a running cluster does nothing. The nodes are made with this machine's own
# Engine: a DOCKER_HOST in the environment (e.g. the one `up` prints) is ignored for that.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${STARVATION_CLUSTER_NAME:-starvation-cluster}
workers=2
check_image=starvation:cluster-test

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }
say() { echo "cluster.sh: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# This machine's Engine, whatever DOCKER_HOST says; and a node's Engine, by its bridge address.
hostdocker() { env -u DOCKER_HOST -u DOCKER_CONTEXT docker "$@"; }
nd() {
    local ip=$1
    shift
    env -u DOCKER_HOST -u DOCKER_CONTEXT docker -H "tcp://$ip:2375" "$@"
}

cmd=
args=()
while (($#)); do
    case "$1" in
    --workers) workers="$2"; shift 2 ;;
    --workers=*) workers="${1#*=}"; shift ;;
    --name) prefix="$2"; shift 2 ;;
    --name=*) prefix="${1#*=}"; shift ;;
    --image) check_image="$2"; shift 2 ;;
    --image=*) check_image="${1#*=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    up | down | status | load | check)
        [[ -z $cmd ]] || die "one command at a time (got $cmd and $1)"
        cmd=$1
        shift
        ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
        [[ $cmd == load ]] || die "unexpected argument $1 (see --help)"
        args+=("$1")
        shift
        ;;
    esac
done
[[ -n $cmd ]] || { usage >&2; exit 2; }
if ! [[ $workers =~ ^[0-9]+$ ]] || ((workers < 1 || workers > 8)); then
    die "--workers must be 1..8"
fi
[[ $prefix =~ ^starvation-cluster[a-z0-9-]{0,40}$ ]] || die "--name must be starvation-cluster[a-z0-9-]* (got $prefix)"
# Every object carries label=$prefix: `down` removes by it. kind=... tells the nodes apart.
label="starvation-cluster=$prefix"
kind=starvation-cluster.kind
node_image="starvation/dind-node:$prefix"
network=$prefix
if [[ $prefix == starvation-cluster ]]; then
    state_dir="${STARVATION_CLUSTER_DIR:-$PWD/target/cluster}"
else
    state_dir="${STARVATION_CLUSTER_DIR:-$PWD/target/cluster/$prefix}"
fi
env_file="$state_dir/env"

# ---------------------------------------------------------------------------------------------
# The node image

# Copies FILE (following symlinks) to the same path under $rootfs, and every shared library
# `ldd` lists for it, plus the dynamic loader.
copy_with_libs() {
    local rootfs=$1 file lib dir
    shift
    for file in "$@"; do
        dir=$(readlink -f "$(dirname "$file")")
        mkdir -p "$rootfs$dir"
        cp -L "$file" "$rootfs$dir/$(basename "$file")"
        # ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the loader; a
        # static binary (docker-init) prints "not a dynamic executable" and exits 1.
        while read -r lib; do
            [[ -n $lib && -e $lib ]] || continue
            dir=$(readlink -f "$(dirname "$lib")")
            [[ -e $rootfs$dir/$(basename "$lib") ]] && continue
            mkdir -p "$rootfs$dir"
            cp -L "$lib" "$rootfs$dir/$(basename "$lib")"
        done < <(ldd "$file" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' || true)
    done
}

build_node_image() {
    local bin missing=() context rootfs xt
    for bin in dockerd containerd containerd-shim-runc-v2 runc docker-init docker-proxy xtables-nft-multi; do
        command -v "$bin" >/dev/null || missing+=("$bin")
    done
    ((${#missing[@]} == 0)) || die "missing ${missing[*]}: apt-get install docker.io iptables"
    context=$(mktemp -d)
    rootfs=$context/rootfs
    # Debian 12 has merged /usr: keep the same layout so every path ldd printed resolves.
    mkdir -p "$rootfs"/usr/{bin,sbin,lib,lib64} "$rootfs"/{etc,tmp,run,var/lib/docker}
    ln -s usr/bin "$rootfs/bin"
    ln -s usr/sbin "$rootfs/sbin"
    ln -s usr/lib "$rootfs/lib"
    ln -s usr/lib64 "$rootfs/lib64"
    # /var/run on the node's /run tmpfs: a node whose dockerd was killed (docker kill, or a
    # docker stop that timed out) leaves docker.pid, which would stop it from starting again.
    ln -s ../run "$rootfs/var/run"
    for bin in dockerd containerd containerd-shim-runc-v2 runc docker-init docker-proxy; do
        copy_with_libs "$rootfs" "$(command -v "$bin")"
        # dockerd runs each by name from PATH; keep them all in /usr/bin and /usr/sbin.
        [[ -e $rootfs/usr/bin/$bin ]] || ln -s "../sbin/$bin" "$rootfs/usr/bin/$bin"
        [[ -e $rootfs/usr/sbin/$bin ]] || ln -s "../bin/$bin" "$rootfs/usr/sbin/$bin"
    done
    # iptables, nft variant like this host's (each node has its own network namespace and so
    # its own tables). xtables-nft-multi picks its mode from argv[0]; its match and target
    # extensions are dlopen()ed, which ldd on the binary does not show.
    copy_with_libs "$rootfs" "$(command -v xtables-nft-multi)"
    for bin in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
        ln -sf xtables-nft-multi "$rootfs/usr/sbin/$bin"
    done
    xt=$(readlink -f /usr/lib/x86_64-linux-gnu/xtables)
    [[ -d $xt ]] || die "$xt missing: apt-get install iptables"
    copy_with_libs "$rootfs" "$xt"/*.so
    # The few /etc files dockerd and its resolver read (Docker itself mounts /etc/hosts,
    # /etc/hostname and /etc/resolv.conf into the container).
    printf 'root:x:0:0:root:/root:/nonexistent\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\ndocker:x:999:\n' >"$rootfs/etc/group"
    printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
    # What `docker info` reports as the node's OS.
    printf 'PRETTY_NAME="starvation dind-node (Debian docker.io %s)"\nID=starvation-dind-node\n' \
        "$(dockerd --version | awk '{print $3}' | tr -d ,)" >"$rootfs/usr/lib/os-release"
    cp deploy/docker/Dockerfile.dind-node "$context/Dockerfile"
    say "docker build -t $node_image ($(du -sm "$rootfs" | cut -f1) MB)"
    # The classic builder: this Engine has no buildx plugin, and FROM scratch needs nothing more.
    if ! DOCKER_BUILDKIT=0 hostdocker build -q --label "$label" --label "$kind=node-image" -t "$node_image" "$context" >/dev/null; then
        rm -rf "$context"
        return 1
    fi
    rm -rf "$context"
}

# ---------------------------------------------------------------------------------------------
# State

node_names() { hostdocker ps -a --filter "label=$label" --filter "label=$kind=node" --format '{{.Names}}' | sort -V; }
node_ip() {
    hostdocker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$1"
}
manager_ip() { node_ip "$prefix-node1"; }

# Every node up, its Engine answering, the Swarm formed with all of them Ready: exit 0.
healthy() {
    local want=$1 ip names ready
    names=$(node_names)
    [[ $(wc -w <<<"$names") -eq $want ]] || return 1
    ip=$(manager_ip 2>/dev/null) || return 1
    [[ -n $ip ]] || return 1
    ready=$(nd "$ip" node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$') || return 1
    [[ $ready -eq $want ]]
}

write_env() {
    local ip nodes="" n
    ip=$(manager_ip)
    for n in $(node_names); do
        nodes+="${nodes:+,}${n#"$prefix-"}:$(node_ip "$n")"
    done
    mkdir -p "$state_dir"
    {
        echo "# deploy/cluster.sh up, $(date -u +%FT%TZ): the test Swarm's manager Engine (plain TCP, private bridge)"
        echo "DOCKER_HOST=tcp://$ip:2375"
        echo "STARVATION_CLUSTER_MANAGER=$ip"
        echo "STARVATION_CLUSTER_NODES=$nodes"
        echo "STARVATION_CLUSTER_NETWORK=$network"
        echo "STARVATION_CLUSTER_SUBNET=$(hostdocker network inspect -f '{{(index .IPAM.Config 0).Subnet}}' "$network")"
    } >"$env_file"
}

# ---------------------------------------------------------------------------------------------
# Commands

cmd_down() {
    local ids=()
    mapfile -t ids < <(hostdocker ps -aq --filter "label=$label")
    # -v: also the anonymous volumes; the named /var/lib/docker volumes go below.
    ((${#ids[@]} == 0)) || hostdocker rm -f -v "${ids[@]}" >/dev/null
    # Empty cgroups of the nodes' containers (see --cgroup-parent in cmd_up); rmdir removes
    # only empty ones.
    local d
    for d in /sys/fs/cgroup/*/"$prefix"-node[0-9]*; do
        if [[ -d $d ]]; then find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
    done
    mapfile -t ids < <(hostdocker volume ls -q --filter "label=$label")
    ((${#ids[@]} == 0)) || hostdocker volume rm -f "${ids[@]}" >/dev/null
    mapfile -t ids < <(hostdocker network ls -q --filter "label=$label")
    ((${#ids[@]} == 0)) || hostdocker network rm "${ids[@]}" >/dev/null
    mapfile -t ids < <(hostdocker images -q --filter "label=$label" | sort -u)
    ((${#ids[@]} == 0)) || hostdocker rmi -f "${ids[@]}" >/dev/null
    rm -f "$env_file" "$state_dir"/images.tar
    [[ $prefix == starvation-cluster ]] || rmdir "$state_dir" 2>/dev/null || true
    say "down: nothing of the cluster is left"
}

# A /24 from 172.28.0.0/16 that neither a route of this machine nor a Docker network uses.
create_network() {
    local third subnet used
    local nets=()
    mapfile -t nets < <(hostdocker network ls -q)
    used=$(
        ip -4 route show | awk '{print $1}'
        hostdocker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "${nets[@]}" 2>/dev/null
    )
    for third in $(seq 0 255); do
        subnet=172.28.$third.0/24
        grep -qE "(^| )172\.28\.$third\.|(^| )172\.28\.0\.0/16" <<<"$used" && continue
        # The Engine itself refuses a pool that overlaps one of its networks.
        if hostdocker network create --driver bridge --subnet "$subnet" --label "$label" "$network" >/dev/null 2>&1; then
            echo "$subnet"
            return 0
        fi
    done
    die "no free /24 in 172.28.0.0/16"
}

wait_engine() {
    local ip=$1 name=$2 deadline=$((SECONDS + 90))
    until nd "$ip" version --format '{{.Server.Version}}' >/dev/null 2>&1; do
        if ((SECONDS > deadline)) || [[ $(hostdocker inspect -f '{{.State.Running}}' "$name") != true ]]; then
            say "the Engine of $name ($ip) did not answer; its log:"
            hostdocker logs --tail 40 "$name" >&2 || true
            return 1
        fi
        sleep 0.5
    done
}

cmd_up() {
    up_done=0
    local n=$((workers + 1)) subnet base i name ip token mip started=$SECONDS pids=()
    if healthy "$n"; then
        say "already up ($n nodes)"
        write_env
        echo "export DOCKER_HOST=tcp://$(manager_ip):2375"
        return 0
    fi
    if [[ -n $(hostdocker ps -aq --filter "label=$label") || -n $(hostdocker network ls -q --filter "label=$label") ]]; then
        say "a cluster is partly up (or of another size): removing it first"
        cmd_down
    fi
    # A failed `up` leaves nothing behind (set -e exits from inside functions, where an ERR
    # trap would not run: hence EXIT).
    trap 'if ((up_done == 0)); then say "up failed: tearing down"; cmd_down; fi' EXIT
    build_node_image
    subnet=$(create_network)
    base=${subnet%.0/24}
    say "network $network $subnet"
    for ((i = 1; i <= n; i++)); do
        name=$prefix-node$i
        hostdocker volume create --label "$label" "$name" >/dev/null
        # What --privileged would give, but CAP_SYS_RESOURCE: dockerd needs to mount, make
        # namespaces, cgroups and iptables rules. --privileged itself fails on this VM: its
        # bounding set lacks CAP_SYS_RESOURCE, and runc, asked for every capability, answers
        # "unable to apply caps: operation not permitted" (--cap-drop is ignored with
        # --privileged). So: every capability but that one, no seccomp filter, /proc unmasked
        # and writable (systempaths=unconfined), every device allowed, the cgroup tree writable.
        # /run and /tmp on tmpfs: containerd's sockets and state stay off the host's storage
        # driver. The Engine's data is on the named volume: overlay2 on a directory of the
        # host's ext4 (overlay2 on the container's own overlay root is refused by the kernel).
        # Plain TCP without TLS on 2375: reachable only from this machine and the other nodes
        # (--tls=false says so explicitly; without it dockerd 20.10 waits 15 s at start).
        # The node's own containers get cgroups under /$name (this machine's cgroup v1 tree is
        # the node's): a node killed with tasks running leaves them empty, and `down` removes
        # exactly those.
        hostdocker run -d --pull never --name "$name" --hostname "node$i" \
            --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined \
            --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm' \
            -v /sys/fs/cgroup:/sys/fs/cgroup \
            --label "$label" --label "$kind=node" --network "$network" --ip "$base.$((i + 1))" \
            -v "$name:/var/lib/docker" --tmpfs /run --tmpfs /tmp \
            "$node_image" \
            --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 --tls=false \
            --storage-driver=overlay2 --iptables=true --cgroup-parent="/$name" >/dev/null
    done
    for ((i = 1; i <= n; i++)); do
        wait_engine "$base.$((i + 1))" "$prefix-node$i"
    done
    say "$n Engines answer ($((SECONDS - started)) s)"
    mip=$base.2
    nd "$mip" swarm init --advertise-addr "$mip" --listen-addr "$mip:2377" >/dev/null
    token=$(nd "$mip" swarm join-token -q worker)
    for ((i = 2; i <= n; i++)); do
        nd "$base.$((i + 1))" swarm join --token "$token" --advertise-addr "$base.$((i + 1))" "$mip:2377" >/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    local deadline=$((SECONDS + 60))
    until [[ $(nd "$mip" node ls --format '{{.Status}}' | grep -c '^Ready$') -eq $n ]]; do
        ((SECONDS < deadline)) || die "not every node Ready within 60 s: $(nd "$mip" node ls 2>&1)"
        sleep 0.5
    done
    nd "$mip" node update --label-add role=master node1 >/dev/null
    for ((i = 2; i <= n; i++)); do
        nd "$mip" node update --label-add role=worker "node$i" >/dev/null
    done
    # shellcheck disable=SC2034 # read by the EXIT trap
    up_done=1
    write_env
    say "up: $n nodes in $((SECONDS - started)) s; env in $env_file"
    echo "export DOCKER_HOST=tcp://$mip:2375"
}

cmd_status() {
    local ip
    ip=$(manager_ip 2>/dev/null) || die "not up (no $prefix-node1)"
    echo "export DOCKER_HOST=tcp://$ip:2375"
    nd "$ip" node ls --format '{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}' |
        while read -r host st av ms; do
            echo "$host $st $av ${ms:-worker} role=$(nd "$ip" node inspect -f '{{index .Spec.Labels "role"}}' "$host") addr=$(nd "$ip" node inspect -f '{{.Status.Addr}}' "$host")"
        done
}

cmd_load() {
    local image n ip file pids=() failed=0
    ((${#args[@]})) || die "load: which images?"
    node_names >/dev/null
    [[ -n $(node_names) ]] || die "not up"
    mkdir -p "$state_dir"
    file="$state_dir/images.tar"
    for image in "${args[@]}"; do
        hostdocker image inspect "$image" >/dev/null 2>&1 || die "no image $image on this Engine"
    done
    # Saved once; loaded into every node at the same time.
    hostdocker save -o "$file" "${args[@]}"
    for n in $(node_names); do
        ip=$(node_ip "$n")
        nd "$ip" load -q -i "$file" >/dev/null &
        pids+=($!)
    done
    for n in "${pids[@]}"; do wait "$n" || failed=1; done
    rm -f "$file"
    ((failed == 0)) || die "load failed on a node"
    say "loaded ${args[*]} into $(node_names | wc -l) nodes"
}

# Two replicas of `starvation serve` on two different nodes (the workers), on an overlay network
# of their own (endpoint_mode dnsrr: no IPVS in this kernel). Then, for each of them, a one-shot
# job on every *other* node probes it by its overlay address, and one job probes the service by
# its DNS name: each must exit 0.
cmd_check() {
    local svc=$prefix-check-server net=$prefix-check ok=1 node addr j state
    # Globals: the EXIT trap below runs after this function has returned.
    mip=$(manager_ip 2>/dev/null) || die "not up"
    check_svc=$svc
    check_net=$net
    jobs=()
    cleanup_check() {
        nd "$mip" service rm "$check_svc" "${jobs[@]}" >/dev/null 2>&1 || true
        local deadline=$((SECONDS + 30))
        until nd "$mip" network rm "$check_net" >/dev/null 2>&1 || ((SECONDS > deadline)); do sleep 0.5; done
    }
    # check is the script's last command: clean up on every exit from here on.
    trap cleanup_check EXIT
    if ! nd "$mip" image inspect "$check_image" >/dev/null 2>&1; then
        hostdocker image inspect "$check_image" >/dev/null 2>&1 ||
            die "no image $check_image: build it with deploy/build-images.sh --profile dev --tag $check_image"
        args=("$check_image")
        cmd_load
    fi
    nd "$mip" network create --driver overlay "$net" >/dev/null
    # On the workers when there are two; with one worker, on the worker and the manager.
    local place=()
    if (($(nd "$mip" node ls -q --filter node.label=role=worker | wc -l) >= 2)); then
        place=(--constraint node.labels.role==worker)
    fi
    nd "$mip" service create -d -q --no-resolve-image --name "$svc" --network "$net" --endpoint-mode dnsrr \
        --replicas 2 --replicas-max-per-node 1 "${place[@]}" \
        "$check_image" serve --listen 0.0.0.0:5000 >/dev/null
    local deadline=$((SECONDS + 60)) running
    until
        running=$(nd "$mip" service ps -q --filter desired-state=running "$svc" |
            xargs -r env -u DOCKER_HOST docker -H "tcp://$mip:2375" inspect -f '{{.Status.State}}' | grep -c '^running$' || true)
        [[ $running -eq 2 ]]
    do
        ((SECONDS < deadline)) || {
            nd "$mip" service ps --no-trunc "$svc" >&2
            die "check: the 2 server tasks are not running within 60 s"
        }
        sleep 0.5
    done
    # Each server task: its node and its address on the check network. A probe may meet the
    # overlay's name and peer tables still converging on a node that just joined the network:
    # each job retries (3 attempts, 1 s apart) and passes when each of its nodes completed once.
    local -A want=()
    local all_nodes retry=(--restart-condition on-failure --restart-max-attempts 3 --restart-delay 1s)
    all_nodes=$(nd "$mip" node ls --format '{{.Hostname}}' | sort | tr '\n' ' ')
    while read -r node addr; do
        addr=${addr%/*}
        say "check: server task on $node at $addr"
        j=$prefix-check-probe-$node
        nd "$mip" service create -d -q --no-resolve-image --name "$j" --network "$net" --mode global-job \
            "${retry[@]}" --constraint "node.hostname!=$node" \
            "$check_image" probe --timeout 5s "http://$addr:5000/healthz" >/dev/null
        jobs+=("$j")
        want[$j]=$(tr ' ' '\n' <<<"$all_nodes" | grep -vx "$node" | grep . | tr '\n' ' ')
    done < <(nd "$mip" service ps -q --filter desired-state=running "$svc" |
        xargs env -u DOCKER_HOST docker -H "tcp://$mip:2375" inspect \
            -f "{{.NodeID}} {{range .NetworksAttachments}}{{if eq .Network.Spec.Name \"$net\"}}{{index .Addresses 0}}{{end}}{{end}}" |
        while read -r id a; do echo "$(nd "$mip" node inspect -f '{{.Description.Hostname}}' "$id") $a"; done)
    ((${#jobs[@]} == 2)) || die "check: expected 2 server tasks, found ${#jobs[@]}"
    j=$prefix-check-probe-dns
    nd "$mip" service create -d -q --no-resolve-image --name "$j" --network "$net" --mode replicated-job \
        "${retry[@]}" --constraint node.labels.role==master \
        "$check_image" probe --timeout 5s "http://$svc:5000/healthz" >/dev/null
    jobs+=("$j")
    want[$j]="node1 "
    deadline=$((SECONDS + 90))
    for j in "${jobs[@]}"; do
        local done_on attempts missing
        while :; do
            state=$(nd "$mip" service ps --format '{{.Node}} {{.CurrentState}}' "$j")
            done_on=$(awk '$2 == "Complete" {print $1}' <<<"$state" | sort -u | tr '\n' ' ')
            missing=$(comm -23 <(tr ' ' '\n' <<<"${want[$j]}" | grep . | sort) <(tr ' ' '\n' <<<"$done_on" | grep . | sort) | tr '\n' ' ')
            [[ -z $missing ]] && break
            ((SECONDS < deadline)) || break
            sleep 0.5
        done
        attempts=$(grep -c . <<<"$state" || true)
        if [[ -z $missing ]]; then
            say "check: $j: exit 0 on ${done_on}($attempts tasks)"
        else
            say "check: $j FAILED on ${missing}: $(tr '\n' ';' <<<"$state")"
            nd "$mip" service ps --no-trunc "$j" >&2 || true
            ok=0
        fi
    done
    ((ok)) || die "check: the overlay network does not carry traffic between nodes"
    echo "overlay ok: every node reached the server task on each other node, and the service by name"
}

case "$cmd" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
load) cmd_load ;;
check) cmd_check ;;
esac
