#!/usr/bin/env bash
# Runs three hookyard nodes on 127.0.0.1 sharing one PostgreSQL store, to try
# cluster mode by hand. Each node uses the quickstart config
# (examples/quickstart/hookyard.toml) with its own ports, data dir and
# [store] section. Ctrl-C stops the nodes and the database.
#
# Usage: scripts/cluster.sh [--db URL]
#   --db URL  use this database instead of a throwaway one (scripts/pg.sh)
# Ports: node N listens on 127.0.0.1:$((PUBLIC_BASE+N)) (default 8081..8083)
# and its admin API on $((ADMIN_BASE+N)) (default 9081..9083).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

db_url=""
while (($#)); do
    case "$1" in
    --db) db_url="${2:?--db needs a URL}"; shift 2 ;;
    --db=*) db_url="${1#--db=}"; shift ;;
    *) echo "usage: scripts/cluster.sh [--db postgres://...]" >&2; exit 2 ;;
    esac
done
# These would override every node's config with the same value.
unset HOOKYARD_LISTEN HOOKYARD_ADMIN_LISTEN HOOKYARD_DATA_DIR HOOKYARD_STORE_URL HOOKYARD_NODE_ID
public_base="${PUBLIC_BASE:-8080}"
admin_base="${ADMIN_BASE:-9080}"

# Build only when there is no binary: a first release build takes ~10 minutes.
bin="${CARGO_TARGET_DIR:-$root/target}/release/hookyard"
if [[ ! -x $bin ]]; then
    echo "building hookyard (cargo build --release; the first build takes ~10 minutes)"
    cargo build --release
else
    echo "using $bin (run cargo build --release to refresh it)"
fi
# The quickstart config routes through the quickstart-router Rust plugin.
bash scripts/build-plugins.sh rust

work="$(mktemp -d -t hookyard-cluster.XXXXXX)"
pgdir=""
pids=()
any_alive() {
    local p
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done
    return 1
}
cleanup() {
    trap - EXIT INT TERM
    echo "stopping..."
    # TERM lets each node drain (server.shutdown_grace, 10 s by default);
    # KILL whatever is still running after 15 s.
    ((${#pids[@]} == 0)) || kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 150); do
        any_alive || break
        sleep 0.1
    done
    ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}" 2>/dev/null || true
    [[ -z $pgdir ]] || bash scripts/pg.sh stop "$pgdir" || true
    rm -rf "$work" ${pgdir:+"$pgdir"}
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z $db_url ]]; then
    # Its own temp dir (pg.sh hands it to the postgres user when run as root),
    # watched by this script's pid: even a `kill -9` of this script stops it.
    pgdir="$(mktemp -d -t hookyard-pg.XXXXXX)"
    echo "starting PostgreSQL in $pgdir"
    db_url="$(bash scripts/pg.sh start "$pgdir" $$)"
fi

for n in 1 2 3; do
    dir="$work/node-$n"
    mkdir -p "$dir/plugins"
    cp plugins/dist/quickstart-router.wasm "$dir/plugins/"
    # The example config with this node's [server] addresses and data dir
    # (relative paths resolve against the config file, i.e. $dir), any
    # [store] section dropped, and ours appended.
    awk -v listen="127.0.0.1:$((public_base + n))" -v admin="127.0.0.1:$((admin_base + n))" '
        function ours() { print "listen = \"" listen "\"\nadmin_listen = \"" admin "\"\ndata_dir = \"./data\"" }
        { hdr = 0 }
        /^[ \t]*\[[^],]+\]\]?[ \t]*(#.*)?$/ { hdr = 1; sec = $0; sub(/[ \t]*(#.*)?$/, "", sec); sub(/^[ \t]*/, "", sec) }
        sec ~ /^\[store[].]/ { next }
        sec == "[server]" && /^[ \t]*(listen|admin_listen|data_dir)[ \t]*=/ { next }
        { print }
        hdr && sec == "[server]" { server = 1; ours() }
        END { if (!server) { print "\n[server]"; ours() } }' examples/quickstart/hookyard.toml >"$dir/hookyard.toml"
    cat >>"$dir/hookyard.toml" <<EOF

[store]
backend = "postgres"
url = "$db_url"
node_id = "node-$n"
EOF
    "$bin" serve --config "$dir/hookyard.toml" >"$work/node-$n.log" 2>&1 &
    pids+=($!)
done

# Ready once every public port accepts connections; a node that exits
# first (bad config, database unreachable) shows its log.
for n in 1 2 3; do
    port=$((public_base + n))
    for i in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        if ! kill -0 "${pids[n - 1]}" 2>/dev/null || ((i == 300)); then
            echo "node-$n did not start listening on $port; its log ($work/node-$n.log):" >&2
            tail -n 30 "$work/node-$n.log" >&2
            exit 1
        fi
        sleep 0.1
    done
done

cat <<EOF

hookyard cluster running (database: $db_url)
EOF
for n in 1 2 3; do
    echo "  node-$n  pid ${pids[n - 1]}  public http://127.0.0.1:$((public_base + n))  admin http://127.0.0.1:$((admin_base + n))  log $work/node-$n.log"
done
cat <<EOF

Send an event to any node:
  curl -sS -X POST http://127.0.0.1:$((public_base + 1))/hooks/shop -H 'content-type: application/json' \\
       -d '{"type":"order.created","order":{"id":1001,"total":"42.00"}}'
  HOOKYARD_URL=http://127.0.0.1:$((public_base + 2)) examples/quickstart/send-events.sh
Receive the deliveries (targets point at 127.0.0.1:9000):
  $bin sink --listen 127.0.0.1:9000 --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
Kill a node (kill -9 PID) to watch the others take over its work.
Ctrl-C stops everything.
EOF

# Wait until every node has exited, reporting each one that does.
reported=()
while any_alive; do
    wait -n || true
    for n in 1 2 3; do
        if ! kill -0 "${pids[n - 1]}" 2>/dev/null && [[ -z ${reported[n]:-} ]]; then
            echo "node-$n (pid ${pids[n - 1]}) exited; log: $work/node-$n.log"
            reported[n]=1
        fi
    done
done
