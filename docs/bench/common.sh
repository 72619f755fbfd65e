# Shared by the benchmark scripts: a one-component module tree in DIR that every staged
# prefix is packed as (packages differ by `-p packageName=...` or by prefix).
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
