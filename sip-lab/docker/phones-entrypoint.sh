#!/usr/bin/env bash
# Starts the six lab phones the way start_phones in sip-lab/lab does, then
# waits on them: if any one exits, the others are stopped and the container
# exits with an error. Each phone's output and errors are in
# /var/log/callconnect-phones/ inside the container.
set -euo pipefail

PHONES_DIR=/opt/callconnect/phones
LOG=/var/log/callconnect-phones

# Keep in step with PHONES in sip-lab/lab.
# name  port  media-port  scenario        extra sipp arguments
PHONES=(
  "answer-a   5071 16010 answer.xml"
  "answer-b   5072 16020 answer.xml"
  "no-answer  5073 16030 no-answer.xml"
  "busy       5074 16040 busy.xml"
  "reject     5075 16050 reject.xml"
  "hangup     5076 16060 hangup-after.xml -set hangup_after 4000"
)

mkdir -p "$LOG"
declare -A names=()

stop_all() {
  local pid
  for pid in "${!names[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap 'stop_all; exit 0' TERM INT

for line in "${PHONES[@]}"; do
  read -r name port mport scenario extra <<<"$line"
  # shellcheck disable=SC2086  # extra holds several arguments
  sipp -sf "$PHONES_DIR/$scenario" -i 127.0.0.1 -p "$port" \
    -mi 127.0.0.1 -mp "$mport" -nostdin -trace_err \
    -error_file "$LOG/phone-$name.errors" $extra \
    </dev/null >"$LOG/phone-$name.out" 2>&1 &
  names[$!]=$name
  echo "[phones] $name: udp 127.0.0.1:$port, media $mport, $scenario${extra:+ $extra} (pid $!)"
done

status=0
dead=
wait -n -p dead "${!names[@]}" || status=$?
name=${names[${dead:-0}]:-}
echo "[phones] error: lab phone ${name:-?} exited (status $status)" >&2
if [ -n "$name" ]; then
  tail -n 20 "$LOG/phone-$name.out" >&2 2>/dev/null || true
  unset "names[$dead]"
fi
stop_all
exit 1
