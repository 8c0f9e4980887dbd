#!/usr/bin/env bash
# A throwaway PostgreSQL on 127.0.0.1 for the test suite and scripts/cluster.sh.
#
#   scripts/pg.sh start DIR [WATCH_PID]   prints postgres://hookyard@127.0.0.1:PORT/hookyard
#   scripts/pg.sh restart DIR             same port, prints the URL again
#   scripts/pg.sh stop DIR
#
# Everything lives in DIR (data/, log, sock/, port). Only the URL goes to
# stdout, so callers can capture it; everything else goes to stderr.
# With WATCH_PID, a detached watchdog stops the server and removes DIR once
# that process is gone, so a test killed with SIGKILL leaks no PostgreSQL.
# fsync is off (tests need no durability across a machine crash);
# PG_FSYNC=on turns it on (the benchmark, measuring what production pays).
# pg_stat_statements is loaded so a benchmark can count statements.
# PG_EXTRA adds server options, e.g. to log slow plans:
#   PG_EXTRA='-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=3'
set -euo pipefail

self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"

die() { echo "pg.sh: $*" >&2; exit 1; }

# Debian/Ubuntu keep the server binaries off PATH, one directory per version.
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [[ ! -x $bin/initdb ]]; then
    # Resolve symlinks: some images link only initdb/pg_ctl into /usr/local/bin.
    bin="$(dirname "$(readlink -f "$(command -v initdb || echo /nonexistent/initdb)")")"
    [[ -x $bin/initdb && -x $bin/createdb ]] ||
        die "PostgreSQL server binaries (initdb, pg_ctl) not found; install them with: apt-get install postgresql"
fi

# initdb and postgres refuse to run as root, so as root they run as `postgres`
# (from /, since root's working directory may be unreadable to that user).
as_pg() {
    if [[ $(id -u) == 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

alive() { # PID: running and not a zombie (a killed, not yet reaped caller is gone)
    local s
    s="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null)" && [[ -n $s && $s != Z* ]]
}

running() { as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; }

# A random port below the kernel's ephemeral range: outbound connections (a
# load test makes many) never take it, so `restart` can bind it again.
pick_port() {
    local lo p
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
    ((lo > 11000)) || lo=30000
    while :; do
        p=$((10000 + RANDOM % (lo - 10000)))
        if ! command -v ss >/dev/null || [[ -z $(ss -Htan "( sport = :$p )") ]]; then
            echo "$p"
            return
        fi
    done
}

# launch PORT: start the server on PORT; returns 2 if the port was taken.
launch() {
    local off
    off="$(stat -c %s "$dir/log" 2>/dev/null || echo 0)"
    if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 -o \
        "-c listen_addresses=127.0.0.1 -p $1 -k $dir/sock -c fsync=${PG_FSYNC:-off} -c shared_preload_libraries=pg_stat_statements -c max_connections=300 -c synchronous_commit=on ${PG_EXTRA:-}" \
        start >&2; then
        echo "$1" >"$dir/port"
        return 0
    fi
    # A server still starting after 30 s must not outlive this script.
    as_pg "$bin/pg_ctl" -D "$dir/data" stop -m immediate >/dev/null 2>&1 || true
    if tail -c +$((off + 1)) "$dir/log" | grep -q 'could not bind\|could not create any TCP/IP'; then
        return 2
    fi
    echo "pg.sh: PostgreSQL did not start; tail of $dir/log:" >&2
    tail -n 30 "$dir/log" >&2
    exit 1
}

url() { echo "postgres://hookyard@127.0.0.1:$(cat "$dir/port")/hookyard"; }

cmd="${1:-}"
[[ -n ${2:-} ]] || die "usage: pg.sh start DIR [WATCH_PID] | restart DIR | stop DIR"
dir="$2"
[[ $dir == /* ]] || dir="$PWD/$dir" # absolute: the watchdog and postgres run from /

case "$cmd" in
start)
    mkdir -p "$dir"
    if [[ $(id -u) == 0 ]]; then
        id -u postgres >/dev/null 2>&1 || die "no 'postgres' user (apt-get install postgresql creates it)"
        chown -R postgres: "$dir"
        runuser -u postgres -- test -w "$dir" ||
            die "$dir is not reachable by the postgres user (its parent directories need o+x)"
    fi
    as_pg mkdir -p "$dir/sock"
    # C.UTF-8 when the system has it (Unicode-aware character classes), else C.
    locale=C
    if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then locale=C.UTF-8; fi
    as_pg "$bin/initdb" -D "$dir/data" -A trust -U hookyard --no-sync -E UTF8 \
        --locale="$locale" >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    }
    # Another process may bind the chosen port first; then try another one.
    for attempt in 1 2 3 4 5; do
        rc=0
        launch "$(pick_port)" || rc=$?
        ((rc == 2)) || break
    done
    ((rc == 0)) || die "no free port after $attempt attempts; see $dir/log"
    if [[ -n ${3:-} ]]; then
        # Detached (own session, no inherited stdio) so it outlives the caller
        # and does not hold the caller's pipes open.
        setsid nohup bash "$self" _watch "$dir" "$3" </dev/null >/dev/null 2>&1 &
    fi
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$(cat "$dir/port")" -U hookyard hookyard >&2 || {
        as_pg "$bin/pg_ctl" -D "$dir/data" stop -m immediate >&2 || true
        die "createdb failed"
    }
    url
    ;;
restart)
    [[ -f $dir/port ]] || die "$dir has no port file; was it started with pg.sh start?"
    if running; then as_pg "$bin/pg_ctl" -D "$dir/data" stop -m fast -w >&2; fi
    launch "$(cat "$dir/port")" || die "port $(cat "$dir/port") is taken; cannot restart on it"
    url
    ;;
stop)
    if [[ -d $dir/data ]] && running; then as_pg "$bin/pg_ctl" -D "$dir/data" stop -m fast -w >&2; fi
    ;;
_watch) # internal: the watchdog started by `start DIR WATCH_PID`
    # Also quits once the caller has removed DIR itself.
    while alive "$3" && [[ -d $dir/data ]]; do sleep 1; done
    if [[ -d $dir/data ]]; then
        as_pg "$bin/pg_ctl" -D "$dir/data" stop -m immediate || true
        rm -rf "$dir"
    fi
    ;;
*) die "unknown command '$cmd' (start, restart or stop)" ;;
esac
