# The publisher's command (cli/): the daemon holding a fleet, the fleet
# commands and the files for existing tools. GNU parallel is what the fleet
# test drives through the written sshloginfile (where the image has perl).
APT_PACKAGES += parallel
