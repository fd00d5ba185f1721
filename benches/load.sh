#!/usr/bin/env bash
# Load benchmark: the gateway against nginx doing the same proxying to the
# same upstream, on loopback, in alternating rounds (issue 6, BENCHMARKS.md).
#
#   bash benches/load.sh            # ROUNDS=3 DURATION=10 CONNS="32 256"
#
# Installs wrk and nginx from Debian's packages when missing, builds the
# gateway in release twice (benches/load/full.yaml: JWT + rate limit + HMAC
# v2 signing; benches/load/bare.yaml: every policy off), starts one upstream
# (an nginx answering a fixed JSON body), nginx as a proxy (one worker,
# proxy_pass with the same rewrite, upstream keep-alive), and the gateway
# (one runtime worker), then runs wrk against each in turn. Prints medians
# of req/s, p50, p99, CPU microseconds per request, peak RSS, and the
# gateway/nginx ratios. Stops everything it started, by PID.
#
# TLS profile (on unless TLS=0): nginx and the gateway (benches/load/tls.yaml,
# policies off) both terminate TLS 1.3 with the same ECDSA P-256 certificate
# (made here with openssl) and proxy in plain HTTP; wrk keeps its
# connections, so this measures record encryption, not handshakes.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-"32 256"}
TLS=${TLS:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/gateway-load.XXXXXX)
UP_PORT=18090 NGINX_PORT=18081 NGINX_TLS_PORT=18082 GW_PORT=18080
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for f in "$WORK"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# shellcheck source=benches/lib.sh
. "$ROOT/benches/lib.sh"
install_tools

# --- builds ---------------------------------------------------------------
SPECS="full bare"
if [ "$TLS" = 1 ]; then SPECS="full bare tls"; fi
for spec in $SPECS; do
    echo "building the gateway with benches/load/$spec.yaml (release)" >&2
    (cd "$ROOT" && GATEWAY_SPEC="$ROOT/benches/load/$spec.yaml" cargo build -q --release --bin gateway)
    cp "$ROOT/target/release/gateway" "$WORK/gateway-$spec"
done

# --- certificate (TLS profile) ---------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$WORK/tls.key" -out "$WORK/tls.pem" 2>/dev/null
TLS_SERVER=""
if [ "$TLS" = 1 ]; then
    TLS_SERVER="server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl backlog=4096;
        ssl_certificate $WORK/tls.pem;
        ssl_certificate_key $WORK/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location ~ ^/api/v1/rules/([^/]+)\$ {
            proxy_pass http://rules/rules/\$1;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
fi

# --- upstream and nginx proxy ----------------------------------------------
cat > "$WORK/proxy.conf" <<EOF
worker_processes 1;
pid $WORK/proxy.pid;
error_log $WORK/proxy-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream rules { server 127.0.0.1:$UP_PORT; keepalive 512; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location ~ ^/api/v1/rules/([^/]+)$ {
            proxy_pass http://rules/rules/\$1;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    $TLS_SERVER
}
EOF
start_upstream "$WORK" "$UP_PORT"
"$NGINX" -c "$WORK/proxy.conf" -e "$WORK/proxy-error.log"
sleep 0.5

JWT_SECRET_VALUE="bench-jwt-secret-$(date +%s)"
TOKEN=$(BENCH_JWT_SECRET=$JWT_SECRET_VALUE "$WORK/gateway-full" token --sub bench-user --ttl 2h)

scheme() { if [ "$1" = tls ]; then echo https; else echo http; fi; }

start_gateway() { # $1 = full|bare|tls; prints the PID
    GATEWAY_LISTEN=127.0.0.1:$GW_PORT GATEWAY_WORKERS=1 GATEWAY_ACCESS_LOG=off RUST_LOG=warn \
        BENCH_JWT_SECRET=$JWT_SECRET_VALUE BENCH_RULES_SECRET=bench-rules-secret \
        BENCH_UPSTREAM_URL=http://127.0.0.1:$UP_PORT \
        BENCH_TLS_CERT=$WORK/tls.pem BENCH_TLS_KEY=$WORK/tls.key \
        "$WORK/gateway-$1" >"$WORK/gateway-$1.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 50); do
        curl -fsSk "$(scheme "$1")://127.0.0.1:$GW_PORT/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    echo "$pid"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Connections opened by anyone on this machine (TcpActiveOpens).
active_opens() { awk '/^Tcp:/ { n++; if (n == 2) print $6 }' /proc/net/snmp; }

# One wrk run; appends "target conns rps p50_ms p99_ms cpu_us_per_req rss_kb
# upstream_connects", the last being the connections opened during the run
# beyond wrk's own: the proxy's connects to the upstream, which stay near
# zero when its keep-alive pool holds.
run() { # $1 = label, $2 = url, $3 = pid to measure, $4 = conns
    local before after out rps p50 p99 reqs
    local opens
    before=$(cpu_ticks "$3")
    opens=$(active_opens)
    out=$(wrk -t1 -c"$4" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" "$2")
    after=$(cpu_ticks "$3")
    opens=$(( $(active_opens) - opens - $4 ))
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    local non2xx
    non2xx=$(awk '/Non-2xx/ {print $4}' <<<"$out")
    if [ -n "$non2xx" ]; then echo "warning: $1 answered $non2xx non-2xx responses" >&2; fi
    local tick_us=$((1000000 / $(getconf CLK_TCK)))
    local cpu_us=$(( (after - before) * tick_us ))
    local rss
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$3/status")
    echo "$1 $4 $rps $(to_ms "$p50") $(to_ms "$p99") $(awk -v c="$cpu_us" -v r="$reqs" 'BEGIN {printf "%.1f", c / r}') $rss $opens" >>"$WORK/results"
}

to_ms() { # wrk latency (123.45us, 1.23ms, 1.02s) -> milliseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n = n / 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n = n * 1000
        printf "%.3f", n }'
}

# nginx's work happens in its one worker process, not the master.
PROXY_PID=$(pgrep -P "$(cat "$WORK/proxy.pid")" | head -1)
curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$NGINX_PORT/api/v1/rules/r1" >/dev/null

: >"$WORK/results"
for c in $CONNS; do
    for r in $(seq "$ROUNDS"); do
        echo "round $r at $c connections" >&2
        run nginx "http://127.0.0.1:$NGINX_PORT/api/v1/rules/r1" "$PROXY_PID" "$c"
        if [ "$TLS" = 1 ]; then
            run nginx-tls "https://127.0.0.1:$NGINX_TLS_PORT/api/v1/rules/r1" "$PROXY_PID" "$c"
        fi
        for spec in $SPECS; do
            pid=$(start_gateway "$spec")
            url="$(scheme "$spec")://127.0.0.1:$GW_PORT/api/v1/rules/r1"
            curl -fsSk -H "Authorization: Bearer $TOKEN" "$url" >/dev/null
            run "gateway-$spec" "$url" "$pid" "$c"
            kill "$pid"
            wait "$pid" 2>/dev/null || true
        done
    done
done

echo
echo "raw rounds: target conns req/s p50_ms p99_ms cpu_us/req peak_rss_kB upstream_connects"
cat "$WORK/results"
echo
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
for t, c, *vals in rows:
    med.setdefault((t, c), []).append([float(v) for v in vals])
cols = ["req/s", "p50 ms", "p99 ms", "cpu us/req", "peak RSS MB", "upstream connects"]
print(f"{'target':<14}{'conns':>6}" + "".join(f"{h:>19}" for h in cols))
out = {}
for (t, c), runs in sorted(med.items(), key=lambda k: (int(k[0][1]), k[0][0])):
    m = [statistics.median(r[i] for r in runs) for i in range(6)]
    m[4] /= 1024
    out[(t, c)] = m
    print(f"{t:<14}{c:>6}" + "".join(f"{v:>19.2f}" for v in m))
print()
for c in sorted({c for _, c in out}, key=int):
    for t, base in (("gateway-full", "nginx"), ("gateway-bare", "nginx"), ("gateway-tls", "nginx-tls")):
        g, n = out.get((t, c)), out.get((base, c))
        if n and g:
            print(f"{t} / {base} at {c} conns: throughput {g[0]/n[0]:.2f}x, p99 {g[2]/n[2]:.2f}x, cpu/req {g[3]/n[3]:.2f}x")
PY
