#!/usr/bin/env bash
# Installs (as root, from Debian's packages) what the tests and the demo use
# and this machine lacks, and starts MariaDB for the SQL adapter's tests.
# Not root: says what is missing; the tests that need it then skip, or fail
# when CI=true. PostgreSQL and ClickHouse servers are started by the tests
# themselves (internal/localsvc), from these packages.
set -euo pipefail

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v clickhouse-server >/dev/null 2>&1 || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null 2>&1 || need+=(clickhouse-client)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# The portal's browser tests: headless Chromium, and a CJK font for its screenshots.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
dpkg-query -W -f='${Status}' fonts-wqy-zenhei 2>/dev/null | grep -q "install ok installed" || need+=(fonts-wqy-zenhei)
if [ -z "${JUTONG_MYSQL_DSN:-}" ] && ! command -v mariadbd >/dev/null 2>&1 && ! [ -x /usr/sbin/mariadbd ]; then
  need+=(mariadb-server mariadb-client)
fi
# The third-party clients suite (clients/): Node.js and npm; what
# @confluentinc/kafka-javascript builds librdkafka with (its prebuilt binary
# cannot be downloaded here); Debian's Python Kafka client and Avro library.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
for pkg in zlib1g-dev libssl-dev libzstd-dev libcurl4-openssl-dev libsasl2-dev liblz4-dev python3-confluent-kafka python3-avro; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done

if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing ${need[*]} (Debian packages) and not root to install them: the tests that need them will skip (or fail with CI=true)" >&2
    exit 0
  fi
  echo "deps: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The SQL adapter's tests use the machine's MariaDB (or JUTONG_MYSQL_DSN).
if [ -z "${JUTONG_MYSQL_DSN:-}" ] && [ "$(id -u)" = 0 ] && ! mysqladmin --protocol=tcp -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
  echo "deps: starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  for _ in $(seq 1 30); do
    mysqladmin --protocol=tcp -h 127.0.0.1 -u root ping >/dev/null 2>&1 && break
    sleep 1
  done
fi
