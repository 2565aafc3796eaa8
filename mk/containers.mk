# The agent's container engine (agent/src/containers).
APT_PACKAGES += busybox-static libseccomp-dev nftables runc crun
BENCH_TARGETS += bench-containers

.PHONY: bench-containers
bench-containers: build
	$(BIN)/zennet-agent bench-containers

# The Debian minbase base (debootstrap, cached in out/bases/debian) and its test
# (same cargo flags as test-cargo, so nothing is rebuilt for it).
APT_PACKAGES += debootstrap
TEST_TARGETS += test-debian-base
.PHONY: test-debian-base
$(OUT)/bases/debian/etc/debian_version: | build
	$(BIN)/zennet-agent make-base debian --bases-dir $(OUT)/bases
test-debian-base: build $(OUT)/bases/debian/etc/debian_version
	ZENNET_DEBIAN_BASE=$(CURDIR)/$(OUT)/bases/debian $(CARGO) test $(CARGO_FLAGS) --test containers -- --ignored debian_base
