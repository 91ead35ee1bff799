#!/usr/bin/env bash
# Benchmarks telemed's embedded TURN server (pion/turn) against coturn's turnserver, the reference,
# under the same load in one run (docs/turn.md describes the server):
#
#   Load: coturn's own load client, turnutils_uclient, in its flood mode with TURN REST credentials
#     turnutils_uclient -y -c -X -m CLIENTS -l BYTES -n MSGS -z 0 -u USER -w PASS -p PORT 127.0.0.1
#   -y pairs the clients: each pair holds two allocations on the server, binds a channel to the other
#   one's relayed address and sends MSGS ChannelData messages of BYTES bytes to it, as fast as it can
#   (-z 0), through the server and back into the other allocation. -c leaves out the RTCP
#   allocations, -X asks for IPv4 relays. Every pair also makes a "probe" allocation first, which
#   uclient never deletes, so -m CLIENTS -y -c makes 1.5 x CLIENTS allocations (CLIENTS rounded up to
#   even). SHAPES lists the loads as CLIENTSxBYTESxMSGS (default "100x120x5000 20x1200x15000
#   100x120x12000 20x1200x40000": many small audio-like packets, and fewer video-sized ones, first at
#   a rate coturn relays with under 1% loss here, then as a flood past what either server can relay). uclient starts each client's sending at a
#   random moment 1 to 6 s after its allocations are made; MSGS is large enough that the sending lasts
#   longer than that and the server, not uclient's schedule, sets the pace (smaller MSGS give a rate
#   of about CLIENTS x MSGS / 5 s for any server).
#
#   Each round runs every shape against both servers, one after the other (the order swaps every
#   round, so that drift on the machine hits both alike), ROUNDS rounds (default 3). Every flood gets a
#   freshly started server: telemed serve --turn-addr ... --turn-allow-loopback, or turnserver -n
#   --use-auth-secret --allow-loopback-peers, both on 127.0.0.1 with the same relay address
#   (127.0.0.1), the same relay port range and the same secret, no TLS. uclient shares the machine's
#   CPUs with the server.
#
#   For each flood it prints:
#   - msg/s: messages delivered (uclient's final tot_recv_msgs) over the time of the flood. The flood
#     starts 1 s after uclient prints "Total connect time" and ends when tot_recv_msgs stops growing;
#     uclient prints its counters once a second, so the end is interpolated within that second from
#     the rate of the second before. uclient's own "Total transmit time" is in whole seconds and
#     includes a 10 s wait for lost packets, so it is not used.
#   - loss: messages sent and not received, over those sent: uclient's "Total lost packets N (P%)"
#     line. When messages were lost, uclient waits 10 s for them before it prints that line; the
#     script stops it once every message is sent and nothing has arrived for a second (then
#     "(stopped)" follows the line) and computes the loss as uclient does, from its last counters:
#     tot_send_msgs - tot_recv_msgs.
#   - CPU us/msg: the server's user+system CPU time (/proc/PID/stat, all threads) from just before
#     uclient starts to its end (allocations included), over the messages delivered.
#   - KiB/alloc: how much the server's resident memory grew: peak VmRSS while uclient runs (VmHWM,
#     reset with /proc/PID/clear_refs just before) minus VmRSS just before, over the allocations the
#     load makes (1.5 x CLIENTS). It includes buffers the flood fills, not only the allocations.
#     "relays" is the number of UDP sockets bound in the relay port range once uclient has made its
#     allocations, which should equal that number.
#   and at the end the medians per server and the ratio telemed/coturn for each.
#
# Run it from anywhere (bash bench/turn.sh); it takes about 7 minutes with the defaults. It installs
# Debian's coturn package if turnutils_uclient is missing (apt-get, as root or through sudo) and builds
# telemed. Everything runs on 127.0.0.1 on free ports it picks, is bounded by timeouts, and both servers
# are stopped when it ends. Environment: ROUNDS, SHAPES, SERVERS (default "telemed coturn"),
# FLOOD_TIMEOUT (seconds for one uclient run, default 90), RELAY_PORTS (MIN-MAX, default 2000 ports
# above the kernel's ephemeral range), KEEP=1 (keep the temporary folder with uclient's output and the
# servers' logs).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SHAPES=${SHAPES:-"100x120x5000 20x1200x15000 100x120x12000 20x1200x40000"}
SERVERS=${SERVERS:-"telemed coturn"}
FLOOD_TIMEOUT=${FLOOD_TIMEOUT:-90}
work=$(mktemp -d)
server_pid=
uclient_pid_file=

stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
trap '[ -z "$uclient_pid_file" ] || kill -TERM "$(cat "$uclient_pid_file" 2>/dev/null)" 2>/dev/null; stop_server; if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi' EXIT
trap 'exit 130' INT TERM

sudo=
[ "$(id -u)" = 0 ] || sudo=sudo

. bench/machine.sh
print_machine

if ! command -v turnutils_uclient >/dev/null || ! command -v turnserver >/dev/null; then
  echo "+ apt-get install -y --no-install-recommends coturn"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends coturn >"$work/apt.log" 2>&1 ||
    { $sudo apt-get update >>"$work/apt.log" 2>&1 &&
      $sudo apt-get install -y --no-install-recommends coturn >>"$work/apt.log" 2>&1; } ||
    { cat "$work/apt.log"; exit 1; }
  # On a machine run by systemd, installing the package also enables and starts its service (on
  # 0.0.0.0:3478 with /etc/turnserver.conf). This benchmark uses its own ports, but stops the service
  # it caused, so that nothing keeps running after it.
  if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
    echo "+ systemctl disable --now coturn   # started by the package just installed"
    $sudo systemctl disable --now coturn
  fi
fi
for tool in turnserver turnutils_uclient openssl stdbuf ss timeout; do
  command -v "$tool" >/dev/null || { echo "missing: $tool"; exit 1; }
done
echo "coturn:       $(turnserver --version 2>/dev/null | tail -1)"
echo

echo "== building"
echo "+ go build -o \$TMP/telemed ./cmd/telemed"
go build -o "$work/telemed" ./cmd/telemed
if [[ " $SERVERS " == *" telemed "* ]] && ! "$work/telemed" serve -h 2>&1 | grep -q -- '-turn-secret'; then
  echo "telemed serve has no --turn-secret flag (no embedded TURN server in this commit): coturn only"
  SERVERS=coturn
fi
echo

# A free port for both UDP and TCP, below the ephemeral range so that no client socket takes it.
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    if [ -z "$(ss -Hantu "sport = :$p")" ]; then echo "$p"; return; fi
  done
  echo "no free port found" >&2
  return 1
}
# udp_in_range MIN MAX counts the UDP sockets bound to a port from MIN to MAX.
udp_in_range() {
  cat /proc/net/udp /proc/net/udp6 2>/dev/null | awk -v lo="$1" -v hi="$2" '
    BEGIN { for (i = 0; i < 16; i++) h[substr("0123456789ABCDEF", i + 1, 1)] = i }
    NR > 0 && $2 ~ /:/ { s = substr($2, index($2, ":") + 1); p = 0
      for (i = 1; i <= length(s); i++) p = p * 16 + h[toupper(substr(s, i, 1))]
      if (p >= lo && p <= hi) n++ }
    END { print n + 0 }'
}

if [ -n "${RELAY_PORTS:-}" ]; then
  relay_min=${RELAY_PORTS%-*} relay_max=${RELAY_PORTS#*-}
else
  read -r _ eph_hi </proc/sys/net/ipv4/ip_local_port_range
  if [ "$eph_hi" -le 63000 ]; then relay_min=$((eph_hi + 1)) relay_max=$((eph_hi + 2000)); else relay_min=40000 relay_max=41999; fi
fi
[ "$(udp_in_range "$relay_min" "$relay_max")" = 0 ] ||
  { echo "UDP ports $relay_min-$relay_max are in use; set RELAY_PORTS=MIN-MAX"; exit 1; }
port=$(free_port)
secret=$(openssl rand -hex 16)
user="$(($(date +%s) + 3600)):bench"
pass=$(printf %s "$user" | openssl dgst -binary -sha1 -hmac "$secret" | base64)
echo "== setup"
echo "TURN port 127.0.0.1:$port (UDP and TCP), relay ports $relay_min-$relay_max, a random secret S"
echo "credentials: U=\"\$((\$(date +%s) + 3600)):bench\"; P=\$(printf %s \"\$U\" | openssl dgst -binary -sha1 -hmac \"\$S\" | base64)"
echo "+ \$TMP/telemed serve --http 127.0.0.1:0 --data \$TMP/data --turn-addr 127.0.0.1:$port --turn-public-ip 127.0.0.1 --turn-secret \"\$S\" --turn-allow-loopback --turn-relay-ports $relay_min-$relay_max --turn-user-quota -1"
echo "+ turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port=$port --min-port=$relay_min --max-port=$relay_max --use-auth-secret --static-auth-secret=\"\$S\" --realm=telemed --allow-loopback-peers --no-tls --no-dtls --no-cli --db=\$TMP/turndb --log-file=\$TMP/turn.log --simple-log --no-stdout-log --pidfile=\$TMP/turn.pid"
echo

# start_server NAME DIR starts a fresh server and waits until it listens on $port.
start_server() {
  local name=$1 dir=$2
  mkdir -p "$dir"
  case $name in
  telemed)
    "$work/telemed" serve --http 127.0.0.1:0 --data "$dir/data" --turn-addr "127.0.0.1:$port" \
      --turn-public-ip 127.0.0.1 --turn-secret "$secret" --turn-allow-loopback \
      --turn-relay-ports "$relay_min-$relay_max" --turn-user-quota -1 >"$dir/server.log" 2>&1 &
    ;;
  coturn)
    turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 --listening-port="$port" \
      --min-port="$relay_min" --max-port="$relay_max" --use-auth-secret --static-auth-secret="$secret" \
      --realm=telemed --allow-loopback-peers --no-tls --no-dtls --no-cli --db="$dir/turndb" \
      --log-file="$dir/turn.log" --simple-log --no-stdout-log --pidfile="$dir/turn.pid" >"$dir/server.log" 2>&1 &
    ;;
  esac
  server_pid=$!
  for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || { echo "$name exited:"; cat "$dir/server.log"; exit 1; }
    if [ -n "$(ss -Hlnu "sport = :$port")" ] && [ -n "$(ss -Hlnt "sport = :$port")" ]; then return; fi
    sleep 0.1
  done
  echo "$name does not listen on 127.0.0.1:$port after 10 s:"
  cat "$dir/server.log"
  exit 1
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# flood NAME ROUND CLIENTS BYTES MSGS runs one uclient flood against a fresh server and appends
# "name shape round msg/s loss% cpu-us/msg kib/alloc" to $work/results.
flood() {
  local name=$1 round=$2 clients=$3 bytes=$4 msgs=$5
  local dir="$work/$name-$round-${clients}x$bytes" rc=0 c0 c1 rss0 hwm t0 t1
  start_server "$name" "$dir"
  sleep 0.5
  c0=$(cpu_ticks "$server_pid")
  rss0=$(status_kib "$server_pid" VmRSS)
  echo 5 >"/proc/$server_pid/clear_refs" 2>/dev/null || echo "(cannot reset VmHWM: the memory column includes the server's start)"
  t0=$EPOCHREALTIME
  # uclient prints its counters once a second. The loop below stops it once every message is sent and
  # nothing has arrived for a second (or nothing has moved for 3 s): with losses it would wait 10 s
  # more for nothing.
  local expected=$((msgs * (clients + clients % 2)))
  set +e
  uclient_pid_file=$dir/uclient.pid
  (timeout "$FLOOD_TIMEOUT" stdbuf -oL turnutils_uclient -y -c -X -m "$clients" -l "$bytes" -n "$msgs" -z 0 \
    -u "$user" -w "$pass" -p "$port" 127.0.0.1 2>&1 &
    echo $! >"$uclient_pid_file"
    wait $!) |
    { ps=-1 pg=-1 same=0
      while IFS= read -r line; do
        printf '%s %s\n' "$EPOCHREALTIME" "$line"
        if [[ $line == *"Total connect time"* ]] && [ ! -e "$dir/relays" ]; then
          udp_in_range "$relay_min" "$relay_max" >"$dir/relays"
        elif [[ $line == *"start_mclient: msz="* ]]; then
          s=${line##*tot_send_msgs=} g=${line##*tot_recv_msgs=}
          s=${s%%,*} g=${g%%,*}
          if [ "$s" -gt 0 ] && [ "$s" = "$ps" ] && [ "$g" = "$pg" ]; then same=$((same + 1)); else same=0; fi
          ps=$s pg=$g
          if { [ "$s" = "$expected" ] && [ "$same" -ge 1 ]; } || [ "$same" -ge 3 ]; then
            [ -e "$dir/stopped" ] || { touch "$dir/stopped"; kill -TERM "$(cat "$uclient_pid_file")" 2>/dev/null; }
          fi
        fi
      done; } >"$dir/uclient.txt"
  rc=${PIPESTATUS[0]}
  set -e
  uclient_pid_file=
  t1=$EPOCHREALTIME
  c1=$(cpu_ticks "$server_pid")
  hwm=$(status_kib "$server_pid" VmHWM)
  stop_server
  awk -v name="$name" -v round="$round" -v shape="${clients}x${bytes}x$msgs" -v clients="$clients" \
    -v rc="$rc" -v wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
    -v ticks="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v rss0="$rss0" -v hwm="$hwm" \
    -v relays="$(cat "$dir/relays" 2>/dev/null || echo -)" -v stopped="$([ -e "$dir/stopped" ] && echo 1 || echo 0)" -v results="$work/results" '
    function num(key,   s) { s = $0; sub(".*" key "=", "", s); sub(/[^0-9].*/, "", s); return s + 0 }
    /Total connect time/ && !tc { tc = $1 }
    /start_mclient: msz=/ { n++; ts[n] = $1; send[n] = num("tot_send_msgs"); recv[n] = num("tot_recv_msgs") }
    /start_mclient: tot_send_msgs=/ { sent = num("tot_send_msgs"); got = num("tot_recv_msgs"); fin = $1 }
    /Total lost packets/ { s = $0; sub(/.*Total lost packets /, "", s); lost = s + 0
      sub(/^[0-9]+ \(/, "", s); pct = s + 0; haveloss = 1 }
    END {
      if (fin == "" && stopped && n) { sent = send[n]; got = recv[n]; fin = ts[n]; lost = sent - got; pct = sent ? 100 * lost / sent : 0; haveloss = 1 }
      if (!tc || fin == "") { printf "round %d  %-13s %-7s uclient did not finish (exit %d), see below\n", round, shape, name, rc; exit 1 }
      # The flood ends between the first counter line showing the final count and the one before.
      tend = fin
      for (i = 1; i <= n; i++) if (recv[i] >= got) { tend = ts[i]; break }
      if (i <= n && i > 2 && recv[i-1] > recv[i-2]) {
        r = (recv[i-1] - recv[i-2]) / (ts[i-1] - ts[i-2]); e = ts[i-1] + (got - recv[i-1]) / r
        if (e < tend) tend = e
      }
      tstart = tc + 1
      rate = tend > tstart ? got / (tend - tstart) : 0
      if (!haveloss) { lost = sent - got; pct = sent ? 100 * lost / sent : 0 }
      allocs = 1.5 * (clients + clients % 2)
      cpu = got ? ticks / hz * 1e6 / got : 0
      kib = (hwm - rss0) / allocs
      printf "round %d  %-13s %-7s %8.0f msg/s  loss %6.2f%% (%d of %d)  CPU %6.2f us/msg (%.2f s)  RSS +%6.0f KiB = %5.1f KiB/alloc (%d allocs, relays %s)  flood %.1f s of %.1f s%s\n",
        round, shape, name, rate, pct, lost, sent, cpu, ticks / hz, hwm - rss0, kib, allocs, relays, tend - tstart, wall,
        stopped ? " (stopped)" : ""
      print name, shape, round, rate, pct, cpu, kib >> results
    }' "$dir/uclient.txt" || { tail -20 "$dir/uclient.txt"; tail -20 "$dir/server.log"; exit 1; }
}

echo "== floods: $ROUNDS rounds of: $SHAPES; servers: $SERVERS"
echo "+ timeout $FLOOD_TIMEOUT turnutils_uclient -y -c -X -m CLIENTS -l BYTES -n MSGS -z 0 -u \"\$U\" -w \"\$P\" -p $port 127.0.0.1"
: >"$work/results"
servers=($SERVERS)
for r in $(seq "$ROUNDS"); do
  order=("${servers[@]}")
  if [ $((r % 2)) = 0 ] && [ ${#servers[@]} = 2 ]; then order=("${servers[1]}" "${servers[0]}"); fi
  for shape in $SHAPES; do
    IFS=x read -r clients bytes msgs <<<"$shape"
    for name in "${order[@]}"; do flood "$name" "$r" "$clients" "$bytes" "$msgs"; done
  done
done
echo

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'; }
# med NAME SHAPE COLUMN: the median of a column of the results.
med() { awk -v n="$1" -v s="$2" -v c="$3" '$1 == n && $2 == s { print $c }' "$work/results" | median; }

echo "== summary: medians over $ROUNDS rounds"
printf "  %-13s %-13s %12s %12s %20s\n" shape metric telemed coturn telemed/coturn
for shape in $SHAPES; do
  for m in "4 msg/s %.0f" "5 loss-% %.2f" "6 CPU-us/msg %.2f" "7 KiB/alloc %.1f"; do
    read -r col label fmt <<<"$m"
    t=$(med telemed "$shape" "$col")
    c=$(med coturn "$shape" "$col")
    awk -v s="$shape" -v l="$label" -v f="$fmt" -v t="$t" -v c="$c" 'BEGIN {
      ts = t == "nan" ? "-" : sprintf(f, t); cs = c == "nan" ? "-" : sprintf(f, c)
      ratio = (t == "nan" || c == "nan" || c + 0 == 0) ? "-" : sprintf("%.2fx", t / c)
      if (l == "loss-%" && t != "nan" && c != "nan") ratio = ratio sprintf(" (%+.2f pts)", t - c)
      printf "  %-13s %-13s %12s %12s %20s\n", s, l, ts, cs, ratio }'
  done
done
echo "msg/s: higher is better; loss, CPU and memory: lower is better."
echo "reproduce: ROUNDS=$ROUNDS SHAPES='$SHAPES' SERVERS='$SERVERS' FLOOD_TIMEOUT=$FLOOD_TIMEOUT bash bench/turn.sh"
