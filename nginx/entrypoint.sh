#!/bin/sh
# nginx in the foreground for the Compose and Kubernetes stacks, reloaded whenever the instances
# behind the upstream's host names change (replicas scaled up or down, or restarted elsewhere).
#
#   sh entrypoint.sh /etc/taskflow-nginx      (the folder with nginx.conf, snippets/, conf.d/)
#
# Why: nginx resolves `server app:8000` (conf.d/upstream.conf) only when it loads its
# configuration, to every address the name has at that moment: Docker's DNS and a headless
# Kubernetes Service answer with one address per replica. Open-source nginx re-resolves upstream
# names by itself only from 1.27.3 (`server ... resolve`); this loop does the same for any
# version: every RERESOLVE_INTERVAL seconds it looks the names up again and, when the set of
# addresses changed, sends nginx SIGHUP, a graceful reload (old workers finish their requests).
# nginx.conf and snippets/ stay exactly as the local runner uses them.
set -eu
conf_dir=${1:-/etc/taskflow-nginx}
interval=${RERESOLVE_INTERVAL:-5}
# pid file and temp files: the root filesystem is read-only, /tmp is a tmpfs or an emptyDir.
prefix=${NGINX_PREFIX:-/tmp/nginx/}

# The host of every `server host:port ...;` line of conf.d/upstream.conf.
hosts=$(sed -n 's/^[[:space:]]*server[[:space:]]\{1,\}\([^:[:space:];]*\).*/\1/p' \
    "$conf_dir/conf.d/upstream.conf")

addresses() {
    for host in $hosts; do getent ahosts "$host" || true; done | awk '{print $1}' | sort -u
}

known=$(addresses)
mkdir -p "$prefix"
nginx -p "$prefix" -c "$conf_dir/nginx.conf" -e stderr -g 'daemon off;' &
nginx_pid=$!
# This shell is PID 1: hand stop signals to nginx. QUIT is nginx's graceful stop (the official
# image's STOPSIGNAL and the Compose file's stop_signal), TERM its fast one.
trap 'kill -QUIT "$nginx_pid" 2>/dev/null || true' QUIT
trap 'kill -TERM "$nginx_pid" 2>/dev/null || true' TERM INT

while kill -0 "$nginx_pid" 2>/dev/null; do
    sleep "$interval" &
    wait $! || true  # returns at once when a trapped signal arrives
    now=$(addresses)
    # No address at all (every replica restarting at once): keep what nginx has.
    if [ -n "$now" ] && [ "$now" != "$known" ]; then
        echo "entrypoint.sh: upstream addresses changed to $(echo $now); reloading nginx" >&2
        known=$now
        kill -HUP "$nginx_pid" 2>/dev/null || true
    fi
done
wait "$nginx_pid"
