#!/bin/sh
# nginx for the Compose and Kubernetes stacks: it keeps the upstream list equal to the instances
# that exist, and lets an upgrade take one out before it stops.
#
#   sh entrypoint.sh [CONF_DIR]        run nginx (PID 1); CONF_DIR holds nginx.conf, snippets/,
#                                      conf.d/ (default: this script's folder)
#   sh entrypoint.sh drain ADDRESS...  leave these instances out, and return once nginx sends
#                                      them nothing new (deploy/compose_upgrade.py runs it)
#   sh entrypoint.sh undrain ADDRESS...
#   sh entrypoint.sh show              the upstream list nginx runs with
#
# Why: conf.d/upstream.conf names the instances by host name (`server app:8000 ...`): Docker's
# DNS and a headless Kubernetes Service answer with one address per replica. nginx resolves such
# a name only when it loads its configuration (open-source nginx re-resolves by itself only from
# 1.27.3, `server ... resolve`; Debian 12 ships 1.22), and even then it could not leave out an
# instance that an upgrade is about to stop while it still has a DNS name. So this script writes
# the list itself: every RERESOLVE_INTERVAL seconds (default 1) it looks the names up and, when
# the addresses changed, writes one `server <address>:<port> ...` line per address (the same
# again as a backup: nginx/snippets/upstream.conf) into a copy of the configuration under
# NGINX_PREFIX and reloads nginx gracefully (SIGHUP: new workers take the new list; the old ones
# finish their requests and close their idle connections to the instances at once). Addresses
# given to `drain` are left out until `undrain`. nginx.conf and snippets/ are copied verbatim:
# the very files the local runner uses.
set -eu

case "${1:-}" in
    drain | undrain | show) command=$1; shift ;;
    *) command=run ;;
esac
if [ "$command" = run ]; then
    conf_dir=${1:-$(dirname "$0")}
else
    conf_dir=$(dirname "$0")
fi
interval=${RERESOLVE_INTERVAL:-1}
# The running configuration, pid file and temp files: the root filesystem is read-only, /tmp
# is a tmpfs or an emptyDir.
prefix=${NGINX_PREFIX:-/tmp/nginx/}
prefix=${prefix%/}
# The passive health checks of the backup lines (deploy/nginx_config.py BACKUP).
backup_params="backup max_fails=0"
# How long `drain` waits for nginx to take the new list (deploy/stack.py RELOAD_TIMEOUT).
reload_timeout=10

say() { echo "entrypoint.sh: $*" >&2; }

# Each `server host:port params;` line of conf.d/upstream.conf as "host port params".
templates() {
    sed -n 's/^[[:space:]]*server[[:space:]]\{1,\}\([^[:space:];]*\):\([0-9]\{1,\}\)\([^;]*\);.*/\1 \2 \3/p' \
        "$conf_dir/conf.d/upstream.conf"
}

addresses_of() {
    getent ahosts "$1" | awk '{print $1}' | sort -u || true
}

# The upstream list for the addresses that exist now, less the drained ones; nothing when no
# address exists at all (nginx needs one server at least: the caller keeps what it has then).
upstream_list() {
    drained=$(cat "$prefix/drained" 2>/dev/null || true)
    templates | while read -r host port params; do
        for address in $(addresses_of "$host"); do
            if printf '%s\n' "$drained" | grep -qxF "$address"; then
                continue
            fi
            case $address in *:*) address="[$address]" ;; esac
            echo "server $address:$port $params;"
            echo "server $address:$port $backup_params;" >&3
        done
    done 3>"$prefix/backups.tmp"
    cat "$prefix/backups.tmp"
    rm -f "$prefix/backups.tmp"
}

nginx_cmd() {
    nginx -p "$prefix/" -c "$prefix/nginx.conf" -e stderr "$@"
}

# The pids of nginx workers that take new requests (not the master, not one shutting down).
serving_workers() {
    for stat in /proc/[0-9]*/cmdline; do
        title=$({ tr '\0' ' ' <"$stat"; } 2>/dev/null | sed 's/ *$//' || true)
        if [ "$title" = "nginx: worker process" ]; then
            pid=${stat#/proc/}
            echo "${pid%/cmdline}"
        fi
    done
}

# Write the list when it changed and reload nginx; with "wait", return once only new workers
# serve. Callers hold the lock.
refresh() {
    list=$(upstream_list)
    if [ -z "$list" ]; then
        say "no address for the instances' host names; keeping the current list"
        return 0
    fi
    current=$(grep '^server' "$prefix/conf.d/upstream.conf" 2>/dev/null || true)
    [ "$list" = "$current" ] && return 0
    {
        echo "# Written by nginx/entrypoint.sh from $conf_dir/conf.d/upstream.conf."
        echo "$list"
    } >"$prefix/conf.d/upstream.conf.new"
    previous="$prefix/conf.d/upstream.conf.previous"
    cp "$prefix/conf.d/upstream.conf" "$previous" 2>/dev/null || true
    mv "$prefix/conf.d/upstream.conf.new" "$prefix/conf.d/upstream.conf"
    [ -f "$prefix/nginx.pid" ] || return 0 # nginx not started yet: it reads this when it starts
    if ! nginx_cmd -t -q 2>/dev/null; then
        say "the new upstream list is not valid; keeping the running one"
        mv "$previous" "$prefix/conf.d/upstream.conf"
        return 1
    fi
    before=$(serving_workers)
    say "upstream: $(echo "$list" | grep -v backup | awk '{print $2}' | tr '\n' ' ')(reloading nginx)"
    kill -HUP "$(cat "$prefix/nginx.pid")"
    [ "${1:-}" = wait ] || return 0
    waited=0
    while :; do
        now=$(serving_workers)
        old=0
        new=0
        for pid in $now; do
            if printf '%s\n' "$before" | grep -qx "$pid"; then old=$((old + 1)); else new=$((new + 1)); fi
        done
        [ "$old" -eq 0 ] && [ "$new" -gt 0 ] && return 0
        if [ "$waited" -ge $((reload_timeout * 10)) ]; then
            say "nginx did not take the new list within ${reload_timeout}s"
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

locked() {
    # One writer at a time: the loop below and a `drain` run in the same container.
    exec 9>"$prefix/.lock"
    flock 9
    "$@"
}

case $command in
    drain)
        [ $# -gt 0 ] || { say "drain: give the addresses to leave out"; exit 2; }
        exec 9>"$prefix/.lock"
        flock 9
        for address in "$@"; do echo "$address"; done >>"$prefix/drained"
        if [ -z "$(upstream_list)" ]; then
            # Never leave nginx without an instance: undo, and say so.
            for address in "$@"; do
                grep -vxF "$address" "$prefix/drained" >"$prefix/drained.new" || true
                mv "$prefix/drained.new" "$prefix/drained"
            done
            say "drain: $* would leave no instance; not drained"
            exit 1
        fi
        refresh wait
        exit $?
        ;;
    undrain)
        exec 9>"$prefix/.lock"
        flock 9
        for address in "$@"; do
            grep -vxF "$address" "$prefix/drained" >"$prefix/drained.new" 2>/dev/null || true
            mv "$prefix/drained.new" "$prefix/drained"
        done
        refresh wait
        exit $?
        ;;
    show)
        grep '^server' "$prefix/conf.d/upstream.conf"
        exit 0
        ;;
esac

# -- run ------------------------------------------------------------------------------------------
mkdir -p "$prefix/conf.d"
cp "$conf_dir/nginx.conf" "$prefix/nginx.conf"
rm -rf "$prefix/snippets"
cp -r "$conf_dir/snippets" "$prefix/snippets"
cp "$conf_dir/conf.d/listen.conf" "$prefix/conf.d/listen.conf"
rm -f "$prefix/nginx.pid" "$prefix/drained"
: >"$prefix/conf.d/upstream.conf"
until [ -n "$(upstream_list)" ]; do
    say "waiting for the instances' host names to resolve"
    sleep "$interval"
done
(locked refresh)
# nginx itself, not a function or a subshell: $! must be nginx, which is what the traps below
# signal (a background subshell of this shell would ignore QUIT, and nginx would never stop).
nginx -p "$prefix/" -c "$prefix/nginx.conf" -e stderr -g 'daemon off;' &
nginx_pid=$!
# This shell is PID 1: hand stop signals to nginx. QUIT is nginx's graceful stop (the official
# image's STOPSIGNAL and the Compose file's stop_signal), TERM its fast one.
trap 'kill -QUIT "$nginx_pid" 2>/dev/null || true' QUIT
trap 'kill -TERM "$nginx_pid" 2>/dev/null || true' TERM INT

while kill -0 "$nginx_pid" 2>/dev/null; do
    sleep "$interval" &
    wait $! || true # returns at once when a trapped signal arrives
    kill -0 "$nginx_pid" 2>/dev/null || break
    (locked refresh) || true
done
wait "$nginx_pid"
