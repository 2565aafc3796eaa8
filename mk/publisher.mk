# The publisher's command (cli/): the daemon holding a fleet, the fleet
# commands and the files for existing tools. GNU parallel is what the fleet
# test drives through the written sshloginfile (where the image has perl).
APT_PACKAGES += parallel
BENCH_TARGETS += bench-publisher

.PHONY: bench-publisher
bench-publisher: build
	BIN=$(BIN) scripts/bench-publisher.sh
