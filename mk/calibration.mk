# Calibration and pricing (agent/src/calibrate, protocol/src/pricing.rs).
# stress-ng runs the canonical benchmarks; e2fsprogs makes their scratch disk.
APT_PACKAGES += stress-ng e2fsprogs
BENCH_TARGETS += bench-calibration

.PHONY: bench-calibration
bench-calibration: build
	$(BIN)/zennet-agent bench-calibration
