#!/usr/bin/env bash
# Make sure a Kafka broker (KRaft mode: broker and controller in one JVM) runs on 127.0.0.1 for
# the streaming tests and benchmarks; print its bootstrap address (127.0.0.1:PORT) on stdout.
#   bin/ensure-kafka.sh          start it when it is not running (a no-op when it is)
#   bin/ensure-kafka.sh --stop   stop the broker this script started
# The broker's jars come from Maven Central (org.apache.kafka:kafka_2.13, resolved with the
# dependencies by featurelake.core.jvm_packages into $FEATURELAKE_JAR_CACHE, once). Its state
# (configuration, data, log, pid, ports) lives in $FEATURELAKE_KAFKA_DIR (default
# .cache/kafka, git-ignored). Exits 1 with one line on stderr when it cannot start one.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=${FEATURELAKE_KAFKA_VERSION:-4.1.1}
state=${FEATURELAKE_KAFKA_DIR:-$root/.cache/kafka}
jars=${FEATURELAKE_JAR_CACHE:-$root/.cache/jars}
python=${FEATURELAKE_PYTHON:-$root/.venv/bin/python}
mkdir -p "$state"
state=$(cd "$state" && pwd)

say() { echo "featurelake: $*" >&2; }

running_pid() {
  # The pid of the broker this state folder belongs to, when it is alive.
  [ -f "$state/broker.pid" ] || return 1
  local pid
  pid=$(cat "$state/broker.pid")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # Not some other process that got the same pid after a reboot.
  grep -q "kafka.Kafka" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ "${1:-}" = "--stop" ]; then
  if pid=$(running_pid); then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    say "Kafka broker $pid stopped"
  fi
  rm -f "$state/broker.pid"
  exit 0
fi

if pid=$(running_pid) && [ -f "$state/port" ] && answers "$(cat "$state/port")"; then
  echo "127.0.0.1:$(cat "$state/port")"
  exit 0
fi

java=java
[ -n "${JAVA_HOME:-}" ] && java="$JAVA_HOME/bin/java"
if ! command -v "$java" >/dev/null 2>&1; then
  say "no Java runtime: cannot start a Kafka broker"
  exit 1
fi
if [ ! -x "$python" ]; then
  say "$python not found (run bin/bootstrap-venv.sh): cannot resolve the Kafka jars"
  exit 1
fi
classpath=$("$python" -m featurelake.core.jvm_packages --standalone --cache-dir "$jars" \
  "org.apache.kafka:kafka_2.13:$version" "org.apache.logging.log4j:log4j-slf4j-impl:2.24.3")
if [ -z "$classpath" ]; then
  exit 1  # jvm_packages said why on stderr
fi

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Keep the ports of the last start while they are free (the formatted log knows its controller).
port=$(cat "$state/port" 2>/dev/null || true)
controller=$(cat "$state/controller_port" 2>/dev/null || true)
if [ -n "${FEATURELAKE_KAFKA_PORT:-}" ]; then
  port=$FEATURELAKE_KAFKA_PORT
fi
if [ -z "$port" ] || answers "$port"; then port=$(free_port); fi
if [ -z "$controller" ] || answers "$controller" || [ "$controller" = "$port" ]; then
  controller=$(free_port)
  rm -rf "$state/data"  # a new controller address needs a newly formatted log
fi

cat > "$state/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$state/data
num.partitions=2
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
EOF
cat > "$state/log4j2.yaml" <<EOF
Configuration:
  Appenders:
    File: {name: file, fileName: "$state/broker.log", PatternLayout: {pattern: "%d %p %c{1}: %m%n"}}
  Loggers:
    Root: {level: WARN, AppenderRef: [{ref: file}]}
EOF

# A small heap and the serial collector: a test broker on a 2-core machine shared with Spark.
jvm_opts=(-Xms128m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$state/log4j2.yaml")
if [ ! -f "$state/data/meta.properties" ]; then
  rm -rf "$state/data"
  cluster_id=$("$python" -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')
  if ! "$java" "${jvm_opts[@]}" -cp "$classpath" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$state/server.properties" >"$state/format.log" 2>&1; then
    say "formatting the Kafka log failed: $(tail -n 1 "$state/format.log")"
    exit 1
  fi
fi

echo "$port" > "$state/port"
echo "$controller" > "$state/controller_port"
# setsid: the broker outlives this script and the test run that started it (the next run
# reuses it); bin/ensure-kafka.sh --stop ends it.
setsid "$java" "${jvm_opts[@]}" -cp "$classpath" kafka.Kafka "$state/server.properties" \
  >"$state/broker.out" 2>&1 < /dev/null &
pid=$!
echo "$pid" > "$state/broker.pid"
for _ in $(seq 1 600); do
  if ! kill -0 "$pid" 2>/dev/null; then
    say "the Kafka broker exited at start: $(tail -n 3 "$state/broker.out" "$state/broker.log" 2>/dev/null | tr '\n' ' ' | cut -c1-400)"
    rm -f "$state/broker.pid"
    exit 1
  fi
  if answers "$port"; then
    echo "127.0.0.1:$port"
    exit 0
  fi
  sleep 0.1
done
say "the Kafka broker did not answer on 127.0.0.1:$port within 60 s (see $state/broker.log)"
kill "$pid" 2>/dev/null || true
rm -f "$state/broker.pid"
exit 1
