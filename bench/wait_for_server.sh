# Sourced by the device scripts that start a server: wait_for_server PORT PID LOG waits until PORT
# accepts connections, or fails (printing the end of LOG) if process PID exits first.
wait_for_server() {
  for _ in $(seq 600); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "server exited"; tail "$3"; return 1; }
    sleep 0.5
  done
  echo "server did not listen on port $1 within 300 s"; return 1
}
