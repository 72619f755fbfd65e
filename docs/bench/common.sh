# Shared by the benchmark scripts (sourced from the repository root).

# bench_setup SCRIPT "APT PACKAGES" TOOL...: checks the reference tools are there, builds
# packyard in release mode, and sets PY (the binary), W (a work directory removed on exit,
# holding the benchmark tree in $W/tree) and SOURCE_DATE_EPOCH.
bench_setup() {
  local name=$1 hint=$2 t
  shift 2
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$name needs $t (apt-get install $hint)" >&2; exit 1; }
  done
  cargo build --release -q
  PY=$PWD/target/release/packyard
  W=$(mktemp -d)
  trap 'rm -rf "$W"' EXIT
  export SOURCE_DATE_EPOCH=1700000000
  bench_tree "$W/tree"
}

# A one-component module tree in DIR that every staged prefix is packed as (packages
# differ by `-p packageName=...` or by prefix).
bench_tree() { # DIR
  mkdir -p "$1/bench"
  cat > "$1/module.toml" <<'TOML'
[module]
name = "proj"
kind = "project"
description = "Benchmark project"
license = "MIT"
vendor = "Bench"
[[configuration]]
name = "proj_R_1_0_0_1"
version = "1.0.0"
age = 1
children = ["bench_R_1_0_0_1"]
[configuration.properties]
"package.maintainer" = "Bench <bench@example.org>"
TOML
  cat > "$1/bench/module.toml" <<'TOML'
[module]
name = "proj.bench"
kind = "component"
description = "Benchmark component"
package_name = "bench-pkg"
[[configuration]]
name = "bench_R_1_0_0_1"
version = "1.0.0"
age = 1
tag = "v1"
[configuration.commands]
checkout = "true"
TOML
}

# A loopback port that was free a moment ago.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# nginx_start DIR ROOT ACCESS_LOG: nginx (sendfile on, a worker per core) serving ROOT on
# a free loopback port, its files in DIR; ACCESS_LOG is nginx's `access_log` value
# (`off`, or a path with its format and buffering). Sets NGINX (its pid) and NGINX_PORT,
# and adds the pid to PIDS.
nginx_start() {
  local dir=$1 root=$2 log=$3
  NGINX_PORT=$(free_port)
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<CONF
$([ "$(id -u)" = 0 ] && echo "user root;")
daemon off;
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events {}
http {
  access_log $log;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $dir/nb; proxy_temp_path $dir/np; fastcgi_temp_path $dir/nf;
  uwsgi_temp_path $dir/nu; scgi_temp_path $dir/ns;
  server { listen 127.0.0.1:$NGINX_PORT; root $root; }
}
CONF
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log" &
  NGINX=$!
  PIDS+=("$NGINX")
}
