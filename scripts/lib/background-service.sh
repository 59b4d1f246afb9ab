# Shared by the scripts that run a throwaway server in the background for the tests
# (scripts/s3-server.sh, scripts/pubsub-emulator.sh): pid and port files, waiting for it to
# answer, stopping it, and the start|env|stop command line. Source it after setting
#   SERVICE     a name for messages ("s3-server")
#   STATE       the folder for its pid, port and log
#   CMDLINE     a word of its command line, so a stale pid file never names another process
#   START_DEADLINE_SECS
# and defining `start` and `print_env`; then call `service_main "$@"`.

log() { echo "$SERVICE: $*" >&2; }

running_pid() {
    local pid
    [[ -f "$STATE/pid" ]] || return 1
    pid="$(cat "$STATE/pid")"
    kill -0 "$pid" 2>/dev/null || return 1
    # A stale pid file may name a pid the system has since reused for something else.
    grep -q "$CMDLINE" "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Start "$@" detached on a port already written to $STATE/port; prints its pid. setsid takes it
# out of the caller's process group, so it outlives the caller's job.
launch() {
    setsid "$@" >"$STATE/log" 2>&1 </dev/null &
    echo "$!" >"$STATE/pid"
    echo "$!"
}

# Wait until `url` answers, failing with the log if the process dies or the deadline passes.
wait_until_up() {
    local url="$1" pid="$2" deadline=$((SECONDS + START_DEADLINE_SECS))
    until curl -fs -o /dev/null "$url" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "it exited during start; its log follows"
            cat "$STATE/log" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "no answer from $url within ${START_DEADLINE_SECS}s; see $STATE/log"
            kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        rm -f "$STATE/pid"
        return
    fi
    kill "$pid"
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "pid $pid ignored SIGTERM for 10s; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -f "$STATE/pid"
    log "stopped (pid $pid)"
}

service_main() {
    case "${1:-start}" in
        start)
            if running_pid >/dev/null; then
                log "already running (pid $(running_pid)); printing its env"
                print_env
                return
            fi
            mkdir -p "$STATE"
            start
            ;;
        stop) stop ;;
        env)
            if ! running_pid >/dev/null; then
                log "not running; start it with: eval \"\$($0 start)\""
                exit 1
            fi
            print_env
            ;;
        *)
            echo "usage: $0 [start|env|stop]" >&2
            exit 2
            ;;
    esac
}
