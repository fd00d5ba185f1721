# Shared by benches/load.sh and benches/soak.sh (sourced, not run): the
# tools they install and the upstream both drive.

need() { command -v "$1" >/dev/null 2>&1; }

# Installs wrk and nginx (Debian packages) when missing, plus the extra
# packages named, each given as command:package ("ss:iproute2"). Sets NGINX.
install_tools() {
    local missing=()
    need wrk || missing+=(wrk)
    need nginx || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    local pair
    for pair in "$@"; do need "${pair%%:*}" || missing+=("${pair#*:}"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing ${missing[*]} (Debian packages)" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# Starts the upstream every proxy under test talks to: nginx, one worker, a
# fixed 22-byte JSON answer, keep-alive without a request limit. $1 = work
# directory (config, pid and log files go there), $2 = port.
start_upstream() {
    cat > "$1/upstream.conf" <<CONF
worker_processes 1;
pid $1/upstream.pid;
error_log $1/upstream-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$2 backlog=4096 reuseport;
        location / { default_type application/json; return 200 '{"id":"r1","ok":true}'; }
    }
}
CONF
    "$NGINX" -c "$1/upstream.conf" -e "$1/upstream-error.log"
}
