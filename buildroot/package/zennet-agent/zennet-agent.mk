################################################################################
#
# zennet-agent
#
################################################################################

# The workspace this BR2_EXTERNAL tree lives in (buildroot/..) is the source.
ZENNET_AGENT_VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' $(BR2_EXTERNAL_ZENNET_PATH)/../Cargo.toml | head -n1)
ZENNET_AGENT_SITE = $(BR2_EXTERNAL_ZENNET_PATH)/..
ZENNET_AGENT_SITE_METHOD = local
ZENNET_AGENT_LICENSE = MIT or Apache-2.0
ZENNET_AGENT_DEPENDENCIES = libseccomp host-pkgconf
# Keep build outputs and the Buildroot tree itself out of the rsync copy.
ZENNET_AGENT_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude /target --exclude /out --exclude /buildroot --exclude .git

ZENNET_AGENT_CARGO_ENV = \
	LIBSECCOMP_LINK_TYPE=dylib \
	LIBSECCOMP_LIB_PATH=$(STAGING_DIR)/usr/lib
ZENNET_AGENT_CARGO_BUILD_OPTS = -p zennet-agent --bin zennet-agent

# Buildroot's cargo infrastructure vendors crates in its download post-process, which a
# `local` package never runs. Vendor here instead: a pre-configure hook, because the rsync
# step (where a post-rsync hook would run) comes before host-rustc is built, and cargo is
# needed. This step needs the internet (crates.io), like any download step.
define ZENNET_AGENT_CARGO_VENDOR
	mkdir -p $(@D)/.cargo $(BR_CARGO_HOME)
	cd $(@D) && $(HOST_MAKE_ENV) $(PKG_COMMON_CARGO_ENV) \
		cargo vendor --manifest-path Cargo.toml --locked VENDOR > .cargo/config.toml
endef
ZENNET_AGENT_PRE_CONFIGURE_HOOKS += ZENNET_AGENT_CARGO_VENDOR

# The workspace root is a virtual manifest: install the one binary by hand.
define ZENNET_AGENT_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/zennet-agent \
		$(TARGET_DIR)/usr/bin/zennet-agent
endef

$(eval $(cargo-package))
