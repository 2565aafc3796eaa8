# zennet-os appliance image (image/, qemu/, kernel-config/, buildroot/, tests/image/).
#   make image            offline image from Debian parts -> out/zennet-os.{img,img.xz,qcow2,vmdk,ova}
#   make test-image       boots each output under QEMU (TCG), OVF and kernel-config checks
#   make test-e2e         devnet here, the appliance under QEMU selling on it, a publisher
#                         hiring from it: ssh, memory.max, the provider paid on chain
#   make bench-image      sizes and boot-to-ready time (median of 3)
#   make buildroot-image BR=<buildroot-2026.05.1>   the canonical build (needs the internet)
# QEMU comes from one suite (bookworm) as a family: the newer preinstalled qemu-utils conflicts.
IMAGE_APT := qemu-utils/bookworm qemu-system-x86/bookworm qemu-system-common/bookworm \
  qemu-system-data/bookworm seabios ipxe-qemu ovmf mtools dosfstools fdisk syslinux \
  syslinux-common isolinux systemd-boot-efi shellcheck libxml2-utils busybox-static xz-utils \
  zstd cpio kmod e2fsprogs iproute2 stress-ng nftables dbus-daemon libseccomp-dev python3 file binutils \
  openssh-client jq
APT_PACKAGES += $(IMAGE_APT)
TEST_TARGETS += test-image test-buildroot test-e2e
BENCH_TARGETS += bench-image

STATIC_TARGET_DIR := target/static
STATIC_AGENT := $(STATIC_TARGET_DIR)/x86_64-unknown-linux-gnu/release/zennet-agent
SECCOMP_LIB_DIR ?= /usr/lib/x86_64-linux-gnu
IMAGE_INPUTS := $(shell find image kernel-config buildroot/board/zennet/rootfs-overlay -type f ! -name '*.md' 2>/dev/null)

.PHONY: image image-deps image-agent test-image test-e2e test-buildroot bench-image buildroot-image

# A second pass: installing qemu-system-x86/bookworm removes the newer qemu-utils first.
image-deps: deps
	@scripts/deps.sh $(IMAGE_APT)

# The agent, static (glibc, static-pie) in its own target dir so it does not fight `build`.
image-agent: image-deps
	RUSTFLAGS="-C target-feature=+crt-static" LIBSECCOMP_LINK_TYPE=static \
	LIBSECCOMP_LIB_PATH=$(SECCOMP_LIB_DIR) CARGO_TARGET_DIR=$(STATIC_TARGET_DIR) \
	  $(CARGO) build --release -p zennet-agent --bin zennet-agent --target x86_64-unknown-linux-gnu

image: image-agent $(OUT)/zennet-os.ova

$(OUT)/zennet-os.ova: $(STATIC_AGENT) $(IMAGE_INPUTS)
	AGENT=$(CURDIR)/$(STATIC_AGENT) OUT=$(CURDIR)/$(OUT) image/build.sh

test-image: image
	tests/image/test-image.sh

# The binaries (xencoind, zennet) and the image: after `build` and `image`.
test-e2e: build image
	tests/image/e2e.sh

test-buildroot: image-deps
	tests/image/check-buildroot.sh

bench-image: image
	tests/image/bench-image.sh

buildroot-image:
	@test -n "$(BR)" || { echo "usage: make buildroot-image BR=<path to buildroot-2026.05.1>"; exit 2; }
	buildroot/build.sh "$(BR)" "$(CURDIR)/$(OUT)/buildroot"
