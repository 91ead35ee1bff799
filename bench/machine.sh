# Sourced by the benchmark scripts: prints the machine a run was made on, for the record beside its
# figures in docs/benchmarks.md.
print_machine() {
  echo "== machine"
  echo "cpus (nproc): $(nproc)"
  echo "cpu:          $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel:       $(uname -sr)"
  echo "go:           $(go version)"
  echo "commit:       $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with changes)')"
}
