#!/usr/bin/env bash
# Make sure the local PostgreSQL and Redis are up for the second test run.
# Exit 0 when both answer, 1 otherwise (CI treats that as a failure, a developer as a skip).
set -u
pg_ok() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || python3 -c "import socket; socket.create_connection(('127.0.0.1',5432),1)" 2>/dev/null; }
redis_ok() { python3 -c "
import socket; s=socket.create_connection(('127.0.0.1',6379),1); s.sendall(b'PING\r\n'); assert s.recv(7).startswith(b'+PONG')" 2>/dev/null; }
if ! pg_ok && command -v pg_ctlcluster >/dev/null 2>&1; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start 2>/dev/null || true
  sleep 2
fi
if ! redis_ok && command -v redis-server >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log 2>/dev/null || true
  sleep 1
fi
status=0
pg_ok || { echo "PostgreSQL is not answering on 127.0.0.1:5432"; status=1; }
redis_ok || { echo "Redis is not answering on 127.0.0.1:6379"; status=1; }
exit $status
