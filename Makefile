# Zennet. The two commands:
#   make run    install what is missing, build, run the main job on its embedded default
#   make test   install what is missing, build, pass every test
# Each area adds its packages, tests and benchmarks in mk/<area>.mk.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
PROFILE ?= release
CARGO_FLAGS := --workspace --$(PROFILE)
OUT := out
BIN := target/$(PROFILE)

# Packages every area needs; areas append theirs.
APT_PACKAGES := build-essential pkg-config iproute2 e2fsprogs
BENCH_TARGETS :=
TEST_TARGETS :=

include $(sort $(wildcard mk/*.mk))

.PHONY: all deps build test test-cargo run bench clean
all: build

deps:
	@scripts/deps.sh $(sort $(APT_PACKAGES))

build: deps
	$(CARGO) build $(CARGO_FLAGS) --bins

# Every Rust test in the workspace (unit and integration; root-only tests run
# as root, which CI is), then each area's extra test targets.
test: build test-cargo $(TEST_TARGETS)

test-cargo: build
	$(CARGO) test $(CARGO_FLAGS) --no-fail-fast

run: build image
	scripts/run.sh

bench: $(BENCH_TARGETS)

clean:
	$(CARGO) clean
	rm -rf $(OUT) $(DEBIAN_BASES)
