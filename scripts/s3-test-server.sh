#!/usr/bin/env bash
# A real S3-compatible server (moto_server) on 127.0.0.1, in a directory: for the integration
# tests of the remote artifact cache (tests/common/s3.rs) and to try it by hand.
#
#   scripts/s3-test-server.sh start DIR    install moto when missing (a virtual environment, see
#                                          below), start moto_server on 127.0.0.1, wait until it
#                                          answers HTTP; prints the `export AWS_...` lines
#   scripts/s3-test-server.sh stop DIR     stop exactly the server that `start DIR` started (by
#                                          the pid file in DIR) and wait until it is gone
#   scripts/s3-test-server.sh env DIR      print the `export AWS_...` lines of the running server
#   scripts/s3-test-server.sh status DIR   say whether it runs; exit status 0 only if it answers
#   scripts/s3-test-server.sh install      only create (or check) the virtual environment
#
#   eval "$(scripts/s3-test-server.sh start /tmp/s3)"
#   target/s3-venv/bin/python scripts/s3-tool.py create-bucket cache
#   echo hi | target/s3-venv/bin/python scripts/s3-tool.py put cache some/key -
#   target/s3-venv/bin/python scripts/s3-tool.py list cache some/
#   scripts/s3-test-server.sh stop /tmp/s3
#
# The server keeps everything in memory: a restart comes back empty. It does not check request
# signatures (any well-formed AWS4-HMAC-SHA256 Authorization header passes) and takes the
# credentials printed by `start` (test/test, us-east-1). DIR holds pid (pid and start time of
# the server), port, env (the export lines) and server.log. `start` and `stop` are idempotent;
# a second `start DIR` after `stop DIR` uses the same port again if it is free.
#
# Environment (all optional):
#   PORT                      the port (default: the previous one of DIR if free, else a free
#                             one chosen by the kernel)
#   S3_TEST_VENV              the virtual environment (default: <repo>/target/s3-venv), created
#                             with `python3 -m venv` and the pinned packages below, under a file
#                             lock (<venv>.lock) so that parallel starts install once
#   S3_TEST_PYTHON            the Python that creates it (default: python3)
#   S3_TEST_SERVER_TIMEOUT    seconds to wait for the server to answer (default 30)
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

# What the virtual environment holds: moto's server and, pinned with it, what decides how the
# server and the boto3 client of scripts/s3-tool.py behave. Changing this list reinstalls.
REQUIREMENTS=(
    'moto[server]==5.2.5'
    'boto3==1.44.8'
    'botocore==1.44.8'
    's3transfer==0.19.3'
    'Flask==3.1.3'
    'flask-cors==6.0.5'
    'Werkzeug==3.1.9'
)
STAMP=.s3-test-server-requirements

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
VENV=${S3_TEST_VENV:-$REPO/target/s3-venv}
case $VENV in /*) ;; *) VENV=$PWD/$VENV ;; esac
PYTHON=${S3_TEST_PYTHON:-python3}
# the venv's Python sees only the venv
unset PYTHONPATH PYTHONHOME

CMD=${1:-}
case $CMD in
install) [[ $# -eq 1 ]] || usage ;;
start | stop | env | status) [[ $# -eq 2 ]] || usage ;;
*) usage ;;
esac
DIR=${2:-}
if [[ $CMD != install ]]; then
    [[ -n $DIR ]] || die "DIR is empty"
    # absolute, without creating it (stop/env/status must not create it)
    if [[ -d $DIR ]]; then DIR=$(cd "$DIR" && pwd -P); else
        case $DIR in /*) ;; *) DIR=$PWD/$DIR ;; esac
    fi
fi

# --- the virtual environment -----------------------------------------------------------------

venv_ok() {
    [[ -f $VENV/$STAMP ]] || return 1
    [[ $(cat "$VENV/$STAMP") == "$(printf '%s\n' "${REQUIREMENTS[@]}")" ]] || return 1
    # a moved venv or a replaced Python breaks the scripts' shebangs
    [[ -x $VENV/bin/moto_server ]] || return 1
    "$VENV/bin/python" -c 'import moto.server, boto3' >/dev/null 2>&1
}

# python3 -m venv needs ensurepip (Debian: the package python3-venv)
make_venv() { # LOG
    "$PYTHON" -m venv "$VENV" >>"$1" 2>&1 && return 0
    if [[ $PYTHON == python3 ]] && { ! command -v python3 >/dev/null 2>&1 ||
        ! python3 -c 'import ensurepip' >/dev/null 2>&1; }; then
        rm -rf "$VENV"
        apt_install "$1" python3 python3-venv
        "$PYTHON" -m venv "$VENV" >>"$1" 2>&1 && return 0
    fi
    tail -n 20 "$1" >&2
    die "'$PYTHON -m venv $VENV' failed (log: $1)"
}

apt_install() { # LOG PACKAGE...
    local log=$1
    shift
    if ! command -v apt-get >/dev/null 2>&1 || [[ $(id -u) -ne 0 ]]; then
        die "$PYTHON cannot create a virtual environment; install $* (as root)"
    fi
    say "installing $* (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q -o DPkg::Lock::Timeout=300 "$@" >>"$log" 2>&1 || {
        apt-get update -q -o DPkg::Lock::Timeout=300 >>"$log" 2>&1 || true
        apt-get install -y -q -o DPkg::Lock::Timeout=300 "$@" >>"$log" 2>&1
    }
}

ensure_venv() {
    venv_ok && return 0
    mkdir -p "$(dirname "$VENV")"
    local log=$VENV.install.log
    exec 9>"$VENV.lock"
    flock -w 900 9 || die "waited 900 s for $VENV.lock (another install?)"
    if ! venv_ok; then
        say "creating $VENV with ${REQUIREMENTS[*]} (log: $log)"
        : >"$log"
        rm -rf "$VENV"
        make_venv "$log"
        if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
            "${REQUIREMENTS[@]}" >>"$log" 2>&1; then
            tail -n 20 "$log" >&2
            die "pip install ${REQUIREMENTS[*]} into $VENV failed (log: $log)"
        fi
        printf '%s\n' "${REQUIREMENTS[@]}" >"$VENV/$STAMP"
        venv_ok || {
            tail -n 20 "$log" >&2
            die "$VENV is unusable after the install (log: $log)"
        }
        say "installed moto into $VENV"
    fi
    exec 9>&-
}

# --- processes -------------------------------------------------------------------------------

# "PID STARTTIME" of a live process (start time: field 22 of /proc/PID/stat, tells a reused pid
# apart); fails for a gone or zombie process.
proc_id() { # PID
    local stat rest f
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    [[ ${f[0]} != Z ]] || return 1
    echo "$1 ${f[19]}"
}

# The server's pid if the process recorded in DIR/pid is still that moto_server.
live_pid() {
    local pid start
    [[ -f $DIR/pid ]] || return 1
    read -r pid start <"$DIR/pid" || true
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(proc_id "$pid") == "$pid $start" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto_server || return 1
    echo "$pid"
}

port_in_use() { # PORT: something listens on it
    local hex
    hex=$(printf '%04X' "$1")
    awk -v h="$hex" '$4 == "0A" && $2 ~ (":" h "$") { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# The TCP port PID listens on (by the inodes of its sockets).
listen_port() { # PID
    local f l inodes=""
    for f in /proc/"$1"/fd/*; do
        l=$(readlink "$f" 2>/dev/null) || continue
        [[ $l == socket:* ]] && inodes+="${l//[!0-9]/} "
    done
    [[ -n $inodes ]] || return 1
    local hex
    hex=$(awk -v inodes="$inodes" '
        BEGIN { n = split(inodes, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
        $4 == "0A" && ($10 in want) { split($2, p, ":"); print p[2]; exit }
    ' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
    [[ $hex =~ ^[0-9A-Fa-f]+$ ]] || return 1
    echo $((16#$hex))
}

# The server answers `GET /` (ListBuckets) with HTTP 200.
answers() { # PORT
    # shellcheck disable=SC2016 # (expanded by the inner bash)
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET / HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n" "$1" >&3
        IFS= read -r line <&3
        [[ $line == "HTTP/1."?" 200"* ]]' _ "$1" 2>/dev/null
}

log_tail() {
    [[ -f $DIR/server.log ]] || return 0
    echo "--- last lines of $DIR/server.log:" >&2
    tail -n 25 "$DIR/server.log" >&2
}

# TERM, wait up to SECONDS, then KILL and wait.
stop_pid() { # PID SECONDS
    local pid=$1 secs=$2 id i
    id=$(proc_id "$pid") || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < secs * 20; i++)); do
        # gone, a zombie (not ours to reap), or the pid reused
        [[ $(proc_id "$pid") == "$id" ]] || return 0
        sleep 0.05
    done
    say "moto_server (pid $pid) ignored SIGTERM for ${secs}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ $(proc_id "$pid") == "$id" ]] || return 0
        sleep 0.05
    done
    die "moto_server (pid $pid) survived SIGKILL"
}

env_lines() { # PORT
    printf 'export %s\n' "AWS_ENDPOINT_URL=http://127.0.0.1:$1" AWS_ACCESS_KEY_ID=test \
        AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
}

# --- commands --------------------------------------------------------------------------------

cmd_start() {
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd -P)
    local pid port
    if pid=$(live_pid) && port=$(cat "$DIR/port" 2>/dev/null) && answers "$port"; then
        say "already running (pid $pid, port $port)"
        env_lines "$port"
        return 0
    fi
    if pid=$(live_pid); then
        say "a server (pid $pid) runs but does not answer: stopping it first"
        stop_pid "$pid" 10
    fi
    rm -f "$DIR/pid" "$DIR/env"
    ensure_venv

    port=${PORT:-}
    if [[ -n $port ]]; then
        [[ $port =~ ^[1-9][0-9]*$ ]] || die "PORT=$port is not a port number"
        port_in_use "$port" && die "port $port (PORT) is in use"
    else
        port=$(cat "$DIR/port" 2>/dev/null || true)
        if ! [[ $port =~ ^[1-9][0-9]*$ ]] || port_in_use "$port"; then
            port=0
        fi
    fi

    local t_us=${EPOCHREALTIME/./}
    echo "--- $PROG start, $(date -Is), port ${port/#0/(any)}" >>"$DIR/server.log"
    # no stdin/stdout/stderr of ours: callers that wait for our output (Command::output) must
    # not wait for the server
    PYTHONUNBUFFERED=1 nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" \
        </dev/null >>"$DIR/server.log" 2>&1 &
    pid=$!
    local id
    id=$(proc_id "$pid") || {
        sleep 0.2
        log_tail
        die "moto_server exited right after start"
    }
    echo "$id" >"$DIR/pid"

    local timeout=${S3_TEST_SERVER_TIMEOUT:-30} t0=$SECONDS bound=""
    while ((SECONDS - t0 < timeout)); do
        if ! live_pid >/dev/null; then
            log_tail
            rm -f "$DIR/pid"
            die "moto_server (pid $pid) exited during start"
        fi
        if [[ -z $bound ]]; then
            bound=$(listen_port "$pid") || bound=""
        fi
        if [[ -n $bound ]] && answers "$bound"; then
            echo "$bound" >"$DIR/port"
            env_lines "$bound" >"$DIR/env"
            say "started moto_server (pid $pid) on http://127.0.0.1:$bound in $(((${EPOCHREALTIME/./} - t_us) / 1000)) ms; log: $DIR/server.log"
            cat "$DIR/env"
            return 0
        fi
        sleep 0.05
    done
    log_tail
    echo "$PROG: (it still runs: $PROG stop $DIR)" >&2
    die "moto_server (pid $pid) did not answer HTTP within ${timeout}s${bound:+ on port $bound}"
}

cmd_stop() {
    if [[ ! -d $DIR ]]; then
        say "nothing to stop ($DIR does not exist)"
        return 0
    fi
    local pid
    if pid=$(live_pid); then
        stop_pid "$pid" 10
        say "stopped moto_server (pid $pid)"
    else
        say "nothing was running in $DIR"
    fi
    # keep DIR/port: the next start uses it again
    rm -f "$DIR/pid" "$DIR/env"
}

cmd_env() {
    if ! live_pid >/dev/null || [[ ! -f $DIR/env ]]; then
        die "no server runs in $DIR: run '$PROG start $DIR' first"
    fi
    cat "$DIR/env"
}

cmd_status() {
    local pid port
    if ! pid=$(live_pid); then
        echo "moto_server: not running"
        return 1
    fi
    port=$(cat "$DIR/port" 2>/dev/null || true)
    if [[ -n $port ]] && answers "$port"; then
        echo "moto_server: running (pid $pid), answers on http://127.0.0.1:$port"
        return 0
    fi
    echo "moto_server: running (pid $pid), does not answer${port:+ on port $port}"
    return 1
}

case $CMD in
install)
    ensure_venv
    echo "$VENV"
    ;;
start) cmd_start ;;
stop) cmd_stop ;;
env) cmd_env ;;
status) cmd_status ;;
esac
