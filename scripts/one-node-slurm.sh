#!/usr/bin/env bash
# A real, private, one-node Slurm cluster in a directory: to try the Slurm executor by hand and
# for the integration tests (tests/common/slurm.rs).
#
#   scripts/one-node-slurm.sh start DIR    install what is missing, write DIR/slurm.conf, start
#                                          munged, slurmctld and slurmd, wait until the node is
#                                          idle; prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/one-node-slurm.sh stop DIR     cancel the cluster's jobs, stop exactly what `start DIR`
#                                          started (by the pid files in DIR) and wait for it
#   scripts/one-node-slurm.sh env DIR      print `export SLURM_CONF=DIR/slurm.conf`
#   scripts/one-node-slurm.sh status DIR   say what runs; exit status 0 only if all of it does
#
#   eval "$(scripts/one-node-slurm.sh start /tmp/slurm)"
#   sbatch --wrap 'hostname'; squeue; scontrol show job -o
#   scripts/one-node-slurm.sh stop /tmp/slurm
#
# Needs root (Debian/Ubuntu: it apt-installs slurmctld, slurmd, slurm-client and munge when
# missing). Everything lives in DIR: config, state, spool, logs (DIR/log), pid files, and a
# private munged whose socket is named in slurm.conf (AuthInfo=socket=...), so several clusters
# (parallel tests) run side by side, a system munged is neither needed nor touched, and `stop`
# never pulls authentication from under another cluster. The node is the host itself (hostname
# -s), with a fake GPU (gres gpu:1 on /dev/null: jobs asking --gres=gpu:1 see
# CUDA_VISIBLE_DEVICES=0). `start` and `stop` are idempotent.
#
# Environment (all optional):
#   SLURMCTLD_PORT, SLURMD_PORT   ports (default: the previous ones of DIR if free, else free
#                                 random ones)
#   ONE_NODE_SLURM_CPUS           CPUs of the node (default: nproc; more than the host has is
#                                 accepted, the node is oversubscribed)
#   ONE_NODE_SLURM_MEMORY_MB      RealMemory of the node (default: min(4000, 90 % of the host))
#   ONE_NODE_SLURM_TIMEOUT        seconds to wait for the node to become idle (default 60)
set -euo pipefail

PROG=$(basename "$0")
die() {
    echo "$PROG: error: $*" >&2
    exit 1
}
say() { echo "$PROG: $*" >&2; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ $# -eq 2 ]] || usage
CMD=$1
DIR=$2
[[ -n $DIR ]] || die "DIR is empty"
case $CMD in start | stop | env | status) ;; *) usage ;; esac

CONF_NAME=slurm.conf

# An absolute DIR without creating it (stop/env/status must not create it).
abs_dir() {
    if [[ -d $1 ]]; then (cd "$1" && pwd -P); else
        case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac
    fi
}
DIR=$(abs_dir "$DIR")
[[ $DIR != *[[:space:]]* ]] || die "DIR must not contain white space (slurm.conf paths): '$DIR'"
CONF=$DIR/$CONF_NAME
NODE=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)

# The private munged lives in /run/one-node-slurm/<hash of DIR>: munged insists on a socket
# directory it owns and on parents it can traverse (DIR may be under a 0700 home), and a unix
# socket path must stay short.
MUNGE_ID=$(printf '%s' "$DIR" | sha256sum | cut -c1-16)
MUNGE_DIR=/run/one-node-slurm/$MUNGE_ID
MUNGE_SOCKET=$MUNGE_DIR/munge.socket

# --- processes -------------------------------------------------------------------------------

# The pid in a pid file if that process is alive and is the named program (not a reused pid).
live_pid() { # PIDFILE COMM
    local pid
    [[ -f $1 ]] || return 1
    pid=$(tr -dc 0-9 <"$1")
    [[ -n $pid ]] || return 1
    [[ -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] || return 1
    # a zombie is dead (our container's init may be slow to reap it)
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
    echo "$pid"
}

# TERM, wait up to $3 seconds, then KILL and wait.
stop_pid() { # PID NAME SECONDS
    local pid=$1 name=$2 secs=$3 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < secs * 10; i++)); do
        [[ -d /proc/$pid ]] || {
            say "stopped $name (pid $pid)"
            return 0
        }
        # a zombie counts as gone (it is not ours to reap)
        if [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]]; then
            say "stopped $name (pid $pid)"
            return 0
        fi
        sleep 0.1
    done
    say "$name (pid $pid) ignored SIGTERM for ${secs}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        [[ -d /proc/$pid ]] || return 0
        sleep 0.1
    done
    die "$name (pid $pid) survived SIGKILL"
}

# This cluster's slurmstepd processes: slurmd runs with SLURM_CONF=$CONF in its environment, and
# the slurmstepd it forks inherit it.
cluster_stepds() {
    local pid
    for pid in $(pgrep -x slurmstepd || true); do
        if tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF "SLURM_CONF=$CONF"; then
            echo "$pid"
        fi
    done
}

descendants() { # PID: its descendants, deepest first
    local c
    for c in $(pgrep -P "$1" || true); do
        descendants "$c"
        echo "$c"
    done
}

port_in_use() { # PORT: something listens on it (TIME_WAIT does not count: Slurm binds with
    # SO_REUSEADDR)
    local hex
    hex=$(printf '%04X' "$1")
    awk -v h="$hex" '$4 == "0A" && $2 ~ (":" h "$") { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

free_port_pair() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 10000 * 2))
        if ! port_in_use "$p" && ! port_in_use $((p + 1)); then
            echo "$p $((p + 1))"
            return 0
        fi
    done
    die "found no two free TCP ports in 20000-39999"
}

conf_value() { # KEY: from the existing config
    [[ -f $CONF ]] || return 0
    sed -n "s/^$1=//p" "$CONF" | head -n1
}

log_tails() {
    local f
    for f in "$DIR"/log/slurmctld.log "$DIR"/log/slurmd.log "$MUNGE_DIR"/munged.log; do
        [[ -f $f ]] || continue
        echo "--- last lines of $f:" >&2
        tail -n 25 "$f" >&2
    done
}

fail_start() {
    echo "$PROG: error: $*" >&2
    log_tails
    echo "$PROG: (what did start is still running: $PROG stop $DIR)" >&2
    exit 1
}

# --- start -----------------------------------------------------------------------------------

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (slurmd runs jobs as SlurmUser=root): sudo $0 $CMD $DIR"
}

install_missing() {
    local missing=() b
    declare -A pkg=([slurmctld]=slurmctld [slurmd]=slurmd [sbatch]=slurm-client [munged]=munge
        [pgrep]=procps)
    for b in slurmctld slurmd sbatch munged pgrep; do
        command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || missing+=("${pkg[$b]}")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install Slurm and MUNGE by hand"
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    local opts=(-y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef
        -o Dpkg::Options::=--force-confold)
    if ! apt-get install "${opts[@]}" "${missing[@]}" >"$DIR/log/apt.log" 2>&1; then
        # a fresh machine has no package lists yet
        apt-get update -q -o DPkg::Lock::Timeout=300 >>"$DIR/log/apt.log" 2>&1 || true
        apt-get install "${opts[@]}" "${missing[@]}" >>"$DIR/log/apt.log" 2>&1 ||
            {
                tail -n 20 "$DIR/log/apt.log" >&2
                die "apt-get install ${missing[*]} failed (log: $DIR/log/apt.log)"
            }
    fi
    for b in slurmctld slurmd sbatch munged pgrep; do
        command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] || die "$b still missing after installing ${missing[*]}"
    done
}

munge_key() {
    local key=/etc/munge/munge.key
    id munge >/dev/null 2>&1 || die "no user 'munge' (is the munge package installed?)"
    if [[ ! -s $key ]]; then
        say "creating $key"
        mkdir -p /etc/munge
        chown munge:munge /etc/munge
        chmod 0700 /etc/munge
        if command -v mungekey >/dev/null 2>&1 || [[ -x /usr/sbin/mungekey ]]; then
            PATH=$PATH:/usr/sbin mungekey --create --keyfile="$key" --force
        else
            dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
        fi
        chown munge:munge "$key"
        chmod 0400 "$key"
    fi
}

start_munged() {
    if pid=$(live_pid "$MUNGE_DIR/munged.pid" munged); then
        say "munged already runs (pid $pid, $MUNGE_SOCKET)"
        return 0
    fi
    mkdir -p /run/one-node-slurm "$MUNGE_DIR"
    chmod 0755 /run/one-node-slurm
    chown munge:munge "$MUNGE_DIR"
    chmod 0755 "$MUNGE_DIR"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$MUNGE_DIR/munged.pid"
    printf '%s\n' "$DIR" >"$MUNGE_DIR/cluster-dir"
    local err
    if ! err=$(runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCKET" \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" 2>&1); then
        fail_start "munged did not start: $err"
    fi
    for ((i = 0; i < 50; i++)); do
        live_pid "$MUNGE_DIR/munged.pid" munged >/dev/null && [[ -S $MUNGE_SOCKET ]] && break
        sleep 0.1
    done
    pid=$(live_pid "$MUNGE_DIR/munged.pid" munged) || fail_start "munged exited right after start"
    # the pid file in DIR is what `stop` reads; the one in MUNGE_DIR is munged's own
    echo "$pid" >"$DIR/munged.pid"
    say "started munged (pid $pid, $MUNGE_SOCKET)"
}

write_config() {
    local ctld_port=${SLURMCTLD_PORT:-} d_port=${SLURMD_PORT:-}
    if [[ -z $ctld_port || -z $d_port ]]; then
        local old_c old_d
        old_c=$(conf_value SlurmctldPort)
        old_d=$(conf_value SlurmdPort)
        if [[ -n $old_c && -n $old_d ]] && ! port_in_use "$old_c" && ! port_in_use "$old_d"; then
            ctld_port=${ctld_port:-$old_c}
            d_port=${d_port:-$old_d}
        else
            read -r c d < <(free_port_pair)
            ctld_port=${ctld_port:-$c}
            d_port=${d_port:-$d}
        fi
    fi
    [[ $ctld_port != "$d_port" ]] || die "SLURMCTLD_PORT and SLURMD_PORT are both $ctld_port"
    port_in_use "$ctld_port" && die "port $ctld_port (slurmctld) is in use: set SLURMCTLD_PORT"
    port_in_use "$d_port" && die "port $d_port (slurmd) is in use: set SLURMD_PORT"

    local cpus=${ONE_NODE_SLURM_CPUS:-$(nproc)}
    local host_mb mem
    host_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    mem=${ONE_NODE_SLURM_MEMORY_MB:-$((host_mb * 9 / 10 < 4000 ? host_mb * 9 / 10 : 4000))}
    [[ $cpus =~ ^[1-9][0-9]*$ ]] || die "ONE_NODE_SLURM_CPUS=$cpus is not a positive number"
    [[ $mem =~ ^[1-9][0-9]*$ ]] || die "ONE_NODE_SLURM_MEMORY_MB=$mem is not a positive number"

    cat >"$CONF.tmp" <<EOF
# Written by scripts/one-node-slurm.sh: a private one-node cluster in $DIR.
ClusterName=onenode
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
AuthType=auth/munge
CredType=cred/munge
# the private munged; cred_expire also delays the restart of a requeued job (default 120 s)
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
# start a job at submission (default: up to 3 s later), retry pending ones every 2 s (default 60)
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without it a job that names no --mem gets the whole node, and jobs run one at a time
DefMemPerCPU=$((mem / cpus > 0 ? mem / cpus : 1))
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
GresTypes=gpu
ReturnToService=2
# the node may claim more CPUs than the host has (ONE_NODE_SLURM_CPUS)
SlurmdParameters=config_overrides
# finished jobs stay visible to scontrol/squeue for 5 minutes (there is no slurmdbd/sacct)
MinJobAge=300
# quick kills and failure detection, for tests
KillWait=2
OverTimeLimit=0
InactiveLimit=0
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=10
# batch jobs may be requeued (scontrol requeue); exit code 0 is never requeued automatically
JobRequeue=1
NodeName=$NODE CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    mv "$CONF.tmp" "$CONF"
    echo "Name=gpu File=/dev/null" >"$DIR/gres.conf"
}

node_state() {
    SLURM_CONF=$CONF sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n1
}

wait_idle() {
    local timeout=${ONE_NODE_SLURM_TIMEOUT:-60} t0=$SECONDS st=""
    while ((SECONDS - t0 < timeout)); do
        st=$(node_state || true)
        case $st in
        idle | mix | alloc) return 0 ;;
        esac
        live_pid "$DIR/slurmctld.pid" slurmctld >/dev/null || fail_start "slurmctld exited"
        live_pid "$DIR/slurmd.pid" slurmd >/dev/null || fail_start "slurmd exited"
        sleep 0.2
    done
    fail_start "node $NODE not idle after ${timeout}s (state: '${st:-no answer from slurmctld}')"
}

start_daemon() { # NAME ARGS...
    local name=$1 pid out
    shift
    if pid=$(live_pid "$DIR/$name.pid" "$name"); then
        say "$name already runs (pid $pid)"
        return 0
    fi
    rm -f "$DIR/$name.pid"
    # SLURM_CONF in the daemons' environment marks this cluster's slurmstepd processes (stop)
    if ! out=$(SLURM_CONF=$CONF "$@" 2>&1); then
        fail_start "$name did not start: $out"
    fi
    for ((i = 0; i < 100; i++)); do
        pid=$(live_pid "$DIR/$name.pid" "$name") && break
        sleep 0.1
    done
    [[ -n ${pid:-} ]] || fail_start "$name exited right after start${out:+: $out}"
    say "started $name (pid $pid)"
}

cmd_start() {
    need_root
    mkdir -p "$DIR"
    DIR=$(abs_dir "$DIR")
    mkdir -p "$DIR/log" "$DIR/state" "$DIR/spool"
    if live_pid "$DIR/slurmctld.pid" slurmctld >/dev/null &&
        live_pid "$DIR/slurmd.pid" slurmd >/dev/null &&
        live_pid "$DIR/munged.pid" munged >/dev/null; then
        say "already running ($CONF)"
    else
        # whatever is left of an earlier start (a daemon that died, a slurmstepd that outlived
        # its slurmd) goes first
        if live_pid "$DIR/slurmctld.pid" slurmctld >/dev/null ||
            live_pid "$DIR/slurmd.pid" slurmd >/dev/null ||
            live_pid "$DIR/munged.pid" munged >/dev/null || [[ -n $(cluster_stepds) ]]; then
            say "partly running: stopping that first"
            cmd_stop
        fi
        install_missing
        munge_key
        write_config
        start_munged
        start_daemon slurmctld /usr/sbin/slurmctld -i -f "$CONF"
        start_daemon slurmd /usr/sbin/slurmd -f "$CONF"
    fi
    wait_idle
    say "node $NODE is $(node_state); slurmctld port $(conf_value SlurmctldPort), slurmd port $(conf_value SlurmdPort), logs in $DIR/log"
    echo "export SLURM_CONF=$CONF"
}

# --- stop ------------------------------------------------------------------------------------

cmd_stop() {
    need_root
    if [[ ! -d $DIR ]]; then
        say "nothing to stop ($DIR does not exist)"
        return 0
    fi
    local pid jobs any=0
    # cancel the jobs while slurmctld still runs, so that their processes end properly
    if live_pid "$DIR/slurmctld.pid" slurmctld >/dev/null && [[ -f $CONF ]]; then
        # (squeue lists the jobs that have not finished)
        jobs=$(SLURM_CONF=$CONF timeout 10 squeue -h -o '%i' 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            say "cancelling jobs: $(tr '\n' ' ' <<<"$jobs")"
            # shellcheck disable=SC2086
            SLURM_CONF=$CONF timeout 10 scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                [[ -z $(SLURM_CONF=$CONF timeout 5 squeue -h -o '%i' -t R,CG,S,CF 2>/dev/null || true) ]] && break
                sleep 0.1
            done
        fi
    fi
    if pid=$(live_pid "$DIR/slurmd.pid" slurmd); then
        stop_pid "$pid" slurmd 10
        any=1
    fi
    if pid=$(live_pid "$DIR/slurmctld.pid" slurmctld); then
        stop_pid "$pid" slurmctld 10
        any=1
    fi
    # slurmstepd processes (and their jobs) that outlived their slurmd
    local stepds
    stepds=$(cluster_stepds)
    for pid in $stepds; do
        say "killing left-over slurmstepd $pid and its processes"
        # shellcheck disable=SC2046
        kill -KILL $(descendants "$pid") "$pid" 2>/dev/null || true
        any=1
    done
    if pid=$(live_pid "$DIR/munged.pid" munged); then
        stop_pid "$pid" munged 10
        any=1
    fi
    rm -f "$DIR/munged.pid"
    if [[ -f $MUNGE_DIR/cluster-dir ]] && [[ $(cat "$MUNGE_DIR/cluster-dir") == "$DIR" ]]; then
        rm -rf "$MUNGE_DIR"
    fi
    ((any)) || say "nothing was running in $DIR"
}

# --- env, status -----------------------------------------------------------------------------

cmd_env() {
    [[ -f $CONF ]] || die "no $CONF: run '$PROG start $DIR' first"
    echo "export SLURM_CONF=$CONF"
}

cmd_status() {
    local ok=0 pid name
    for name in munged slurmctld slurmd; do
        if pid=$(live_pid "$DIR/$name.pid" "$name"); then
            echo "$name: running (pid $pid)"
        else
            echo "$name: not running"
            ok=1
        fi
    done
    if ((ok == 0)); then
        echo "node $NODE: $(node_state || echo '?')"
        echo "export SLURM_CONF=$CONF"
    fi
    return $ok
}

case $CMD in
start) cmd_start ;;
stop) cmd_stop ;;
env) cmd_env ;;
status) cmd_status ;;
esac
