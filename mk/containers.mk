# The agent's container engine (agent/src/containers).
APT_PACKAGES += busybox-static libseccomp-dev nftables runc crun
BENCH_TARGETS += bench-containers

.PHONY: bench-containers
bench-containers: build
	$(BIN)/zennet-agent bench-containers
