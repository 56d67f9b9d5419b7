#!/usr/bin/env bash
# Make sure PostgreSQL and RabbitMQ answer on loopback; start them with the machine's own commands if not.
# Exits non-zero (loudly) if a service is still unreachable, so the test run fails instead of skipping.
set -u
wait_port() { # host port seconds
  local i
  for ((i = 0; i < $3 * 4; i++)); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.25
  done
  return 1
}
status=0
if ! wait_port 127.0.0.1 5432 1; then
  echo "PostgreSQL is down; starting it" >&2
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_port 127.0.0.1 5432 30 || { echo "ERROR: PostgreSQL unreachable on 127.0.0.1:5432" >&2; status=1; }
fi
if ! wait_port 127.0.0.1 5672 1; then
  echo "RabbitMQ is down; starting it" >&2
  command -v rabbitmq-server >/dev/null && rabbitmq-server -detached || true
  wait_port 127.0.0.1 5672 90 || { echo "ERROR: RabbitMQ unreachable on 127.0.0.1:5672" >&2; status=1; }
fi
exit $status
