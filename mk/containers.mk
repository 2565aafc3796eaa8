# The agent's container engine (agent/src/containers).
APT_PACKAGES += busybox-static libseccomp-dev nftables runc crun
BENCH_TARGETS += bench-containers

.PHONY: bench-containers
bench-containers: build
	$(BIN)/zennet-agent bench-containers

# The Debian minbase base (debootstrap, cached in $(DEBIAN_BASES)/debian) and its test
# (same cargo flags as test-cargo, so nothing is rebuilt for it).
APT_PACKAGES += debootstrap
TEST_TARGETS += test-debian-base
.PHONY: test-debian-base
# Outside the checkout: the containers' unprivileged uid must traverse every
# parent of a base, and a clone may sit under a 0700 directory (mktemp -d).
DEBIAN_BASES ?= /var/tmp/zennet-bases
$(DEBIAN_BASES)/debian/etc/debian_version: | build
	$(BIN)/zennet-agent make-base debian --bases-dir $(DEBIAN_BASES)
test-debian-base: build $(DEBIAN_BASES)/debian/etc/debian_version
	ZENNET_DEBIAN_BASE=$(DEBIAN_BASES)/debian $(CARGO) test $(CARGO_FLAGS) --test containers -- --ignored debian_base
