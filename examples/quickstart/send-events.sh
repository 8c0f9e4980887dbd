#!/usr/bin/env bash
# Sends a few sample events to the quickstart's "shop" source.
set -euo pipefail
url="${HOOKYARD_URL:-http://127.0.0.1:8080}/hooks/shop"
send() {
    printf '%-48s -> ' "$1"
    curl -sS -X POST "$url" -H 'content-type: application/json' -d "$1"
    echo
}
send '{"type":"order.created","order":{"id":1001,"total":"42.00"}}'
send '{"type":"user.signup","user":{"email":"ada@example.com"}}'
send '{"type":"ping"}'
send 'this is not json'
