# The FreeSWITCH half of the lab, sourced by sip-lab/lab: FreeSWITCH 1.10.12
# built once from the vendored sources (sip-lab/freeswitch-build) and run from
# the build cache with its own config (sip-lab/freeswitch/) and state in
# $LAB/freeswitch, plus its own SIPp phones. Every port differs from the
# Asterisk lab's, so both halves run at once.

FS_STATE="$LAB/freeswitch"
FS_ESL_PORT=8021
FS_SIP_PORT=5080
FS_PASSWORD=callconnect-lab

# name  port  media-port  scenario        extra sipp arguments
FS_PHONES=(
  "answer-a   5171 17010 answer.xml"
  "answer-b   5172 17020 answer.xml"
  "no-answer  5173 17030 no-answer.xml"
  "busy       5174 17040 busy.xml"
  "reject     5175 17050 reject.xml"
  "hangup     5176 17060 hangup-after.xml -set hangup_after 4000"
)

fs_prefix() { "$HERE/freeswitch-build" --prefix; }

fs_install() {
  "$HERE/freeswitch-build" >/dev/null
}

fs_cli_cmd() {
  timeout 10 "$(fs_prefix)/bin/fs_cli" -H 127.0.0.1 -P "$FS_ESL_PORT" -p "$FS_PASSWORD" \
    -t 5000 -x "$*"
}

fs_install_config() {
  local conf="$FS_STATE/conf" moh="$FS_STATE/sounds/moh"
  mkdir -p "$conf" "$FS_STATE/log" "$FS_STATE/db" "$FS_STATE/temp" "$FS_STATE/storage" \
    "$FS_STATE/media" "$FS_STATE/recordings" "$moh"
  cp "$HERE/freeswitch/freeswitch.xml" "$conf/"
  # The inbound dialplan a user installs, as is.
  cp "$REPO/dialplans/freeswitch/callconnect_inbound.xml" "$conf/"
  # The Event Socket config a user installs, with the lab's password.
  sed "s/name=\"password\" value=\"[^\"]*\"/name=\"password\" value=\"$FS_PASSWORD\"/" \
    "$REPO/dialplans/freeswitch/event_socket.conf.xml" > "$conf/event_socket.conf.xml"
  # Music on hold: the same generated tune as the Asterisk lab's.
  [ -s "$moh/tune.wav" ] \
    || sox -n -r 8000 -c 1 -b 16 "$moh/tune.wav" \
         synth 0.4 sine 392 : synth 0.4 sine 494 : synth 0.4 sine 523 repeat 5
}

# (grep without -q: under pipefail an early exit would fail fs_cli with SIGPIPE)
fs_ready() { fs_cli_cmd "sofia status" | grep -E "^ *lab[[:space:]]+profile.*RUNNING" >/dev/null; }

fs_start() {
  if pid_alive "$RUN/freeswitch.pid"; then
    say "FreeSWITCH already running (pid $(cat "$RUN/freeswitch.pid")); reloading its config"
    fs_cli_cmd "reloadxml" >/dev/null
    return
  fi
  local prefix
  prefix="$(fs_prefix)"
  [ -x "$prefix/bin/freeswitch" ] || die "FreeSWITCH is not built in $prefix: run sip-lab/lab install"
  setsid "$prefix/bin/freeswitch" -nf -nc -nonat -nonatmap \
    -conf "$FS_STATE/conf" -log "$FS_STATE/log" -db "$FS_STATE/db" -run "$RUN" \
    -temp "$FS_STATE/temp" -storage "$FS_STATE/storage" -sounds "$FS_STATE/sounds" \
    -recordings "$FS_STATE/recordings" \
    </dev/null >"$RUN/freeswitch.out" 2>&1 &
  echo $! > "$RUN/freeswitch.pid"
  say "FreeSWITCH starting (pid $!)"
  wait_for 90 fs_ready \
    || die "FreeSWITCH did not come up within 90 s (Event Socket 127.0.0.1:$FS_ESL_PORT, profile lab); see $RUN/freeswitch.out and $FS_STATE/log/freeswitch.log"
  say "FreeSWITCH up: Event Socket 127.0.0.1:$FS_ESL_PORT, SIP udp 127.0.0.1:$FS_SIP_PORT"
}

fs_start_phones() {
  start_phone_set fs-phone "${FS_PHONES[@]}"
  say "FreeSWITCH lab phones up on udp 127.0.0.1:5171-5176"
}

fs_stop() {
  local f
  # A phone that is already gone is no reason to leave the rest running.
  for f in "$RUN"/fs-phone-*.pid; do [ -e "$f" ] && { kill -TERM "$(cat "$f")" 2>/dev/null || true; }; done
  for f in "$RUN"/fs-phone-*.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
  if pid_alive "$RUN/freeswitch.pid"; then
    fs_cli_cmd "fsctl shutdown elegant" >/dev/null 2>&1 || true
    wait_for 15 bash -c "! kill -0 $(cat "$RUN/freeswitch.pid")" || true
    stop_pidfile "$RUN/freeswitch.pid"
  fi
  rm -f "$RUN/freeswitch.pid"
}

fs_status() {
  local f up=0
  if pid_alive "$RUN/freeswitch.pid"; then say "freeswitch: running (pid $(cat "$RUN/freeswitch.pid"))"; up=1
  else say "freeswitch: stopped"; fi
  for f in "$RUN"/fs-phone-*.pid; do
    [ -e "$f" ] || continue
    if pid_alive "$f"; then say "$(basename "$f" .pid): running"; else say "$(basename "$f" .pid): dead"; up=0; fi
  done
  [ $up = 1 ]
}
