# The XenCoin chain node (chain/): throughput and latency figures.
BENCH_TARGETS += bench-chain

.PHONY: bench-chain
bench-chain: build
	$(BIN)/xencoind bench
