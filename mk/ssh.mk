# Plain ssh into rented containers (agent/src/ssh, cli/src/publish/ssh.rs,
# net/src/tunnel.rs). The tests drive Debian's OpenSSH client (ssh, scp,
# sftp); the benchmark compares against Debian's sshd on loopback.
# sshd is installed by the benchmark only: `make test` needs no ssh server.
APT_PACKAGES += openssh-client
BENCH_TARGETS += bench-ssh

.PHONY: bench-ssh
bench-ssh: build
	@scripts/deps.sh openssh-server
	BIN=$(BIN) scripts/bench-ssh.sh
