#!/usr/bin/env bash
# `make test`'s two big suites side by side: the embedded one (SQLite, in-memory layer) and the
# PostgreSQL + Redis one. Each spends about half its time waiting on the processes, sockets and
# databases it starts (one suite alone keeps the load near 1 on this 2-core machine), and they
# share nothing (separate test databases, the fault tests' private services on spare ports), so
# together they take about as long as the longer one. Each writes its own log under
# .test-logs/; a progress line every 30 s; both logs are printed at the end; the exit status is
# the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .test-logs
make --no-print-directory test-embedded >.test-logs/embedded.log 2>&1 &
embedded=$!
make --no-print-directory test-services >.test-logs/services.log 2>&1 &
services=$!
trap 'trap - INT TERM; kill 0' INT TERM  # the whole group: both makes and their pytests

progress() {  # the last "[ 42%]" pytest printed, or "starting"
  local p
  p=$(grep -o '\[ *[0-9]*%\]' "$1" 2>/dev/null | tail -1 | tr -d '[] ')
  echo "${p:-starting}"
}

echo "== tests: embedded and PostgreSQL + Redis side by side (logs in .test-logs/) =="
started=$SECONDS
while kill -0 "$embedded" 2>/dev/null || kill -0 "$services" 2>/dev/null; do
  for _ in 1 2 3 4 5 6; do
    sleep 5
    kill -0 "$embedded" 2>/dev/null || kill -0 "$services" 2>/dev/null || break
  done
  printf '   %4ds  embedded %-8s  PostgreSQL + Redis %s\n' $((SECONDS - started)) \
    "$(progress .test-logs/embedded.log)" "$(progress .test-logs/services.log)"
done
wait "$embedded"; embedded_rc=$?
wait "$services"; services_rc=$?
cat .test-logs/embedded.log .test-logs/services.log
if [ "$embedded_rc" -ne 0 ]; then echo "FAILED: embedded suite (.test-logs/embedded.log)"; fi
if [ "$services_rc" -ne 0 ]; then echo "FAILED: PostgreSQL + Redis suite (.test-logs/services.log)"; fi
[ "$embedded_rc" -eq 0 ] && [ "$services_rc" -eq 0 ]
