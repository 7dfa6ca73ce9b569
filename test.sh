#!/usr/bin/env bash
# Run the test suite: sets up ./.venv with the dev extras on first use, then runs pytest.
# Extra arguments go to pytest, e.g. ./test.sh -k table_io -x
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"
"$root/bin/bootstrap-venv.sh" dev
# The online-store tests run a real redis-server; without one they skip and say so.
"$root/bin/ensure-redis.sh" || echo "featurelake: no redis-server; the Redis tests will be skipped" >&2
# The JDBC source tests run a real PostgreSQL server; without one they skip and say so.
"$root/bin/ensure-postgres.sh" || echo "featurelake: no PostgreSQL; the JDBC source tests will be skipped" >&2
# delta-spark's jar: fetched from Maven Central once into this cache (tests then run on both
# backends; without it the native ones skip and say why).
export FEATURELAKE_JAR_CACHE=${FEATURELAKE_JAR_CACHE:-$root/.cache/jars}
# The streaming tests produce to a real Kafka broker (KRaft, on 127.0.0.1; its jars fetched from
# Maven Central into the same cache once); without one they skip and say so.
if kafka=$("$root/bin/ensure-kafka.sh"); then
  export FEATURELAKE_KAFKA_BOOTSTRAP=$kafka
else
  echo "featurelake: no Kafka broker; the Kafka streaming tests will be skipped" >&2
fi
# Two worker processes, each running whole test files (module fixtures are built once);
# FEATURELAKE_TEST_WORKERS=0 runs everything in this process.
exec "$root/.venv/bin/python" -m pytest -n "${FEATURELAKE_TEST_WORKERS:-2}" --dist loadfile "$@"
