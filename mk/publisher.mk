# The publisher's command (cli/): the daemon holding a fleet, the fleet
# commands and the files for existing tools. GNU parallel and Ansible (ansible-core:
# `ansible -m ping` is built in) are what cli/tests/fleet_tools.rs drives through the
# written sshloginfile and inventory, on the Debian base (mk/containers.mk).
APT_PACKAGES += parallel ansible-core
BENCH_TARGETS += bench-publisher

.PHONY: bench-publisher
bench-publisher: build $(DEBIAN_BASE)/usr/bin/python3
	BIN=$(BIN) DEBIAN_BASE=$(DEBIAN_BASE) scripts/bench-publisher.sh
