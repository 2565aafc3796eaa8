# The agent's container engine (agent/src/containers).
APT_PACKAGES += busybox-static libseccomp-dev nftables runc crun
BENCH_TARGETS += bench-containers

.PHONY: bench-containers
bench-containers: build
	$(BIN)/zennet-agent bench-containers

# The Debian base (debootstrap minbase plus python3, cached in $(DEBIAN_BASES)/debian)
# and what needs it: the engine's Debian test and the fleet's existing tools
# (GNU parallel, Ansible; cli/tests/fleet_tools.rs). Same cargo flags as
# test-cargo, so nothing is rebuilt for it.
APT_PACKAGES += debootstrap
TEST_TARGETS += test-debian-base
.PHONY: test-debian-base
# Outside the checkout: the containers' unprivileged uid must traverse every
# parent of a base, and a clone may sit under a 0700 directory (mktemp -d).
DEBIAN_BASES ?= /var/tmp/zennet-bases
DEBIAN_BASE := $(DEBIAN_BASES)/debian
# python3 marks a base made with today's package set (an older cache lacks it).
$(DEBIAN_BASE)/usr/bin/python3: | build
	$(BIN)/zennet-agent make-base debian --bases-dir $(DEBIAN_BASES)
test-debian-base: build $(DEBIAN_BASE)/usr/bin/python3
	ZENNET_DEBIAN_BASE=$(DEBIAN_BASE) $(CARGO) test $(CARGO_FLAGS) --test containers -- --ignored debian_base
	ZENNET_DEBIAN_BASE=$(DEBIAN_BASE) $(CARGO) test $(CARGO_FLAGS) --test fleet_tools -- --ignored
