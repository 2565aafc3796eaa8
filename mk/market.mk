# The market (net/, agent/src/market, cli/src/publish): hire latency and the
# agents' metering overhead, with real agents, containers and chain on loopback.
BENCH_TARGETS += bench-market

.PHONY: bench-market
bench-market: build
	BIN=$(BIN) scripts/bench-market.sh
