# The provider's local control (agent/src/api): D-Bus (zbus, peer-to-peer on
# a private socket; the system bus in the appliance), thin clients, Prometheus
# metrics. Tests run the client as nobody with setpriv (util-linux) and the
# system-bus mode on a private dbus-daemon with the policy in agent/dbus.
APT_PACKAGES += util-linux dbus-daemon
BENCH_TARGETS += bench-control

.PHONY: bench-control
bench-control: build
	$(BIN)/zennet-agent bench-control
